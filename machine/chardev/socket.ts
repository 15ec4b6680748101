// The socket backend: a unix or tcp server the console attaches to; one client at a time, output dropped while none is attached.

import * as fs from 'node:fs';
import * as net from 'node:net';
import type { CharBackend } from './backend.js';
import { InputQueue } from './backend.js';

export type SocketAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export class SocketBackend implements CharBackend {
  readonly description: string;
  private readonly server: net.Server;
  private client?: net.Socket;
  private readonly input: InputQueue;

  private constructor(private readonly address: SocketAddress) {
    this.description = address.kind === 'unix' ? `unix:${address.path}` : `tcp:${address.host}:${address.port}`;
    this.input = new InputQueue((held) => (held ? this.client?.pause() : this.client?.resume()));
    this.server = net.createServer((sock) => this.attach(sock));
  }

  /** Listens; a stale unix socket file (nobody accepting) is replaced. */
  static async listen(address: SocketAddress): Promise<SocketBackend> {
    const b = new SocketBackend(address);
    if (address.kind === 'unix') await removeStaleSocket(address.path);
    await new Promise<void>((resolve, reject) => {
      b.server.once('error', reject);
      const done = () => { b.server.off('error', reject); resolve(); };
      if (address.kind === 'unix') b.server.listen(address.path, done);
      else b.server.listen(address.port, address.host, done);
    });
    return b;
  }

  private attach(sock: net.Socket): void {
    if (this.client) {
      sock.destroy(); // one console client at a time, as QEMU's socket chardev
      return;
    }
    this.client = sock;
    sock.on('data', (d: Buffer) => this.input.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      if (this.client === sock) this.client = undefined;
    });
  }

  write(bytes: Uint8Array): void {
    if (this.client && !this.client.destroyed) this.client.write(Buffer.from(bytes));
  }

  setInputSink(sink: (bytes: Uint8Array) => number): void {
    this.input.setSink(sink);
  }

  resumeInput(): void {
    this.input.drain();
  }

  close(): void {
    this.client?.destroy();
    this.server.close();
    if (this.address.kind === 'unix') fs.rmSync(this.address.path, { force: true });
  }
}

/** Removes `path` if it is a socket nobody listens on; refuses to touch a live socket or another kind of file. */
export async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path} is in use by another process`);
  fs.rmSync(path, { force: true });
}
