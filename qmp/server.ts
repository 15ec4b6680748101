// The QMP server: unix and TCP listeners, sessions, event fan-out, and the one-call wiring `startQmp`.
import { chmod, lstat, stat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { BUILTIN_COMMANDS } from './commands/index.js';
import { formatEndpoint, parseEndpoint, type QmpEndpoint } from './endpoint.js';
import { QmpEndpointError, QmpSocketInUseError } from './errors.js';
import type { VmEvent } from './events.js';
import type { JsonStreamLimits } from './json-stream.js';
import { silentLogger, type QmpLogger } from './logger.js';
import type { MigrationApi } from './migration-api.js';
import { StubMigration } from './migration-stub.js';
import { encodeMessage, eventMessage, nowTimestamp, type QmpTimestamp, type QmpVersion } from './protocol.js';
import { QmpRegistry, type AnyCommandDef } from './registry.js';
import { QmpSession } from './session.js';
import { qmpVersion } from './version.js';
import type { VmApi } from './vm-api.js';

/** Tunables; every member has a sensible default. */
export interface QmpServerOptions {
  logger?: QmpLogger;
  /** Per-message limits of the JSON splitter (default 16 MiB, nesting 1024). */
  limits?: Partial<JsonStreamLimits>;
  /** Unread output per client before it is disconnected (default 16 MiB). */
  maxOutputBytes?: number;
  /** Longest wait for clients to receive SHUTDOWN before `vm.quit()` runs (default 1000 ms). */
  flushTimeoutMs?: number;
  /** Overrides the version reported in the greeting and query-version. */
  version?: QmpVersion;
  /** Overrides the command set (tests add failing commands; the default is every built-in command). */
  commands?: readonly AnyCommandDef[];
  /** Overrides the clock that stamps events. */
  clock?: () => QmpTimestamp;
}

interface Listener {
  server: net.Server;
  endpoint: QmpEndpoint;
  /** Device and inode of the socket file we created, so close() never removes someone else's. */
  file?: { dev: number; ino: number };
}

/** Capabilities offered in the greeting: none, since tsvirt has no out-of-band execution. */
const OFFERED_CAPABILITIES: readonly string[] = Object.freeze([]);

/** Serves QMP for one VM on any number of listeners and clients. */
export class QmpServer {
  readonly registry: QmpRegistry;
  private readonly vm: VmApi;
  private readonly migration: MigrationApi;
  private readonly logger: QmpLogger;
  private readonly options: Required<Pick<QmpServerOptions, 'maxOutputBytes' | 'flushTimeoutMs' | 'clock'>> & {
    limits: Partial<JsonStreamLimits>;
    version: QmpVersion;
  };
  private readonly listeners: Listener[] = [];
  private readonly sessions = new Set<QmpSession>();
  private readonly unsubscribers: (() => void)[] = [];
  private nextSessionId = 1;
  private closing = false;

  constructor(vm: VmApi, options: QmpServerOptions = {}) {
    this.vm = vm;
    this.migration = vm.migration ?? new StubMigration();
    this.logger = options.logger ?? silentLogger;
    this.registry = new QmpRegistry(options.commands ?? BUILTIN_COMMANDS);
    this.options = {
      limits: options.limits ?? {},
      maxOutputBytes: options.maxOutputBytes ?? 16 * 1024 * 1024,
      flushTimeoutMs: options.flushTimeoutMs ?? 1000,
      version: options.version ?? qmpVersion(),
      clock: options.clock ?? nowTimestamp,
    };
    const onEvent = (event: VmEvent): void => this.emitEvent(event);
    this.unsubscribers.push(vm.events.subscribe(onEvent));
    if (this.migration.events !== undefined) this.unsubscribers.push(this.migration.events.subscribe(onEvent));
  }

  /** Bound listeners in endpoint syntax; a TCP port 0 shows the port the kernel picked. */
  get addresses(): string[] {
    return this.listeners.map((l) => {
      const a = l.server.address();
      if (l.endpoint.kind === 'tcp' && a !== null && typeof a === 'object') {
        return formatEndpoint({ kind: 'tcp', host: a.address, port: a.port });
      }
      return formatEndpoint(l.endpoint);
    });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Starts listening on `unix:PATH` or `tcp:HOST:PORT`; resolves to the bound address. */
  async listen(spec: string): Promise<string> {
    const endpoint = parseEndpoint(spec);
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    const listener: Listener = { server, endpoint };
    if (endpoint.kind === 'unix') {
      await removeStaleSocket(endpoint.path);
      if (!(await listenPrivately(server, endpoint.path, spec))) {
        this.logger.warn('QMP socket created without umask protection (worker thread); chmod 0600 applied after bind', {
          endpoint: spec,
        });
      }
      const st = await stat(endpoint.path);
      listener.file = { dev: st.dev, ino: st.ino };
    } else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(new QmpEndpointError(spec, e.message)));
        server.listen(endpoint.port, endpoint.host === '' ? undefined : endpoint.host, () => resolve());
      });
    }
    server.on('error', (e) => this.logger.error('QMP listener error', { endpoint: spec, error: e.message }));
    this.listeners.push(listener);
    const bound = this.addresses[this.listeners.length - 1];
    this.logger.info('QMP listening', { endpoint: bound });
    return bound;
  }

  /** Sends an event to every negotiated client (the VM's and migration's events arrive here). */
  emitEvent(event: VmEvent): void {
    let line: string;
    try {
      line = encodeMessage(eventMessage(event.event, 'data' in event ? event.data : undefined, this.options.clock()));
    } catch (e) {
      // Never throw back into the emitter (a vCPU exit path, a migration phase).
      this.logger.error('QMP event cannot be encoded', { event: event.event, error: String(e) });
      return;
    }
    this.logger.debug('QMP event', { event: event.event });
    for (const s of this.sessions) s.deliverEvent(line);
  }

  /** Resolves once every client's output has left, or after flushTimeoutMs. */
  async flushAll(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.flushTimeoutMs);
    });
    await Promise.race([Promise.all([...this.sessions].map((s) => s.flush())), timeout]);
    clearTimeout(timer);
  }

  /** Stops listening, disconnects every client, unsubscribes from events and removes the socket files it created. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const u of this.unsubscribers) u();
    for (const s of this.sessions) s.destroy();
    await Promise.all(
      this.listeners.map(async (l) => {
        await new Promise<void>((resolve) => l.server.close(() => resolve()));
        if (l.endpoint.kind === 'unix' && l.file !== undefined) await removeOwnSocket(l.endpoint.path, l.file);
      }),
    );
    this.listeners.length = 0;
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const session = new QmpSession(this.nextSessionId++, socket, {
      registry: this.registry,
      vm: this.vm,
      migration: this.migration,
      version: this.options.version,
      capabilities: OFFERED_CAPABILITIES,
      limits: this.options.limits,
      logger: this.logger,
      maxOutputBytes: this.options.maxOutputBytes,
      emitEvent: (event) => this.emitEvent(event),
      flushAll: () => this.flushAll(),
      onClose: (s) => this.sessions.delete(s),
    });
    this.sessions.add(session);
    session.start();
  }
}

/**
 * Binds with umask 0177 so the socket file is born 0600: there is no moment when other users could connect (a chmod
 * after bind would leave one). Node binds synchronously inside listen(), so the umask is restored in the same tick.
 * Worker threads cannot change the umask; there it falls back to chmod after bind and returns false.
 */
async function listenPrivately(server: net.Server, path: string, spec: string): Promise<boolean> {
  let previous: number | undefined;
  try {
    previous = process.umask(0o177);
  } catch {
    previous = undefined; // ERR_WORKER_UNSUPPORTED_OPERATION
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new QmpEndpointError(spec, e.message)));
    try {
      server.listen(path, () => resolve());
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
  if (previous === undefined) await chmod(path, 0o600);
  return previous !== undefined;
}

/** Connects to an existing socket file: 'live' if something accepts, 'stale' if nobody listens any more. */
function probeSocket(path: string): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const client = net.connect(path);
    const timer = setTimeout(() => {
      client.destroy();
      resolve('live'); // something holds the socket but does not accept: not ours to delete
    }, 1000);
    client.once('connect', () => {
      clearTimeout(timer);
      client.destroy();
      resolve('live');
    });
    client.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') resolve('stale');
      else reject(e);
    });
  });
}

/** Removes a socket file left by a dead process; refuses a live one and anything that is not a socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new QmpEndpointError(`unix:${path}`, 'path exists and is not a socket');
  if ((await probeSocket(path)) === 'live') throw new QmpSocketInUseError(path);
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Unlinks the socket file only if it is still the one we bound (Node usually removed it already). */
async function removeOwnSocket(path: string, file: { dev: number; ino: number }): Promise<void> {
  try {
    const st = await lstat(path);
    if (st.dev === file.dev && st.ino === file.ino) await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * The wiring the machine uses: a server for `vm` listening on every endpoint (`unix:PATH[,server,nowait]`,
 * `tcp:HOST:PORT[,server=on,wait=off]`). If any endpoint fails, the others are closed and the error is thrown.
 */
export async function startQmp(
  endpoints: readonly string[],
  vm: VmApi,
  logger: QmpLogger = silentLogger,
  options: Omit<QmpServerOptions, 'logger'> = {},
): Promise<QmpServer> {
  const server = new QmpServer(vm, { ...options, logger });
  try {
    for (const ep of endpoints) await server.listen(ep);
  } catch (e) {
    await server.close();
    throw e;
  }
  return server;
}
