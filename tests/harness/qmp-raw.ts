// A byte-level QMP client for wire tests: writes raw bytes, keeps every line the server sent, and waits for replies
// and events without assuming anything about what was written (split, batched, invalid or pipelined input).

import * as net from 'node:net';
import { VmFleet, type Vm } from './migration.js';

export interface RawReply {
  return?: any;
  error?: { class: string; desc: string };
  id?: unknown;
}

export interface RawEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One QMP connection at the byte level. */
export class RawQmp {
  greeting: any;
  /** Every line received, including the greeting, as sent (with its `\r\n`). */
  readonly lines: string[] = [];
  /** Every message that is not an event nor the greeting, in arrival order. */
  readonly replies: RawReply[] = [];
  readonly events: RawEvent[] = [];
  /** Problems with what the server sent (a line that is not JSON, not ASCII, or not CRLF-terminated). */
  readonly wireErrors: string[] = [];
  /** Set when the socket closed. */
  closedAt: number | undefined;
  readonly closed: Promise<void>;
  private buffer = '';
  private taken = 0;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.closedAt = performance.now();
      this.notify();
      resolve();
    }));
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => this.onData(d));
  }

  /** Connects (retrying while the socket does not exist yet) and, unless told not to, waits for the greeting. */
  static async connect(path: string, opts: { timeoutMs?: number; waitGreeting?: boolean } = {}): Promise<RawQmp> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10000);
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path);
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        const c = new RawQmp(socket);
        if (opts.waitGreeting !== false) await c.until(() => c.greeting !== undefined, 5000, 'the greeting');
        return c;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(50);
      }
    }
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private onData(d: Buffer): void {
    this.buffer += d.toString('latin1');
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const raw = this.buffer.slice(0, nl + 1);
      this.buffer = this.buffer.slice(nl + 1);
      this.lines.push(raw);
      if (!raw.endsWith('\r\n')) this.wireErrors.push(`line not CRLF-terminated: ${raw.slice(0, 200)}`);
      if (/[^\x20-\x7e\r\n]/.test(raw)) this.wireErrors.push(`non-ASCII or control byte in line: ${JSON.stringify(raw.slice(0, 200))}`);
      let msg: any;
      try {
        msg = JSON.parse(raw);
      } catch {
        this.wireErrors.push(`line is not JSON: ${raw.slice(0, 200)}`);
        continue;
      }
      if (this.greeting === undefined && this.lines.length === 1) this.greeting = msg;
      else if (msg !== null && typeof msg === 'object' && typeof msg.event === 'string') this.events.push(msg as RawEvent);
      else this.replies.push(msg as RawReply);
    }
    this.notify();
  }

  /** Waits until `pred()` holds, re-checking whenever something arrives; fails after `timeoutMs`. */
  async until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last lines: ${this.lines.slice(-5).map((l) => l.slice(0, 300)).join('')}`);
      }
      if (this.closedAt !== undefined && !pred()) throw new Error(`connection closed while waiting for ${what}; last lines: ${this.lines.slice(-5).join('')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Writes raw bytes; resolves once they were handed to the kernel. */
  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (e) => (e ? reject(e) : resolve())));
  }

  /** Writes one message as compact JSON. */
  send(msg: unknown): Promise<void> {
    return this.write(JSON.stringify(msg));
  }

  /** The next reply not taken yet. */
  async reply(timeoutMs = 5000): Promise<RawReply> {
    await this.until(() => this.replies.length > this.taken, timeoutMs, `reply #${this.taken + 1}`);
    return this.replies[this.taken++];
  }

  /** The next `n` replies not taken yet. */
  async nextReplies(n: number, timeoutMs = 5000): Promise<RawReply[]> {
    await this.until(() => this.replies.length >= this.taken + n, timeoutMs, `${n} replies after #${this.taken}`);
    const out = this.replies.slice(this.taken, this.taken + n);
    this.taken += n;
    return out;
  }

  /** Sends a command (with `id` when given) and returns its reply. */
  async cmd(execute: string, args?: unknown, id?: unknown): Promise<RawReply> {
    const msg: Record<string, unknown> = { execute };
    if (args !== undefined) msg.arguments = args;
    if (id !== undefined) msg.id = id;
    await this.send(msg);
    return this.reply();
  }

  /** Like cmd, but returns `return` and throws on an error reply. */
  async run(execute: string, args?: unknown): Promise<any> {
    const r = await this.cmd(execute, args);
    if (r.error) throw new Error(`${execute}: ${r.error.class}: ${r.error.desc}`);
    return r.return;
  }

  /** Waits for the `index`-th (0-based) event named `name`. */
  async waitEvent(name: string, timeoutMs = 5000, index = 0): Promise<RawEvent> {
    await this.until(() => this.events.filter((e) => e.event === name).length > index, timeoutMs, `event ${name} #${index}`);
    return this.events.filter((e) => e.event === name)[index];
  }

  /** Half-closes (the server still answers what was sent). */
  end(): void {
    this.socket.end();
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * VmFleet.start, with tsvirt's exit status, stderr and console tail added to the error when the VM never served QMP
 * (the fleet's own error is only the client's last ENOENT).
 */
export async function startQmpVm(fleet: VmFleet, args: string[] = [], opts: { smp?: string; mem?: string } = {}): Promise<Vm> {
  try {
    return await fleet.start(args, opts);
  } catch (e) {
    const vms = (fleet as unknown as { vms?: Vm[] }).vms;
    const proc = vms?.at(-1)?.proc;
    if (proc === undefined) throw e;
    const status = proc.running ? 'still running' : `exited (${proc.child.exitCode ?? proc.child.signalCode})`;
    throw new Error(`${(e as Error).message}; tsvirt ${status}; stderr: ${proc.stderr.slice(-1500)}; console tail: ${proc.output.slice(-500)}`);
  }
}

/**
 * The set-up the QMP test files share, for one `describe`: a fresh VmFleet for each test, and every RawQmp passed to
 * `track` destroyed after it, before the fleet's VMs are killed. Call it in the describe body (it registers the hooks).
 */
export function qmpFixture(): { fleet(): VmFleet; track(raw: RawQmp): RawQmp } {
  let fleet: VmFleet | undefined;
  const raws: RawQmp[] = [];
  beforeEach(() => {
    fleet = new VmFleet();
  });
  afterEach(async () => {
    for (const r of raws.splice(0)) r.destroy();
    await fleet?.cleanup();
  });
  return {
    fleet: () => fleet!,
    track: (raw) => (raws.push(raw), raw),
  };
}
