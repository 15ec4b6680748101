// A minimal QMP test client over a real socket: raw writes, line-by-line reads, events kept apart from replies.
import net from 'node:net';

export type Message = Record<string, unknown>;

export class TestClient {
  readonly socket: net.Socket;
  readonly received: Message[] = [];
  private buffer = '';
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let i: number;
      while ((i = this.buffer.indexOf('\r\n')) >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        this.received.push(JSON.parse(line) as Message);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** Connects to `unix:PATH` or `tcp:HOST:PORT` and waits for the greeting. */
  static async connect(address: string): Promise<TestClient> {
    const socket = address.startsWith('unix:')
      ? net.connect(address.slice(5))
      : net.connect(Number(address.slice(address.lastIndexOf(':') + 1)), address.slice(4, address.lastIndexOf(':')).replace(/^\[|\]$/g, ''));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new TestClient(socket);
    await client.waitFor((m) => 'QMP' in m);
    return client;
  }

  get greeting(): Message {
    return this.received.find((m) => 'QMP' in m)!;
  }

  get events(): Message[] {
    return this.received.filter((m) => 'event' in m);
  }

  get replies(): Message[] {
    return this.received.filter((m) => 'return' in m || 'error' in m);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves with the first received message matching `pred` (already received ones count). */
  async waitFor(pred: (m: Message) => boolean, timeoutMs = 2000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(pred);
      if (found !== undefined) return found;
      if (this.closed) throw new Error('connection closed while waiting');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; received ${JSON.stringify(this.received).slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits until `n` replies (return or error) have arrived and returns them. */
  async waitReplies(n: number, timeoutMs = 2000): Promise<Message[]> {
    await this.waitFor(() => this.replies.length >= n, timeoutMs);
    return this.replies.slice(0, n);
  }

  write(data: string | Uint8Array): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  /** Sends one command and resolves with the reply carrying `id`. */
  async execute(execute: string, args?: Record<string, unknown>, id: unknown = `${execute}-${Math.random()}`): Promise<Message> {
    const msg: Message = { execute, id };
    if (args !== undefined) msg.arguments = args;
    this.write(JSON.stringify(msg) + '\r\n');
    return this.waitFor((m) => ('return' in m || 'error' in m) && JSON.stringify(m.id) === JSON.stringify(id));
  }

  close(): void {
    this.socket.destroy();
  }
}
