// Spawns a tsvirt (or QEMU) process for an end-to-end test, reads its console line by line, and always cleans it up.

import { spawn, type ChildProcess } from 'node:child_process';
import { tsvirtMain } from './paths.js';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running VMM process whose serial console is its stdout. */
export class VmmProcess {
  readonly child: ChildProcess;
  /** Everything the console printed so far. */
  output = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private cursor = 0;
  private listeners: (() => void)[] = [];
  readonly startedAt = performance.now();

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    live.add(this.child);
    this.child.stdout!.on('data', (d: Buffer) => {
      this.output += d.toString('latin1');
      this.notify();
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        live.delete(this.child);
        this.notify();
        resolve({ code, signal });
      });
    });
  }

  /** Starts tsvirt with `args` (the console is added as `-serial stdio` unless args name a serial). */
  static tsvirt(args: string[], env: NodeJS.ProcessEnv = {}, main = tsvirtMain): VmmProcess {
    const full = args.includes('-serial') ? args : [...args, '-serial', 'stdio'];
    return new VmmProcess(process.execPath, [main, ...full], env);
  }

  private notify(): void {
    for (const l of this.listeners.splice(0)) l();
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Waits until the console shows a line matching `re` after the read cursor, then moves the cursor past it.
   * Fails with the console tail and stderr when the process exits or `timeoutMs` passes first.
   */
  async waitFor(re: RegExp, timeoutMs = 30000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // Only complete lines count, so a pattern never matches half of a line still arriving.
      const rest = this.output.slice(this.cursor, this.output.lastIndexOf('\n') + 1);
      const m = rest.match(re);
      if (m && m.index !== undefined) {
        this.cursor += m.index + m[0].length;
        return m;
      }
      if (!this.running) throw new Error(`process exited (${this.child.exitCode ?? this.child.signalCode}) before ${re}; console tail: ${this.output.slice(-800)}\nstderr: ${this.stderr.slice(-800)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${re}; console tail: ${this.output.slice(-800)}\nstderr: ${this.stderr.slice(-800)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.listeners.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Types `text` on the console. */
  send(text: string): void {
    this.child.stdin!.write(text);
  }

  /** Waits for exit, killing the process if it has not exited within `timeoutMs`. */
  async waitExit(timeoutMs = 10000): Promise<Exit> {
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const e = await this.exited;
    clearTimeout(t);
    return e;
  }

  /** Kills the process (if still running) and waits for it. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Parses a test-guest heartbeat line. */
export interface Heartbeat {
  seq: number;
  t: bigint;
  /** When the host saw the line (performance.now() of the test process). */
  at: number;
}

/** Collects heartbeats as they arrive on `vm`'s console. */
export function collectHeartbeats(vm: VmmProcess): Heartbeat[] {
  const beats: Heartbeat[] = [];
  let partial = '';
  vm.child.stdout!.on('data', (d: Buffer) => {
    partial += d.toString('latin1');
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const m = line.match(/HB seq=(\d+) t=(\d+)/);
      if (m) beats.push({ seq: Number(m[1]), t: BigInt(m[2]), at: performance.now() });
    }
  });
  return beats;
}
