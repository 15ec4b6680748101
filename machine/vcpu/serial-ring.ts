// The shared memory of the COM1 fast path: the UART state the main thread publishes, and one byte ring per vCPU with its writer (worker) and reader (main thread).

/** Int32 slots of the publication block, one for the machine, shared by the main thread and every vCPU worker. */
export const PUB = {
  /** 0 while the fast path is not allowed; else `FAST_PATH_ALLOWED` | the value an LSR read returns. Main writes it. */
  STATE: 0,
  /** The next byte sequence number; workers take them, so bytes of several vCPUs' rings merge in the guest's order. */
  SEQ: 1,
} as const;
/** Set in PUB.STATE while THR writes and LSR reads may be answered in the worker. */
export const FAST_PATH_ALLOWED = 0x100;
/** Size of the publication block's SharedArrayBuffer (one cache line). */
export const PUBLICATION_BYTES = 64;

/**
 * Int32 slots at the start of a ring. The worker writes the first cache line, the main thread HEAD (on the second),
 * so the two do not share a line.
 */
export const RING = {
  /** worker: bytes written since start (free-running, wraps at 2^32). */
  TAIL: 0,
  /** worker: 1 from reading PUB.STATE until the bytes it decided to write are in the ring. */
  BUSY: 1,
  /** worker: incremented when its write found the ring emptied by main; main waits on it. */
  WAKE: 2,
  /** worker: THR writes (exits) answered in the worker. */
  FAST_OUT: 3,
  /** worker: LSR reads (exits) answered in the worker. */
  FAST_IN: 4,
  /** worker: THR writes posted to the main thread because the ring was full. */
  FULL: 5,
  /** main: bytes taken since start. */
  HEAD: 16,
} as const;
const HEADER_BYTES = 128;
/** Bytes per ring (a power of two): what the guest may print ahead of the main thread before THR writes block again. */
export const RING_CAPACITY = 4096;

/** Size of a ring's SharedArrayBuffer: header, one Int32 sequence number and one byte per entry. */
export function ringBufferBytes(capacity = RING_CAPACITY): number {
  return HEADER_BYTES + capacity * 5;
}

/** Typed views over a ring's buffer. */
class RingViews {
  readonly ctl: Int32Array;
  readonly seqs: Int32Array;
  readonly bytes: Uint8Array;
  readonly capacity: number;
  readonly mask: number;

  constructor(ring: SharedArrayBuffer) {
    const capacity = (ring.byteLength - HEADER_BYTES) / 5;
    if (!Number.isInteger(capacity) || capacity < 1 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`serial ring of ${ring.byteLength} bytes: capacity must be a power of two`);
    }
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.ctl = new Int32Array(ring, 0, HEADER_BYTES / 4);
    this.seqs = new Int32Array(ring, HEADER_BYTES, capacity);
    this.bytes = new Uint8Array(ring, HEADER_BYTES + capacity * 4, capacity);
  }
}

/** The worker's end: reads the published state and appends THR bytes. Allocation-free. */
export class SerialRingWriter {
  private readonly v: RingViews;
  private readonly pub: Int32Array;
  private tail: number;

  constructor(publication: SharedArrayBuffer, ring: SharedArrayBuffer) {
    this.v = new RingViews(ring);
    this.pub = new Int32Array(publication, 0, PUBLICATION_BYTES / 4);
    this.tail = Atomics.load(this.v.ctl, RING.TAIL);
  }

  /** PUB.STATE now: 0, or FAST_PATH_ALLOWED | LSR. */
  state(): number {
    return Atomics.load(this.pub, PUB.STATE);
  }

  /** Counts an LSR read answered here. */
  countRead(): void {
    this.v.ctl[RING.FAST_IN]++;
  }

  /**
   * Appends `count` THR bytes from `src[off..]` if the fast path is allowed and they fit; false leaves the ring as it
   * was (the caller posts the exit instead). BUSY brackets the decision: main, having cleared PUB.STATE, waits for
   * BUSY = 0, after which every byte written under the old state is in the ring.
   */
  write(src: Uint8Array, off: number, count: number): boolean {
    const { ctl, seqs, bytes, mask, capacity } = this.v;
    Atomics.store(ctl, RING.BUSY, 1);
    if ((Atomics.load(this.pub, PUB.STATE) & FAST_PATH_ALLOWED) === 0) {
      Atomics.store(ctl, RING.BUSY, 0);
      return false;
    }
    const tail = this.tail;
    if (((tail - Atomics.load(ctl, RING.HEAD)) | 0) > capacity - count) {
      Atomics.store(ctl, RING.BUSY, 0);
      ctl[RING.FULL]++;
      return false;
    }
    const seq = Atomics.add(this.pub, PUB.SEQ, count);
    for (let i = 0; i < count; i++) {
      const slot = (tail + i) & mask;
      seqs[slot] = (seq + i) | 0;
      bytes[slot] = src[off + i];
    }
    this.tail = (tail + count) | 0;
    Atomics.store(ctl, RING.TAIL, this.tail);
    Atomics.store(ctl, RING.BUSY, 0);
    ctl[RING.FAST_OUT]++;
    // Main waits only once it has emptied the ring. Seeing HEAD at our old tail after storing TAIL means it has (or it
    // stores HEAD later and then sees our TAIL on its re-check: SerialRingReader.release), so it needs the wake-up.
    if (Atomics.load(ctl, RING.HEAD) === tail) {
      Atomics.add(ctl, RING.WAKE, 1);
      Atomics.notify(ctl, RING.WAKE);
    }
    return true;
  }
}

/** Fast-path exits a vCPU's worker has answered itself. */
export interface FastPathCounts {
  /** THR writes put in the ring. */
  readonly thrWrites: number;
  /** LSR reads answered from the published state. */
  readonly lsrReads: number;
  /** THR writes posted to the main thread because the ring was full. */
  readonly ringFull: number;
}

/** The main thread's end: takes bytes in order, with their sequence numbers. */
export class SerialRingReader {
  private readonly v: RingViews;
  private head: number;
  private end: number;

  constructor(ring: SharedArrayBuffer) {
    this.v = new RingViews(ring);
    this.head = Atomics.load(this.v.ctl, RING.HEAD);
    this.end = this.head;
  }

  /** The Int32 view and slot index main waits on (Atomics.waitAsync) for the ring to become non-empty. */
  get wakeSlot(): { readonly ctl: Int32Array; readonly index: number } {
    return { ctl: this.v.ctl, index: RING.WAKE };
  }

  /** Looks at the writer's TAIL: returns how many bytes can now be taken. */
  refresh(): number {
    this.end = Atomics.load(this.v.ctl, RING.TAIL);
    return this.pending;
  }

  /** Bytes up to the last `refresh()` not yet taken. */
  get pending(): number {
    return (this.end - this.head) | 0;
  }

  /** Sequence number of the next byte (`pending` must be > 0). */
  peekSeq(): number {
    return this.v.seqs[this.head & this.v.mask];
  }

  /** Takes the next byte (`pending` must be > 0). */
  take(): number {
    const b = this.v.bytes[this.head & this.v.mask];
    this.head = (this.head + 1) | 0;
    return b;
  }

  /** Takes every pending byte into `dst` from `at`. */
  takeAll(dst: Uint8Array, at: number): void {
    const { bytes, mask, capacity } = this.v;
    const n = this.pending;
    const start = this.head & mask;
    const first = Math.min(n, capacity - start);
    dst.set(bytes.subarray(start, start + first), at);
    if (n > first) dst.set(bytes.subarray(0, n - first), at + first);
    this.head = this.end;
  }

  /**
   * Gives the taken entries back to the writer. Returns false when the writer has added bytes meanwhile: it may have
   * seen the ring non-empty and not woken us, so the caller must read again.
   */
  release(): boolean {
    Atomics.store(this.v.ctl, RING.HEAD, this.head);
    return Atomics.load(this.v.ctl, RING.TAIL) === this.head;
  }

  /** Wakes whoever waits on `wakeSlot` (the owner, once the worker is gone, to end its wait). */
  interrupt(): void {
    Atomics.add(this.v.ctl, RING.WAKE, 1);
    Atomics.notify(this.v.ctl, RING.WAKE);
  }

  /** Waits while the writer is between reading PUB.STATE and finishing its write (a few instructions). */
  waitIdle(): void {
    while (Atomics.load(this.v.ctl, RING.BUSY) !== 0) {
      // Spin: the worker is inside SerialRingWriter.write, never blocked there.
    }
  }

  /** The worker's fast-path counters, as of now. */
  counts(): FastPathCounts {
    const ctl = this.v.ctl;
    return { thrWrites: Atomics.load(ctl, RING.FAST_OUT), lsrReads: Atomics.load(ctl, RING.FAST_IN), ringFull: Atomics.load(ctl, RING.FULL) };
  }
}

/** True when sequence number `a` comes before `b` (they wrap at 2^32; live ones are never 2^31 apart). */
export function seqBefore(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
