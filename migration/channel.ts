// Migration transports: tcp:HOST:PORT and unix:PATH URIs, connecting, listening, and back-pressured writing.

import * as fs from 'node:fs';
import * as net from 'node:net';
import { TsvirtError } from '../machine/errors.js';
import { parseIncoming } from '../machine/config-values.js';

/** Where a migration stream goes or comes from. */
export type MigrationAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string } | { kind: 'file'; path: string };

/** A migration URI the QMP `migrate` command cannot use. */
export class MigrationUriError extends TsvirtError {
  constructor(message: string) {
    super('ERR_MIGRATION_URI', message);
  }
}

/** Parses `tcp:HOST:PORT` (hostnames, IPv4, `[IPv6]`) or `unix:PATH`. */
export function parseMigrationUri(uri: string): MigrationAddress {
  let parsed;
  try {
    parsed = parseIncoming('uri', uri);
  } catch (e) {
    throw new MigrationUriError(`Invalid migration URI '${uri}': ${(e as Error).message.replace(/^-uri: /, '')}`);
  }
  if (parsed.kind === 'tcp') return { kind: 'tcp', host: parsed.host, port: parsed.port };
  if (parsed.kind === 'unix') return { kind: 'unix', path: parsed.path };
  if (parsed.kind === 'file') return { kind: 'file', path: parsed.path };
  throw new MigrationUriError(`Migration URI '${uri}' is not supported here: use tcp:HOST:PORT, unix:PATH or file:PATH`);
}

export function describeAddress(a: MigrationAddress): string {
  return a.kind !== 'tcp' ? `${a.kind}:${a.path}` : `tcp:${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** Connects, failing after `timeoutMs` with a message naming the address. */
export function connect(a: MigrationAddress, timeoutMs = 10000): Promise<net.Socket> {
  if (a.kind === 'file') return Promise.reject(new MigrationUriError('a file: URI is a snapshot, not a connection'));
  return new Promise((resolve, reject) => {
    const s = a.kind === 'unix' ? net.connect(a.path) : net.connect(a.port, a.host);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new TsvirtError('ERR_MIGRATION_CONNECT', `cannot connect to ${describeAddress(a)}: timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(new TsvirtError('ERR_MIGRATION_CONNECT', `cannot connect to ${describeAddress(a)}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
  });
}

/** True when something accepts connections on the unix socket at `path` (probed with a connect, at most 1 s). */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    const done = (live: boolean) => {
      clearTimeout(timer);
      probe.destroy();
      resolve(live);
    };
    const timer = setTimeout(() => done(false), 1000);
    probe.once('connect', () => done(true));
    probe.once('error', () => done(false));
  });
}

/** Listens on `a`; a stale unix socket file is replaced, a live one is refused. */
export async function listen(a: MigrationAddress): Promise<net.Server> {
  if (a.kind === 'file') throw new MigrationUriError('a file: URI is a snapshot, not a listener');
  const server = net.createServer({ pauseOnConnect: true });
  if (a.kind === 'unix' && fs.existsSync(a.path)) {
    // Replace a stale socket, but never delete a file that is not one, nor a socket someone still listens on.
    if (!fs.statSync(a.path).isSocket()) throw new TsvirtError('ERR_MIGRATION_LISTEN', `cannot listen on unix:${a.path}: it exists and is not a socket`);
    if (await listening(a.path)) throw new TsvirtError('ERR_MIGRATION_LISTEN', `cannot listen on unix:${a.path}: another listener is using it`);
    fs.rmSync(a.path, { force: true });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new TsvirtError('ERR_MIGRATION_LISTEN', `cannot listen on ${describeAddress(a)}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    if (a.kind === 'unix') server.listen(a.path, () => resolve());
    else server.listen(a.port, a.host, () => resolve());
  });
  return server;
}

/**
 * Re-wraps an accepted (paused) socket so the kernel reads straight into buffers the caller lends: Node's server
 * sockets take no `onread` option, but a socket built on the accepted handle does.
 */
export function withDirectReads(accepted: net.Socket, buffer: () => Uint8Array, onData: (n: number) => void): net.Socket {
  const handle = (accepted as unknown as { _handle: unknown })._handle;
  (accepted as unknown as { _handle: unknown })._handle = null;
  const s = new net.Socket({ handle, readable: true, writable: true, onread: { buffer, callback: (n: number) => { onData(n); return true; } } } as net.SocketConstructorOpts);
  s.setNoDelay(true);
  s.resume();
  return s;
}

/** The file descriptor under a connected socket (Node keeps it on a private handle); undefined once closed. */
export function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return fd !== undefined && fd >= 0 ? fd : undefined;
}

/** How long a write may see no progress at all before the connection counts as dead, and how often that is checked. */
const STALL_MS = 60_000;
const STALL_CHECK_MS = 5_000;

/** Writes chunk lists to a socket, waiting for 'drain' when the kernel buffer is full. */
export class ChannelWriter {
  bytesWritten = 0;
  private broken?: Error;

  /**
   * `stop`: while a write waits for the socket, aborting it (migrate_cancel) ends the wait with `stop.error()`
   * instead of waiting for TCP to give up on a dead link.
   */
  constructor(private readonly socket: net.Socket, private readonly stop?: { signal: AbortSignal; error: () => Error }) {
    socket.on('error', (e) => (this.broken ??= e));
    socket.on('close', () => (this.broken ??= new Error('connection closed')));
  }

  /** Queues `chunks`; resolves once the socket can take more. The chunks may be views of guest RAM (no copy). */
  async write(chunks: readonly Uint8Array[]): Promise<void> {
    if (this.broken) throw this.broken;
    let full = false;
    for (const c of chunks) {
      this.bytesWritten += c.length;
      if (!this.socket.write(c)) full = true;
    }
    if (full) await this.drain();
  }

  /**
   * Resolves once the socket's queue has drained. Rejects when the connection closes, when `stop` is aborted, or when
   * nothing at all left the queue for STALL_MS (a link that went silent: TCP alone would take minutes to say so).
   */
  drain(): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.stop?.signal.aborted) return Promise.reject(this.stop.error());
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let last = this.socket.bytesWritten;
      let still = 0;
      const watch = setInterval(() => {
        if (this.socket.bytesWritten !== last) {
          last = this.socket.bytesWritten;
          still = 0;
        } else if ((still += STALL_CHECK_MS) >= STALL_MS) {
          cleanup();
          reject(new Error(`no byte left for the peer in ${STALL_MS / 1000} s`));
        }
      }, STALL_CHECK_MS);
      const onDrain = () => { cleanup(); resolve(); };
      const onClose = () => { cleanup(); reject(this.broken ?? new Error('connection closed')); };
      const onAbort = () => { cleanup(); reject(this.stop!.error()); };
      const cleanup = () => {
        clearInterval(watch);
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
        this.stop?.signal.removeEventListener('abort', onAbort);
      };
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
      this.stop?.signal.addEventListener('abort', onAbort);
    });
  }
}
