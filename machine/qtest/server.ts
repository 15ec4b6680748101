// The qtest socket: listens on (or connects to) a unix socket and runs one QtestSession per connection, line by line.

import * as fs from 'node:fs';
import * as net from 'node:net';
import { QTEST_MAX_LINE, reply } from './protocol.js';
import { QtestSession, type QtestTarget } from './session.js';

export interface QtestServerOptions {
  /** Diagnostics (connections, oversized lines). */
  readonly log?: (message: string) => void;
  /** Called when a connection ends; `-mod-test` quits the VM when its test driver goes away. */
  readonly onDisconnect?: () => void;
}

/**
 * Serves the qtest protocol on unix-socket connections. `listen` is QEMU's `-qtest unix:PATH,server`;
 * `connect` is StratoVirt's `-mod-test PATH` and QEMU's default, where the test listens first, so
 * there is no race on the socket file appearing.
 */
export class QtestServer {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly log: (message: string) => void;

  constructor(private readonly target: QtestTarget, private readonly opts: QtestServerOptions = {}) {
    this.log = opts.log ?? (() => {});
  }

  /** Listens at `path` (replacing a stale socket file). */
  static async listen(path: string, target: QtestTarget, opts: QtestServerOptions = {}): Promise<QtestServer> {
    const qs = new QtestServer(target, opts);
    try {
      if (fs.statSync(path).isSocket()) fs.unlinkSync(path);
    } catch {
      // Nothing there: the usual case.
    }
    const server = net.createServer((s) => qs.serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    qs.server = server;
    return qs;
  }

  /** Connects to a test driver listening at `path` and serves that one connection. */
  static async connect(path: string, target: QtestTarget, opts: QtestServerOptions = {}): Promise<QtestServer> {
    const qs = new QtestServer(target, opts);
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(path, () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    qs.serve(socket);
    return qs;
  }

  /** Runs a session on `socket` until it closes. */
  serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setEncoding('latin1');
    const session = new QtestSession(this.target, (line) => {
      if (!socket.destroyed) socket.write(line + '\n');
    });
    let pending = '';
    socket.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).replace(/\r$/, '');
        pending = pending.slice(nl + 1);
        session.handleLine(line);
      }
      if (pending.length > QTEST_MAX_LINE) {
        this.log(`qtest: line over ${QTEST_MAX_LINE} bytes; closing the connection`);
        socket.end(reply.fail('line too long') + '\n');
        pending = '';
      }
    });
    socket.on('error', (e) => this.log(`qtest: ${e.message}`));
    socket.on('close', () => {
      session.close();
      this.sockets.delete(socket);
      this.opts.onDisconnect?.();
    });
  }

  /** Open connections. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
