// A private network namespace with a tap for network tests: created by the test, always deleted afterwards.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tsvirtMain } from './paths.js';
import { VmmProcess } from './tsvirt-process.js';

/** The host side of the guest's link: 10.0.2.2/24 on the tap; the guest is 10.0.2.15. */
export const HOST_IP = '10.0.2.2';
export const GUEST_IP = '10.0.2.15';

export class NetNs {
  readonly name: string;
  readonly tap: string;

  /** With `bridged`, extra taps for migration destinations, all on one bridge that holds the host address. */
  readonly extraTaps: string[] = [];

  constructor(tag: string, opts: { bridgedTaps?: number } = {}) {
    this.name = `tsvirt-${tag}-${process.pid}`;
    this.tap = `tsvt${process.pid % 10000}${tag.slice(0, 2)}`;
    this.delete();
    execFileSync('ip', ['netns', 'add', this.name]);
    const inNs = (...args: string[]) => execFileSync('ip', ['netns', 'exec', this.name, ...args]);
    inNs('ip', 'link', 'set', 'lo', 'up');
    inNs('ip', 'tuntap', 'add', this.tap, 'mode', 'tap');
    if (!opts.bridgedTaps) {
      inNs('ip', 'addr', 'add', `${HOST_IP}/24`, 'dev', this.tap);
      inNs('ip', 'link', 'set', this.tap, 'up');
      return;
    }
    // Same-host migration: source and destination each hold their own tap, bridged, as a real host would do it.
    inNs('ip', 'link', 'add', 'br0', 'type', 'bridge');
    inNs('ip', 'addr', 'add', `${HOST_IP}/24`, 'dev', 'br0');
    inNs('ip', 'link', 'set', 'br0', 'up');
    const taps = [this.tap];
    for (let i = 1; i < opts.bridgedTaps; i++) {
      const t = `${this.tap}${i}`;
      inNs('ip', 'tuntap', 'add', t, 'mode', 'tap');
      this.extraTaps.push(t);
      taps.push(t);
    }
    for (const t of taps) {
      inNs('ip', 'link', 'set', t, 'master', 'br0');
      inNs('ip', 'link', 'set', t, 'up');
    }
  }

  /** Runs tsvirt inside the namespace (so it can open the tap there). */
  tsvirt(args: string[]): VmmProcess {
    return new VmmProcess('ip', ['netns', 'exec', this.name, process.execPath, tsvirtMain, ...args, ...(args.includes('-serial') ? [] : ['-serial', 'stdio'])]);
  }

  /** Runs a command inside the namespace and returns its output (never throws). */
  run(cmd: string, args: string[], timeoutMs = 60000): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.name, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /** Runs a Node script (source text) inside the namespace. */
  node(source: string, args: string[] = [], timeoutMs = 60000): { status: number | null; stdout: string; stderr: string } {
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-ns-')), 'script.mjs');
    fs.writeFileSync(f, source);
    try {
      return this.run(process.execPath, [f, ...args], timeoutMs);
    } finally {
      fs.rmSync(path.dirname(f), { recursive: true, force: true });
    }
  }

  /**
   * Like `run`, but without blocking the event loop, so the VMMs' consoles keep being drained meanwhile (a VMM whose
   * serial output is not read, as QEMU's `-serial stdio` is not while `run` blocks, stalls its guest's UART).
   */
  runAsync(cmd: string, args: string[], timeoutMs = 60000): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('close', (status) => {
        clearTimeout(t);
        resolve({ status, stdout, stderr });
      });
    });
  }

  /** Like `node`, without blocking the event loop (see runAsync). */
  async nodeAsync(source: string, args: string[] = [], timeoutMs = 60000): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-ns-')), 'script.mjs');
    fs.writeFileSync(f, source);
    try {
      return await this.runAsync(process.execPath, [f, ...args], timeoutMs);
    } finally {
      fs.rmSync(path.dirname(f), { recursive: true, force: true });
    }
  }

  /** Deletes the namespace (and with it the tap); safe to call twice. */
  delete(): void {
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
  }
}

/**
 * A UDP echo client: sends `totalBytes` in `size`-byte datagrams to GUEST_IP:7 with at most `window` in flight,
 * retransmitting lost ones, and checks every echo byte for byte. Prints a JSON summary.
 */
export const UDP_ECHO_CLIENT = `
import dgram from 'node:dgram';
const [total, size, window] = process.argv.slice(2).map(Number);
const count = Math.ceil(total / size);
const sock = dgram.createSocket('udp4');
const payload = (i) => { const b = Buffer.alloc(size); b.writeUInt32LE(i, 0); for (let j = 4; j < size; j++) b[j] = (i * 31 + j) & 0xff; return b; };
const done = new Set(); const sentAt = new Map(); let next = 0; let retransmits = 0; let bad = 0; const t0 = Date.now();
const pump = () => { while (sentAt.size < window && next < count) { sentAt.set(next, Date.now()); sock.send(payload(next), 7, '${GUEST_IP}'); next++; } };
sock.on('message', (m) => { const i = m.readUInt32LE(0); if (!sentAt.has(i)) return; if (!m.equals(payload(i))) bad++; sentAt.delete(i); done.add(i); pump();
  if (done.size === count) { console.log(JSON.stringify({ ok: bad === 0, datagrams: count, bytes: count * size, ms: Date.now() - t0, retransmits, bad })); process.exit(0); } });
setInterval(() => { const now = Date.now(); for (const [i, t] of sentAt) if (now - t > 300) { sentAt.set(i, now); retransmits++; sock.send(payload(i), 7, '${GUEST_IP}'); }
  if (now - t0 > 50000) { console.log(JSON.stringify({ ok: false, timeout: true, done: done.size, count, retransmits })); process.exit(1); } }, 50);
sock.bind(0, () => pump());
`;
