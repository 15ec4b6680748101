// A small QMP client for tests: connects over a unix socket, reads the greeting, runs commands, records events.

import * as net from 'node:net';

export interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
  id?: unknown;
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export class QmpClient {
  greeting: unknown;
  readonly events: QmpEvent[] = [];
  private buffer = '';
  private pending: ((r: QmpReply) => void)[] = [];
  private eventWaiters: (() => void)[] = [];

  private constructor(private readonly socket: net.Socket) {}

  /** Connects to `path` (retrying until it exists, up to `timeoutMs`) and reads the greeting. */
  static async connect(path: string, timeoutMs = 10000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const c = new QmpClient(socket);
        c.greeting = await c.start();
        return c;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private start(): Promise<unknown> {
    return new Promise((resolve) => {
      let greeted = false;
      this.socket.on('data', (d) => {
        this.buffer += d.toString();
        let nl: number;
        while ((nl = this.buffer.indexOf('\n')) >= 0) {
          const line = this.buffer.slice(0, nl).trim();
          this.buffer = this.buffer.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          if (!greeted) {
            greeted = true;
            resolve(msg);
          } else if (msg.event) {
            this.events.push(msg as QmpEvent);
            for (const w of this.eventWaiters.splice(0)) w();
          } else {
            this.pending.shift()?.(msg as QmpReply);
          }
        }
      });
      this.socket.on('error', () => {});
    });
  }

  /** Runs a command and returns the whole reply. */
  execute(command: string, args?: Record<string, unknown>): Promise<QmpReply> {
    const msg: Record<string, unknown> = { execute: command };
    if (args) msg.arguments = args;
    return new Promise((resolve) => {
      this.pending.push(resolve);
      this.socket.write(JSON.stringify(msg) + '\n');
    });
  }

  /** Runs a command and returns its `return` value, throwing on an error reply. */
  async run(command: string, args?: Record<string, unknown>): Promise<any> {
    const r = await this.execute(command, args);
    if (r.error) throw new Error(`${command}: ${r.error.class}: ${r.error.desc}`);
    return r.return;
  }

  /** Waits for an event named `name` (already received ones count). */
  async waitEvent(name: string, timeoutMs = 10000): Promise<QmpEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find((x) => x.event === name);
      if (e) return e;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${name} event within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.eventWaiters.push(() => { clearTimeout(t); r(); });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
