// One QMP connection: greeting, negotiation, strictly ordered request handling, event delivery.
import type { Socket } from 'node:net';
import type { VmEvent } from './events.js';
import { QmpAlreadyNegotiatedError, QmpCapabilityError, QmpInputError } from './errors.js';
import { JsonStream, type JsonStreamItem, type JsonStreamLimits } from './json-stream.js';
import type { QmpLogger } from './logger.js';
import type { MigrationApi } from './migration-api.js';
import { encodeMessage, errorResponse, greeting, returnResponse, type QmpServerMessage, type QmpVersion } from './protocol.js';
import { describeFailure, type CommandContext, type QmpRegistry, type SessionControl } from './registry.js';
import type { VmApi } from './vm-api.js';

/** Requests parsed but not yet run before the session stops reading (QEMU's QMP_REQ_QUEUE_LEN_MAX is 8). */
const MAX_QUEUED_REQUESTS = 8;

/** What a session needs from its server. */
export interface SessionDeps {
  readonly registry: QmpRegistry;
  readonly vm: VmApi;
  readonly migration: MigrationApi;
  readonly version: QmpVersion;
  /** Capabilities offered in the greeting. */
  readonly capabilities: readonly string[];
  readonly limits: Partial<JsonStreamLimits>;
  readonly logger: QmpLogger;
  /** A client whose unread output exceeds this many bytes is disconnected. */
  readonly maxOutputBytes: number;
  emitEvent(event: VmEvent): void;
  flushAll(): Promise<void>;
  onClose(session: QmpSession): void;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Negotiation serves both QEMU and StratoVirt clients: commands sent before qmp_capabilities are executed (StratoVirt
 * accepts them; QEMU would answer CommandNotFound), but events are delivered only after a successful
 * qmp_capabilities, as in QEMU, and a second qmp_capabilities fails as in QEMU.
 */
export class QmpSession implements SessionControl {
  readonly id: number;
  readonly offeredCapabilities: readonly string[];
  private readonly socket: Socket;
  private readonly deps: SessionDeps;
  private readonly stream: JsonStream;
  private readonly queue: JsonStreamItem[] = [];
  private negotiatedFlag = false;
  private enabledCaps: string[] = [];
  private draining = false;
  private pausedReading = false;
  private inputEnded = false;
  private closed = false;
  private lastWrite: Promise<void> = Promise.resolve();

  constructor(id: number, socket: Socket, deps: SessionDeps) {
    this.id = id;
    this.socket = socket;
    this.deps = deps;
    this.offeredCapabilities = deps.capabilities;
    this.stream = new JsonStream(deps.limits);
  }

  get negotiated(): boolean {
    return this.negotiatedFlag;
  }

  /** Capabilities the client enabled with qmp_capabilities. */
  get enabledCapabilities(): readonly string[] {
    return this.enabledCaps;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends the greeting and starts reading. */
  start(): void {
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('error', (e: NodeJS.ErrnoException) => {
      this.deps.logger.debug('QMP client socket error', { session: this.id, code: e.code, error: e.message });
    });
    this.socket.on('close', () => this.onClose());
    this.deps.logger.debug('QMP client connected', { session: this.id });
    this.send(greeting(this.deps.version, this.deps.capabilities));
  }

  negotiate(enable: readonly string[]): void {
    if (this.negotiatedFlag) throw new QmpAlreadyNegotiatedError();
    const missing = enable.filter((c) => !this.offeredCapabilities.includes(c));
    if (missing.length > 0) throw new QmpCapabilityError(missing);
    this.enabledCaps = [...enable];
    this.negotiatedFlag = true;
  }

  /** Writes an already encoded event line if this session negotiated. */
  deliverEvent(line: string): void {
    if (this.negotiatedFlag) this.write(line);
  }

  /** Resolves when everything written so far has been handed to the kernel (or the socket died). */
  flush(): Promise<void> {
    return this.lastWrite;
  }

  /** Drops the connection. */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    for (const item of this.stream.push(chunk)) this.queue.push(item);
    if (this.queue.length >= MAX_QUEUED_REQUESTS && !this.pausedReading) {
      // Back-pressure like QEMU: stop reading until the queue has drained.
      this.pausedReading = true;
      this.socket.pause();
    }
    void this.drain();
  }

  private onEnd(): void {
    this.inputEnded = true;
    for (const item of this.stream.end()) this.queue.push(item);
    void this.drain();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.deps.logger.debug('QMP client disconnected', { session: this.id });
    this.deps.onClose(this);
  }

  /** Runs queued requests one at a time, so replies leave in request order even when handlers are async. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const item = this.queue.shift()!;
        try {
          await this.handle(item);
        } catch (e) {
          // handle() maps every command failure; reaching here is a bug in the session itself.
          this.deps.logger.error('QMP session failed to handle a request', {
            session: this.id,
            error: e instanceof Error ? e.stack : String(e),
          });
        }
      }
    } finally {
      this.draining = false;
    }
    if (this.closed) return;
    if (this.pausedReading) {
      this.pausedReading = false;
      this.socket.resume();
    }
    if (this.inputEnded) this.socket.end();
  }

  private async handle(item: JsonStreamItem): Promise<void> {
    const request = item.kind === 'value' ? item.value : undefined;
    // QEMU echoes `id` whenever the input was an object carrying one, even if the envelope is wrong.
    const id = isObject(request) && Object.hasOwn(request, 'id') ? request.id : undefined;
    const afterReply: (() => void | Promise<void>)[] = [];
    let name: string | undefined;
    let reply: QmpServerMessage;
    try {
      if (item.kind === 'error') throw new QmpInputError(item.message);
      const checked = checkRequest(request);
      name = checked.execute;
      const ctx: CommandContext = {
        vm: this.deps.vm,
        migration: this.deps.migration,
        session: this,
        registry: this.deps.registry,
        version: this.deps.version,
        logger: this.deps.logger,
        afterReply: (task) => afterReply.push(task),
        emitEvent: (event) => this.deps.emitEvent(event),
        flushAll: () => this.deps.flushAll(),
      };
      this.deps.logger.debug('QMP command', { session: this.id, command: name });
      reply = returnResponse(await this.deps.registry.execute(name, checked.args, ctx), id);
    } catch (e) {
      const { cls, desc } = describeFailure(e, this.deps.logger, name);
      reply = errorResponse(cls, desc, id);
    }
    this.send(reply, id);
    for (const task of afterReply) {
      try {
        await task();
      } catch (e) {
        describeFailure(e, this.deps.logger, name);
      }
    }
  }

  /** Encodes and writes one message; a reply that cannot be encoded becomes a GenericError. */
  private send(message: QmpServerMessage, id?: unknown): void {
    let line: string;
    try {
      line = encodeMessage(message);
    } catch (e) {
      this.deps.logger.error('QMP reply cannot be encoded', { session: this.id, error: String(e) });
      line = encodeMessage(errorResponse('GenericError', 'Internal error: the reply cannot be encoded as JSON', id));
    }
    this.write(line);
  }

  private write(line: string): void {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return;
    if (this.socket.writableLength + line.length > this.deps.maxOutputBytes) {
      this.deps.logger.warn('QMP client is not reading its output; disconnecting it', {
        session: this.id,
        pendingBytes: this.socket.writableLength,
      });
      this.socket.destroy();
      return;
    }
    this.lastWrite = new Promise((resolve) => {
      this.socket.write(line, () => resolve());
    });
  }
}

/** QEMU's checks of the request envelope, in its words; `arguments` defaults to {}. */
function checkRequest(request: unknown): { execute: string; args: Record<string, unknown> } {
  if (!isObject(request)) throw new QmpInputError('QMP input must be a JSON object');
  for (const [key, value] of Object.entries(request)) {
    if (key === 'execute') {
      if (typeof value !== 'string') throw new QmpInputError("QMP input member 'execute' must be a string");
    } else if (key === 'arguments') {
      if (!isObject(value)) throw new QmpInputError("QMP input member 'arguments' must be an object");
    } else if (key !== 'id') {
      // 'exec-oob' lands here too: tsvirt does not offer out-of-band execution.
      throw new QmpInputError(`QMP input member '${key}' is unexpected`);
    }
  }
  if (!Object.hasOwn(request, 'execute')) throw new QmpInputError("QMP input lacks member 'execute'");
  return { execute: request.execute as string, args: (request.arguments ?? {}) as Record<string, unknown> };
}
