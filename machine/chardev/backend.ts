// What a character device backend offers a serial port: output, input with back-pressure, and closing.

/** A host endpoint for a guest character device (serial console). */
export interface CharBackend {
  /** Human-readable description for logs, e.g. `pty /dev/pts/3`. */
  readonly description: string;
  /** Sends guest output to the host side; drops it when nobody is there to read. */
  write(bytes: Uint8Array): void;
  /** Where host input goes; the sink returns how many bytes it took (the rest is retried after `resumeInput`). */
  setInputSink(sink: (bytes: Uint8Array) => number): void;
  /** The guest has room again: deliver any input held back. */
  resumeInput(): void;
  close(): void;
}

/** Holds input the guest could not take yet, and feeds it as the guest drains its FIFO. */
export class InputQueue {
  private pending: Uint8Array[] = [];
  private sink: (bytes: Uint8Array) => number = (b) => b.length;

  constructor(private readonly onBackpressure: (held: boolean) => void = () => {}) {}

  setSink(sink: (bytes: Uint8Array) => number): void {
    this.sink = sink;
    this.drain();
  }

  push(bytes: Uint8Array): void {
    this.pending.push(bytes);
    this.drain();
  }

  drain(): void {
    while (this.pending.length > 0) {
      const head = this.pending[0];
      const taken = this.sink(head);
      if (taken >= head.length) {
        this.pending.shift();
        continue;
      }
      this.pending[0] = head.subarray(taken);
      break;
    }
    this.onBackpressure(this.pending.length > 0);
  }
}
