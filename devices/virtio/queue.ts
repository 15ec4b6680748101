// A split virtqueue over guest memory: validated descriptor chains out, used entries in, event-idx notification rules, migration state.

import { GuestMemory, GuestMemoryError } from '../guest-memory.js';
import { TsvirtError } from '../../machine/errors.js';

// Descriptor layout and flags (virtio 1.2 §2.7.5).
const DESC_SIZE = 16;
const DESC_ADDR = 0;
const DESC_LEN = 8;
const DESC_FLAGS = 12;
const DESC_NEXT = 14;
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;

// Available ring (§2.7.6): flags, idx, ring[size], used_event.
const AVAIL_FLAGS = 0;
const AVAIL_IDX = 2;
const AVAIL_RING = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

// Used ring (§2.7.8): flags, idx, ring[size] of {id u32, len u32}, avail_event.
const USED_IDX = 2;
const USED_RING = 4;
const USED_ELEM_SIZE = 8;

// Ring alignment the driver must honour (§2.7, Table "Virtqueue Part Alignment").
const DESC_ALIGN = 16;
const AVAIL_ALIGN = 2;
const USED_ALIGN = 4;

/** Largest split queue the spec allows. */
export const VIRTQUEUE_MAX_SIZE = 32768;
/** Longest indirect table accepted, as QEMU limits it: enough for any Linux driver's scatter list. */
export const VIRTQUEUE_MAX_INDIRECT = 1024;
const U32_MAX = 0xffff_ffff;
const U64_LIMIT = 1n << 64n;

/** Why a queue or a chain was refused: stable codes tests and logs match on. */
export type VirtqueueErrorReason =
  | 'bad-queue-size'
  | 'ring-outside-memory'
  | 'avail-index'
  | 'index-out-of-range'
  | 'loop'
  | 'buffer-outside-memory'
  | 'length-wrap'
  | 'readable-after-writable'
  | 'indirect-not-negotiated'
  | 'nested-indirect'
  | 'indirect-with-next'
  | 'indirect-length'
  | 'chain-too-long'
  /** A valid chain not shaped as the device protocol needs (missing header, no room for status). */
  | 'request-shape';

/**
 * The driver broke the virtqueue contract. Device models never let it escape to the vCPU loop:
 * the transport turns it into DEVICE_NEEDS_RESET and a configuration-change interrupt.
 */
export class VirtqueueError extends TsvirtError {
  readonly reason: VirtqueueErrorReason;
  constructor(reason: VirtqueueErrorReason, message: string) {
    super('ERR_VIRTQUEUE', `virtqueue: ${reason}: ${message}`);
    this.reason = reason;
  }
}

/** A run of guest-physical memory inside one RAM region. */
export interface GuestBuffer {
  gpa: number;
  len: number;
}

/** One available chain, split into what the device reads and what it writes, in chain order. */
export interface DescriptorChain {
  /** The head index the used entry must name. */
  head: number;
  readable: GuestBuffer[];
  writable: GuestBuffer[];
  readableLength: number;
  writableLength: number;
}

/** The queue's migration section; 64-bit ring addresses as hex strings so the object stays JSON. */
export interface VirtqueueState {
  size: number;
  ready: boolean;
  descTable: string;
  availRing: string;
  usedRing: string;
  nextAvail: number;
  nextUsed: number;
  /** Used index at the last notification check; null before the first (the next check notifies). */
  signalledUsed: number | null;
  eventIdx: boolean;
  indirect: boolean;
}

/**
 * Splits [gpa, gpa+len) at RAM region boundaries (q35 RAM is 1 GiB regions back to back, and a
 * buffer may straddle two). Returns undefined when any byte is outside RAM.
 */
export function splitGuestRange(memory: GuestMemory, gpa: number, len: number): GuestBuffer[] | undefined {
  const out: GuestBuffer[] = [];
  let addr = gpa;
  let left = len;
  while (left > 0) {
    const region = memory.regions.find((r) => addr >= r.gpa && addr < r.gpa + r.size);
    if (!region) return undefined;
    const n = Math.min(left, region.gpa + region.size - addr);
    out.push({ gpa: addr, len: n });
    addr += n;
    left -= n;
  }
  return out;
}

function hex(v: bigint): string {
  return '0x' + v.toString(16);
}

/**
 * A split virtqueue. The transport sets size and ring addresses as the driver writes them, then
 * `activate`s it; device models `pop` chains, `pushUsed` results and ask `needsNotification`.
 * Every value read from guest memory is read once and validated before use, and every write goes
 * through GuestMemory so migration's dirty tracking sees it.
 */
export class Virtqueue {
  /** Queue size the driver chose (power of two, at most `maxSize`). */
  size: number;
  /** queue_enable as the driver wrote it. */
  ready = false;
  descTable = 0n;
  availRing = 0n;
  usedRing = 0n;
  private nextAvail = 0;
  private nextUsed = 0;
  private signalledUsed: number | null = null;
  private eventIdx = false;
  private indirect = false;
  private live = false;
  private desc = 0;
  private avail = 0;
  private used = 0;

  constructor(
    private readonly memory: GuestMemory,
    readonly maxSize: number,
  ) {
    if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > VIRTQUEUE_MAX_SIZE || (maxSize & (maxSize - 1)) !== 0) {
      throw new RangeError(`virtqueue size ${maxSize} must be a power of two up to ${VIRTQUEUE_MAX_SIZE}`);
    }
    this.size = maxSize;
  }

  /** True once activated with the driver's rings: chains can be popped. */
  get isLive(): boolean {
    return this.live;
  }

  /**
   * Starts the queue with the negotiated ring features after checking the driver's size and ring
   * addresses. Indices are kept, so a restored queue continues where it stopped.
   */
  activate(eventIdx: boolean, indirect: boolean): void {
    this.eventIdx = eventIdx;
    this.indirect = indirect;
    if (!this.ready) return;
    const size = this.size;
    if (size < 1 || size > this.maxSize || (size & (size - 1)) !== 0) {
      throw new VirtqueueError('bad-queue-size', `size ${size} is not a power of two up to ${this.maxSize}`);
    }
    this.desc = this.ringAddress('descriptor table', this.descTable, DESC_ALIGN, DESC_SIZE * size);
    this.avail = this.ringAddress('available ring', this.availRing, AVAIL_ALIGN, AVAIL_RING + 2 * size + 2);
    this.used = this.ringAddress('used ring', this.usedRing, USED_ALIGN, USED_RING + USED_ELEM_SIZE * size + 2);
    this.live = true;
  }

  private ringAddress(what: string, addr: bigint, align: number, len: number): number {
    if (addr % BigInt(align) !== 0n || addr + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VirtqueueError('ring-outside-memory', `${what} at ${hex(addr)} is misaligned or out of range`);
    }
    const gpa = Number(addr);
    if (!splitGuestRange(this.memory, gpa, len)) {
      throw new VirtqueueError('ring-outside-memory', `${what} at ${hex(addr)} (+${len}) is outside guest memory`);
    }
    return gpa;
  }

  /** Stops all ring accesses until reset (the device needs a reset after a driver error). */
  halt(): void {
    this.live = false;
  }

  /** Power-on state: full size, disabled, no rings, indices zero. */
  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.descTable = this.availRing = this.usedRing = 0n;
    this.nextAvail = this.nextUsed = 0;
    this.signalledUsed = null;
    this.eventIdx = this.indirect = false;
    this.live = false;
    this.desc = this.avail = this.used = 0;
  }

  // --- Ring accesses: every guest-memory error becomes a VirtqueueError -------------------------

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof GuestMemoryError) throw new VirtqueueError('ring-outside-memory', e.message);
      throw e;
    }
  }

  private availIdx(): number {
    return this.guard(() => this.memory.readU16(this.avail + AVAIL_IDX));
  }

  private setAvailEvent(value: number): void {
    this.guard(() => this.memory.writeU16(this.used + USED_RING + USED_ELEM_SIZE * this.size, value));
  }

  /** Available chains not yet popped. */
  pending(): number {
    if (!this.live) return 0;
    return (this.availIdx() - this.nextAvail) & 0xffff;
  }

  /**
   * The next available chain, validated, or null when the ring is empty. With EVENT_IDX the
   * device's avail_event is moved to the next slot, so the driver kicks only for new work.
   */
  pop(): DescriptorChain | null {
    if (!this.live) return null;
    let pending = this.pending();
    if (pending === 0 && this.eventIdx) {
      // Publish avail_event, then look again: a buffer added in between would otherwise go unkicked.
      this.setAvailEvent(this.nextAvail);
      pending = this.pending();
    }
    if (pending === 0) return null;
    if (pending > this.size) {
      throw new VirtqueueError('avail-index', `driver's avail idx is ${pending} entries ahead of a ${this.size}-entry ring`);
    }
    const slot = this.nextAvail & (this.size - 1);
    const head = this.guard(() => this.memory.readU16(this.avail + AVAIL_RING + 2 * slot));
    const chain = this.walk(head);
    this.nextAvail = (this.nextAvail + 1) & 0xffff;
    if (this.eventIdx) this.setAvailEvent(this.nextAvail);
    return chain;
  }

  /** Gives back the last popped chain (the device could not use it now, e.g. a blocked backend). */
  undoPop(): void {
    this.nextAvail = (this.nextAvail - 1) & 0xffff;
  }

  private walk(head: number): DescriptorChain {
    const chain: DescriptorChain = { head, readable: [], writable: [], readableLength: 0, writableLength: 0 };
    let table = this.desc;
    let tableLen = this.size;
    let index = head;
    let visited = 0;
    let inIndirect = false;
    let seenWritable = false;
    for (;;) {
      if (index >= tableLen) {
        throw new VirtqueueError('index-out-of-range', `descriptor ${index} outside a ${tableLen}-entry table`);
      }
      // A well-formed chain uses each descriptor of its table at most once, so more visits than
      // the table has entries means the next pointers form a cycle.
      if (++visited > tableLen) throw new VirtqueueError('loop', `chain from head ${head} revisits descriptors`);
      const d = this.readDescriptor(table + DESC_SIZE * index, inIndirect);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.indirect) throw new VirtqueueError('indirect-not-negotiated', `descriptor ${index} is indirect`);
        if (inIndirect) throw new VirtqueueError('nested-indirect', 'an indirect table refers to another');
        // Forbidding NEXT here is also what makes visiting an indirect table twice impossible.
        if (d.flags & VIRTQ_DESC_F_NEXT) throw new VirtqueueError('indirect-with-next', `descriptor ${index} is indirect and chained`);
        if (d.len === 0 || d.len % DESC_SIZE !== 0) {
          throw new VirtqueueError('indirect-length', `indirect table length ${d.len} is not a positive multiple of ${DESC_SIZE}`);
        }
        if (d.len / DESC_SIZE > VIRTQUEUE_MAX_INDIRECT) {
          throw new VirtqueueError('chain-too-long', `indirect table of ${d.len / DESC_SIZE} descriptors`);
        }
        table = this.checkedRange(d.addr, d.len)[0].gpa;
        tableLen = d.len / DESC_SIZE;
        index = 0;
        visited = 0;
        inIndirect = true;
        continue;
      }
      const writable = (d.flags & VIRTQ_DESC_F_WRITE) !== 0;
      seenWritable ||= writable;
      if (!writable && seenWritable) {
        throw new VirtqueueError('readable-after-writable', `descriptor ${index} is readable after a writable one`);
      }
      if (d.len > 0) {
        const pieces = this.checkedRange(d.addr, d.len);
        if (writable) {
          chain.writable.push(...pieces);
          chain.writableLength += d.len;
        } else {
          chain.readable.push(...pieces);
          chain.readableLength += d.len;
        }
        if (chain.readableLength > U32_MAX || chain.writableLength > U32_MAX) {
          throw new VirtqueueError('chain-too-long', `chain from head ${head} describes more than 4 GiB`);
        }
      }
      if ((d.flags & VIRTQ_DESC_F_NEXT) === 0) break;
      index = d.next;
    }
    return chain;
  }

  private readDescriptor(gpa: number, inIndirect: boolean): { addr: bigint; len: number; flags: number; next: number } {
    // An indirect table need not be 16-byte aligned, so a descriptor in it may straddle two regions.
    const bytes = inIndirect ? this.gather(gpa, DESC_SIZE) : this.guard(() => this.memory.slice(gpa, DESC_SIZE));
    const v = new DataView(bytes.buffer, bytes.byteOffset, DESC_SIZE);
    return {
      addr: v.getBigUint64(DESC_ADDR, true),
      len: v.getUint32(DESC_LEN, true),
      flags: v.getUint16(DESC_FLAGS, true),
      next: v.getUint16(DESC_NEXT, true),
    };
  }

  private gather(gpa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let at = 0;
    for (const b of splitGuestRange(this.memory, gpa, len) ?? []) {
      out.set(this.memory.slice(b.gpa, b.len), at);
      at += b.len;
    }
    if (at !== len) throw new VirtqueueError('buffer-outside-memory', `descriptor at 0x${gpa.toString(16)} is outside guest memory`);
    return out;
  }

  private checkedRange(addr: bigint, len: number): GuestBuffer[] {
    if (addr + BigInt(len) > U64_LIMIT) {
      throw new VirtqueueError('length-wrap', `buffer ${hex(addr)} + ${len} wraps around the address space`);
    }
    const pieces = addr + BigInt(len) <= BigInt(Number.MAX_SAFE_INTEGER) ? splitGuestRange(this.memory, Number(addr), len) : undefined;
    if (!pieces) throw new VirtqueueError('buffer-outside-memory', `buffer ${hex(addr)} + ${len} is outside guest memory`);
    return pieces;
  }

  /** Returns chain `head` to the driver with `len` bytes written into its writable buffers. */
  pushUsed(head: number, len: number): void {
    if (!this.live) return;
    const elem = this.used + USED_RING + USED_ELEM_SIZE * (this.nextUsed & (this.size - 1));
    this.guard(() => {
      // Two dword writes: an 8-byte element at a 4-aligned address may cross a page (and region) boundary.
      this.memory.writeU32(elem, head);
      this.memory.writeU32(elem + 4, len);
      this.nextUsed = (this.nextUsed + 1) & 0xffff;
      this.memory.writeU16(this.used + USED_IDX, this.nextUsed);
    });
  }

  /**
   * Whether the driver wants an interrupt for the entries pushed since the last check: with
   * EVENT_IDX, when used_event lies among them (vring_need_event); otherwise unless the driver set
   * VIRTQ_AVAIL_F_NO_INTERRUPT.
   */
  needsNotification(): boolean {
    if (!this.live) return false;
    if (!this.eventIdx) {
      return (this.guard(() => this.memory.readU16(this.avail + AVAIL_FLAGS)) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    }
    const old = this.signalledUsed;
    const now = this.nextUsed;
    this.signalledUsed = now;
    if (old === null) return true;
    const usedEvent = this.guard(() => this.memory.readU16(this.avail + AVAIL_RING + 2 * this.size));
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  saveState(): VirtqueueState {
    return {
      size: this.size,
      ready: this.ready,
      descTable: hex(this.descTable),
      availRing: hex(this.availRing),
      usedRing: hex(this.usedRing),
      nextAvail: this.nextAvail,
      nextUsed: this.nextUsed,
      signalledUsed: this.signalledUsed,
      eventIdx: this.eventIdx,
      indirect: this.indirect,
    };
  }

  /** Loads a snapshot (not yet live: the transport re-activates it if the driver had). */
  restoreState(state: VirtqueueState): void {
    const s = state as unknown as Record<string, unknown> | null;
    if (!s || typeof s !== 'object') throw new VirtqueueStateError('state', 'must be an object');
    const u16 = (k: string, max = 0xffff) => {
      const v = s[k];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new VirtqueueStateError(k, `must be an integer in 0..${max}`);
      return v;
    };
    const addr = (k: string) => {
      const v = s[k];
      if (typeof v !== 'string' || !/^0x[0-9a-f]{1,16}$/i.test(v)) throw new VirtqueueStateError(k, 'must be a 64-bit hex string');
      return BigInt(v);
    };
    const bool = (k: string) => {
      if (typeof s[k] !== 'boolean') throw new VirtqueueStateError(k, 'must be a boolean');
      return s[k] as boolean;
    };
    const size = u16('size', VIRTQUEUE_MAX_SIZE);
    const signalled = s.signalledUsed === null ? null : u16('signalledUsed');
    const ready = bool('ready');
    const eventIdx = bool('eventIdx');
    const indirect = bool('indirect');
    const descTable = addr('descTable');
    const availRing = addr('availRing');
    const usedRing = addr('usedRing');
    const nextAvail = u16('nextAvail');
    const nextUsed = u16('nextUsed');
    this.reset();
    this.size = size;
    this.ready = ready;
    this.eventIdx = eventIdx;
    this.indirect = indirect;
    this.descTable = descTable;
    this.availRing = availRing;
    this.usedRing = usedRing;
    this.nextAvail = nextAvail;
    this.nextUsed = nextUsed;
    this.signalledUsed = signalled;
  }
}

/** A queue snapshot that cannot be loaded; `field` names the offending member. */
export class VirtqueueStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `virtqueue state: ${field} ${message}`);
    this.field = field;
  }
}
