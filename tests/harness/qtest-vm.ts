// Starts a real tsvirt in -mod-test mode with disk images in a private directory, connects a QtestClient, and always cleans up.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { QtestClient } from '../../machine/qtest/client.js';
import { VmmProcess, type Exit } from './tsvirt-process.js';

export const SECTOR = 512;

/** One `-drive` + `-device virtio-blk-pci` pair. */
export interface QtestDiskSpec {
  /** PCI slot (addr=0xSLOT). */
  readonly slot: number;
  /** Image size in sectors. */
  readonly sectors: number;
  /** Byte `i` of the image; default a pattern that differs per sector and per disk slot. */
  readonly fill?: (i: number) => number;
  readonly readonly?: boolean;
  readonly serial?: string;
  /** More -drive options, e.g. `direct=on`. */
  readonly driveOptions?: string;
}

/** The default image contents: depends on the byte offset and the slot, so a misdirected read shows. */
export function defaultFill(slot: number): (i: number) => number {
  return (i) => ((i >>> 9) * 7 + (i & 0x1ff) * 13 + slot * 101) & 0xff;
}

const live = new Set<QtestVm>();

/** A tsvirt process in device test mode plus the client connected to its socket. */
export class QtestVm {
  private constructor(
    readonly dir: string,
    readonly socket: string,
    readonly proc: VmmProcess,
    readonly client: QtestClient,
    private readonly sock: net.Socket,
    /** Host paths of the images, in `disks` order. */
    readonly images: string[],
  ) {}

  /**
   * Creates the images, spawns `tsvirt -mod-test SOCK -m MEM ...`, waits for the socket, connects
   * and starts intercepting interrupts. On any failure everything created so far is removed.
   */
  static async start(opts: { disks: readonly QtestDiskSpec[]; memMiB?: number; extraArgs?: string[] }): Promise<QtestVm> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-qtest-'));
    const socket = path.join(dir, 'qtest.sock');
    const images: string[] = [];
    const args = ['-mod-test', socket, '-m', String(opts.memMiB ?? 64)];
    let proc: VmmProcess | undefined;
    try {
      for (const [n, d] of opts.disks.entries()) {
        const image = path.join(dir, `disk${n}.raw`);
        const fill = d.fill ?? defaultFill(d.slot);
        fs.writeFileSync(image, new Uint8Array(d.sectors * SECTOR).map((_, i) => fill(i)));
        images.push(image);
        args.push('-drive', `file=${image},id=d${n}${d.readonly ? ',readonly=on' : ''}${d.driveOptions ? `,${d.driveOptions}` : ''}`);
        args.push('-device', `virtio-blk-pci,drive=d${n},id=disk${n},addr=0x${d.slot.toString(16)}${d.serial ? `,serial=${d.serial}` : ''}`);
      }
      args.push(...(opts.extraArgs ?? []));
      proc = VmmProcess.tsvirt(args);
      const sock = await connectWhenReady(proc, socket, 10000);
      const vm = new QtestVm(dir, socket, proc, new QtestClient(sock), sock, images);
      live.add(vm);
      await vm.client.irqIntercept();
      return vm;
    } catch (e) {
      await proc?.kill();
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  get running(): boolean {
    return this.proc.running;
  }

  /** Waits (briefly) until tsvirt's stderr contains `text`; returns whether it did. */
  async stderrIncludes(text: string | RegExp, timeoutMs = 2000): Promise<boolean> {
    const has = () => (typeof text === 'string' ? this.proc.stderr.includes(text) : text.test(this.proc.stderr));
    const deadline = Date.now() + timeoutMs;
    while (!has() && Date.now() < deadline) await sleep(10);
    return has();
  }

  /**
   * Sends `lines` as one write, so tsvirt reads them in one chunk and runs them back to back in
   * one turn of its event loop (nothing asynchronous, such as a block completion, runs between).
   * Resolves with each reply.
   */
  async batch(lines: readonly string[]): Promise<string[]> {
    this.sock.cork();
    const replies = lines.map((l) => this.client.command(l));
    this.sock.uncork();
    return Promise.all(replies);
  }

  /** Current contents of image `n` on the host. */
  image(n = 0): Buffer {
    return fs.readFileSync(this.images[n]);
  }

  /** SHA-256 of guest RAM [addr, addr+len) read through the socket (b64read keeps the line short). */
  async ramHash(addr: number, len: number): Promise<string> {
    const h = createHash('sha256');
    const CHUNK = 1 << 20;
    for (let at = 0; at < len; at += CHUNK) {
      const n = Math.min(CHUNK, len - at);
      h.update(Buffer.from(await this.client.command(`b64read 0x${(addr + at).toString(16)} ${n}`), 'base64'));
    }
    return h.digest('hex');
  }

  /**
   * Disconnects (tsvirt exits when its test goes away), waits for the exit, kills it if it does
   * not, and removes the directory. Returns how it exited. Safe to call twice.
   */
  async stop(timeoutMs = 5000): Promise<Exit> {
    live.delete(this);
    this.client.close();
    const exit = await this.proc.waitExit(timeoutMs);
    fs.rmSync(this.dir, { recursive: true, force: true });
    return exit;
  }
}

/** Kills every QtestVm still running (an after() hook's last resort). */
export async function stopAllQtestVms(): Promise<void> {
  await Promise.all([...live].map((vm) => vm.stop(2000).catch(() => undefined)));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** tsvirt listens on the socket: poll for the file, then connect (retrying the bind-to-listen window). */
async function connectWhenReady(proc: VmmProcess, socket: string, timeoutMs: number): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running) throw new Error(`tsvirt exited (${proc.child.exitCode ?? proc.child.signalCode}) before its test socket appeared; stderr: ${proc.stderr}`);
    if (Date.now() > deadline) throw new Error(`tsvirt's test socket did not appear within ${timeoutMs} ms; stderr: ${proc.stderr}`);
    let isSocket = false;
    try {
      isSocket = fs.statSync(socket).isSocket();
    } catch {
      // Not there yet.
    }
    if (isSocket) {
      try {
        return await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(socket, () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw e;
      }
    }
    await sleep(10);
  }
}
