// The main thread's side of the COM1 fast path: publishes when the workers may answer THR writes and LSR reads, and feeds the bytes they took to the UART model in order.

import type { BusDevice } from '../../devices/bus.js';
import type { SerialFastPathChannel } from './serial-fast-path-worker.js';
import { FAST_PATH_ALLOWED, PUB, PUBLICATION_BYTES, ringBufferBytes, seqBefore, SerialRingReader } from './serial-ring.js';

/** What the fast path needs of the UART model (devices/serial-8250.ts). */
export interface FastPathUart extends BusDevice {
  /** -1 when a THR write or LSR read must reach the model, else the value an LSR read returns. */
  fastPathLsr(): number;
  /** THR bytes written while the fast path was allowed, oldest first. */
  transmit(bytes: Uint8Array): void;
}

/**
 * The UART model stays the one source of truth. Main publishes "allowed" plus the LSR value only while the model says
 * a THR write and an LSR read are exact outside it, and republishes after everything that changes the model: every
 * access the workers post (through `busDevice`), and what the owner reports with `publish()` (host input, restore).
 * Before a posted access reaches the model, main revokes the permission, waits for workers that already chose the
 * fast path, and drains every ring into the model; the vCPU handles drain before any other exit and before a pause
 * resolves. So the model sees every byte in the guest's order before anything that could observe it.
 */
export class SerialFastPath {
  private readonly publication = new SharedArrayBuffer(PUBLICATION_BYTES);
  private readonly pub = new Int32Array(this.publication);
  private readonly readers: SerialRingReader[] = [];
  private readonly open = new Set<SerialRingReader>();

  /** What the pio bus should hold at `port` instead of the model: accesses posted by the workers go through here. */
  readonly busDevice: BusDevice = {
    read: (offset, data) => {
      this.settle();
      this.uart.read(offset, data);
      this.publish();
    },
    write: (offset, data) => {
      this.settle();
      this.uart.write(offset, data);
      this.publish();
    },
  };

  constructor(
    private readonly uart: FastPathUart,
    readonly port: number,
  ) {}

  /** Creates one vCPU's ring: the channel goes to its worker, the reader stays with its handle. */
  attach(): { channel: SerialFastPathChannel; reader: SerialRingReader } {
    const ring = new SharedArrayBuffer(ringBufferBytes());
    const reader = new SerialRingReader(ring);
    this.readers.push(reader);
    this.open.add(reader);
    return { channel: { port: this.port, publication: this.publication, ring }, reader };
  }

  /** A worker has exited: nothing more comes from its ring, so revoking no longer waits for it. */
  detach(reader: SerialRingReader): void {
    this.open.delete(reader);
  }

  /** Tells the workers what the model allows now. Call after any change to the model made outside `busDevice`. */
  publish(): void {
    const lsr = this.uart.fastPathLsr();
    Atomics.store(this.pub, PUB.STATE, lsr < 0 ? 0 : FAST_PATH_ALLOWED | (lsr & 0xff));
  }

  /** Whether the workers may take the fast path now, and the LSR value they return (for tests and diagnostics). */
  get published(): { allowed: boolean; lsr: number } {
    const s = Atomics.load(this.pub, PUB.STATE);
    return { allowed: (s & FAST_PATH_ALLOWED) !== 0, lsr: s & 0xff };
  }

  /** Feeds every byte the workers have put in their rings to the model, in the order the guest wrote them. */
  drain(): void {
    for (;;) {
      let total = 0;
      let filled = 0;
      let lone: SerialRingReader | undefined;
      for (const r of this.readers) {
        const n = r.refresh();
        if (n > 0) {
          total += n;
          filled++;
          lone = r;
        }
      }
      if (total === 0) return;
      const bytes = new Uint8Array(total);
      if (filled === 1) lone!.takeAll(bytes, 0);
      else this.merge(bytes);
      let settled = true;
      for (const r of this.readers) if (!r.release()) settled = false;
      this.uart.transmit(bytes);
      if (settled) return;
    }
  }

  /** Interleaves the pending bytes of several rings by sequence number. */
  private merge(out: Uint8Array): void {
    for (let at = 0; at < out.length; at++) {
      let next: SerialRingReader | undefined;
      let nextSeq = 0;
      for (const r of this.readers) {
        if (r.pending === 0) continue;
        const s = r.peekSeq();
        if (next === undefined || seqBefore(s, nextSeq)) {
          next = r;
          nextSeq = s;
        }
      }
      out[at] = next!.take();
    }
  }

  /**
   * Before a posted access reaches the model: no worker may take the fast path under the state that access is about to
   * change, and the model must have every byte written before it. Clearing STATE and then waiting for BUSY = 0 on each
   * ring leaves no worker between its decision and its write (both sides use sequentially consistent atomics).
   */
  private settle(): void {
    Atomics.store(this.pub, PUB.STATE, 0);
    for (const r of this.open) r.waitIdle();
    this.drain();
  }
}
