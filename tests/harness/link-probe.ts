// Measures a link between two network namespaces: ping round-trip times, and TCP throughput (this file is also the probe's two ends).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);

/** Round-trip times in milliseconds, as ping sums them up. */
export interface Rtt {
  min: number;
  avg: number;
  max: number;
  mdev: number;
  sent: number;
  received: number;
}

/** Pings `addr` from namespace `ns` `count` times, 20 ms apart. */
export function pingRtt(ns: string, addr: string, count = 20): Rtt {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'ping', '-q', '-n', '-c', String(count), '-i', '0.02', '-W', '2', addr], {
    encoding: 'utf8',
    timeout: 30000,
  });
  const counts = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout ?? '');
  const times = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(r.stdout ?? '');
  if (!counts || !times) throw new Error(`ping ${addr} from ${ns} failed: ${r.stdout}${r.stderr}`);
  const [min, avg, max, mdev] = times.slice(1).map(Number);
  return { min, avg, max, mdev, sent: Number(counts[1]), received: Number(counts[2]) };
}

/** A TCP transfer's size and how long the receiver took to get it all, from the connection's arrival. */
export interface Transfer {
  bytes: number;
  ms: number;
  mbitPerSecond: number;
}

/** Sends `bytes` over one TCP connection from namespace `fromNs` to `toAddr` in namespace `toNs` and times it at the receiver. */
export async function tcpRate(fromNs: string, toNs: string, toAddr: string, bytes: number, timeoutMs = 30000): Promise<Transfer> {
  const port = '5201';
  const receiver = spawn('ip', ['netns', 'exec', toNs, process.execPath, self, 'receive', toAddr, port], { stdio: ['ignore', 'pipe', 'pipe'] });
  let sender: ChildProcess | undefined;
  const timer = setTimeout(() => {
    receiver.kill('SIGKILL');
    sender?.kill('SIGKILL');
  }, timeoutMs);
  try {
    let out = '';
    let err = '';
    receiver.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const done = new Promise<string>((resolve, reject) => {
      receiver.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n') && !sender) {
          sender = spawn('ip', ['netns', 'exec', fromNs, process.execPath, self, 'send', toAddr, port, String(bytes)], { stdio: 'ignore' });
        }
      });
      receiver.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`probe receiver exited with ${code}: ${err}`))));
    });
    const result = JSON.parse((await done).split('\n')[1]) as { bytes: number; ms: number };
    return { ...result, mbitPerSecond: (result.bytes * 8) / result.ms / 1000 };
  } finally {
    clearTimeout(timer);
    receiver.kill('SIGKILL');
    sender?.kill('SIGKILL');
  }
}

/** The probe's ends, run inside a namespace: `receive ADDR PORT` or `send ADDR PORT BYTES`. */
function probeMain(args: string[]): void {
  const [mode, addr, port, bytes] = args;
  if (mode === 'receive') {
    const server = net.createServer((sock) => {
      const start = performance.now();
      let n = 0;
      sock.on('data', (d) => (n += d.length));
      sock.on('end', () => {
        process.stdout.write(`${JSON.stringify({ bytes: n, ms: performance.now() - start })}\n`);
        sock.end();
        server.close();
      });
    });
    server.listen(Number(port), addr, () => process.stdout.write('ready\n'));
  } else if (mode === 'send') {
    const total = Number(bytes);
    const chunk = Buffer.alloc(1 << 20);
    let sent = 0;
    const sock = net.connect(Number(port), addr, () => {
      const pump = (): void => {
        while (sent < total) {
          const piece = Math.min(chunk.length, total - sent);
          sent += piece;
          if (!sock.write(chunk.subarray(0, piece))) return void sock.once('drain', pump);
        }
        sock.end();
      };
      pump();
    });
    sock.resume();
  } else {
    throw new Error(`link-probe: unknown mode ${mode}`);
  }
}

if (process.argv[1] === self) probeMain(process.argv.slice(2));
