// The stdio backend: guest output to stdout, stdin to the guest; raw mode on a terminal, with Ctrl-A x to quit as QEMU has it.

import type { CharBackend } from './backend.js';
import { InputQueue } from './backend.js';

const CTRL_A = 0x01;

export class StdioBackend implements CharBackend {
  readonly description = 'stdio';
  private readonly input: InputQueue;
  private readonly raw: boolean;
  private escape = false;
  private readonly onData = (chunk: Buffer) => this.input.push(this.filterEscapes(chunk));

  /** `onQuit` is called when the user types Ctrl-A x on a terminal. */
  constructor(private readonly onQuit: () => void) {
    this.input = new InputQueue((held) => (held ? process.stdin.pause() : process.stdin.resume()));
    this.raw = Boolean(process.stdin.isTTY);
    if (this.raw) process.stdin.setRawMode(true);
    process.stdin.on('data', this.onData);
    process.stdin.on('error', () => {});
    process.stdin.resume();
  }

  /** Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A; only on a terminal, where Ctrl-C belongs to the guest. */
  private filterEscapes(chunk: Buffer): Uint8Array {
    if (!this.raw) return chunk;
    const out: number[] = [];
    for (const b of chunk) {
      if (this.escape) {
        this.escape = false;
        if (b === 0x78 /* x */) {
          this.onQuit();
          continue;
        }
        if (b === CTRL_A) out.push(CTRL_A);
        continue;
      }
      if (b === CTRL_A) this.escape = true;
      else out.push(b);
    }
    return Uint8Array.from(out);
  }

  write(bytes: Uint8Array): void {
    process.stdout.write(bytes);
  }

  setInputSink(sink: (bytes: Uint8Array) => number): void {
    this.input.setSink(sink);
  }

  resumeInput(): void {
    this.input.drain();
  }

  close(): void {
    process.stdin.off('data', this.onData);
    if (this.raw) process.stdin.setRawMode(false);
    process.stdin.pause();
    process.stdin.unref?.();
  }
}
