// virtio-blk (device type 2): one request queue, reads and writes straight between guest memory and an injected async backend.

import type { GuestMemory } from '../guest-memory.js';
import { StateError, TsvirtError } from '../../machine/errors.js';
import { carve, copyFromGuest, copyToGuest, totalLength } from './buffers.js';
import type { VirtioDevice, VirtioInterrupt } from './device.js';
import { VirtqueueError, type DescriptorChain, type GuestBuffer, type Virtqueue } from './queue.js';
import {
  VIRTIO_F_VERSION_1, VIRTIO_ID_BLOCK, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, feature,
} from './spec.js';

// Feature bits (virtio 1.2 §5.2.3).
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;

// Request types and status values (§5.2.6).
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** The serial GET_ID returns: 20 bytes, zero padded, not necessarily terminated. */
export const VIRTIO_BLK_ID_BYTES = 20;
export const SECTOR_SIZE = 512;

// struct virtio_blk_config. Fields after blk_size belong to features not offered and read as zero;
// the space still reaches num_queues, as QEMU's does, since Linux BUG()s on a read past its end.
const CONFIG_CAPACITY = 0;
const CONFIG_SEG_MAX = 12;
const CONFIG_BLK_SIZE = 20;
const CONFIG_SIZE = 36;

// struct virtio_blk_outhdr.
const HEADER_SIZE = 16;
const HEADER_TYPE = 0;
const HEADER_SECTOR = 8;
const STATUS_SIZE = 1;

const DEFAULT_QUEUE_SIZE = 256;
const REQUEST_QUEUE = 0;

/**
 * The host side of a disk. Buffers are views straight into guest memory: `read` fills them in
 * order from `offset`, `write` stores them in order at `offset`. Rejecting completes the request
 * with VIRTIO_BLK_S_IOERR.
 */
export interface BlockBackend {
  /** Image size in bytes. */
  readonly size: number;
  read(offset: number, into: Uint8Array[]): Promise<void>;
  write(offset: number, from: Uint8Array[]): Promise<void>;
  flush(): Promise<void>;
}

/** How the machine configures a disk. */
export interface VirtioBlockOptions {
  memory: GuestMemory;
  backend: BlockBackend;
  /** Offer VIRTIO_BLK_F_RO and fail writes. */
  readonly?: boolean;
  /** What GET_ID returns (at most 20 bytes; longer is cut). */
  serial?: string;
  /** Request queue size (power of two), default 256. */
  queueSize?: number;
}

/** A parsed request: header read once from guest memory, buffers validated by the queue. */
interface Request {
  head: number;
  type: number;
  sector: bigint;
  /** Readable bytes after the header (OUT payload). */
  dataOut: GuestBuffer[];
  /** Writable bytes before the status byte (IN payload, GET_ID). */
  dataIn: GuestBuffer[];
  statusGpa: number;
}

/** The block device's migration section; requests are drained before saving, so there is little. */
export interface VirtioBlockState {
  /** Capacity the guest saw, to refuse a destination whose image differs. */
  capacity: string;
}

/** A block snapshot that does not fit this device. */
export class VirtioBlockStateError extends TsvirtError {
  constructor(message: string) {
    super('ERR_DEVICE_STATE', `virtio-blk state: ${message}`);
  }
}

/**
 * A virtio-blk device. Requests run concurrently and may complete in any order; each completion
 * writes its status byte and used entry through GuestMemory. `drain` waits for all of them.
 */
export class VirtioBlock implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly queueSizes: readonly number[];
  readonly features: bigint;
  readonly configSize = CONFIG_SIZE;
  private readonly memory: GuestMemory;
  private readonly backend: BlockBackend;
  private readonly readonly: boolean;
  private readonly serial: Uint8Array;
  private queue: Virtqueue | undefined;
  private interrupt: VirtioInterrupt | undefined;
  private readonly inflight = new Set<Promise<void>>();
  /** Bumped on reset so completions of requests from before it are dropped. */
  private epoch = 0;

  constructor(options: VirtioBlockOptions) {
    this.memory = options.memory;
    this.backend = options.backend;
    this.readonly = options.readonly ?? false;
    this.queueSizes = [options.queueSize ?? DEFAULT_QUEUE_SIZE];
    this.serial = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.serial.set(new TextEncoder().encode(options.serial ?? '').subarray(0, VIRTIO_BLK_ID_BYTES));
    this.features = feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_RING_F_EVENT_IDX) | feature(VIRTIO_RING_F_INDIRECT_DESC) |
      feature(VIRTIO_BLK_F_FLUSH) | feature(VIRTIO_BLK_F_SEG_MAX) | feature(VIRTIO_BLK_F_BLK_SIZE) |
      (this.readonly ? feature(VIRTIO_BLK_F_RO) : 0n);
  }

  /** Disk size in 512-byte sectors (a partial last sector is not exposed). */
  get capacity(): bigint {
    return BigInt(Math.floor(this.backend.size / SECTOR_SIZE));
  }

  /** Requests started and not yet completed. */
  get inflightCount(): number {
    return this.inflight.size;
  }

  readConfig(offset: number, data: Uint8Array): void {
    const cfg = new Uint8Array(CONFIG_SIZE);
    const v = new DataView(cfg.buffer);
    v.setBigUint64(CONFIG_CAPACITY, this.capacity, true);
    // Header and status take two descriptors of a chain that must fit the ring.
    v.setUint32(CONFIG_SEG_MAX, this.queueSizes[REQUEST_QUEUE] - 2, true);
    v.setUint32(CONFIG_BLK_SIZE, SECTOR_SIZE, true);
    data.fill(0);
    data.set(cfg.subarray(offset, offset + data.length));
  }

  /** Nothing in the offered configuration is writable (writeback needs VIRTIO_BLK_F_CONFIG_WCE). */
  writeConfig(): void {}

  activate(queues: readonly Virtqueue[], interrupt: VirtioInterrupt): void {
    this.queue = queues[REQUEST_QUEUE];
    this.interrupt = interrupt;
    this.processQueue();
  }

  queueNotify(index: number): void {
    if (index === REQUEST_QUEUE) this.processQueue();
  }

  /** Forgets the queue; requests still running complete into nothing (see `drain`). */
  reset(): void {
    this.epoch++;
    this.queue = undefined;
    this.interrupt = undefined;
  }

  /** Resolves once every started request has completed (migration calls it before saving). */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  private processQueue(): void {
    const queue = this.queue;
    if (!queue) return;
    for (let chain = queue.pop(); chain; chain = queue.pop()) this.start(this.parse(chain));
  }

  private parse(chain: DescriptorChain): Request {
    if (chain.readableLength < HEADER_SIZE) {
      throw new VirtqueueError('request-shape', `block request ${chain.head} has ${chain.readableLength} header bytes, not ${HEADER_SIZE}`);
    }
    if (chain.writableLength < STATUS_SIZE) {
      throw new VirtqueueError('request-shape', `block request ${chain.head} has no writable status byte`);
    }
    const header = copyFromGuest(this.memory, chain.readable, HEADER_SIZE);
    const v = new DataView(header.buffer);
    const status = carve(chain.writable, chain.writableLength - STATUS_SIZE)[0];
    return {
      head: chain.head,
      type: v.getUint32(HEADER_TYPE, true),
      sector: v.getBigUint64(HEADER_SECTOR, true),
      dataOut: carve(chain.readable, HEADER_SIZE),
      dataIn: carve(chain.writable, 0, chain.writableLength - STATUS_SIZE),
      statusGpa: status.gpa,
    };
  }

  private start(req: Request): void {
    const epoch = this.epoch;
    const p = this.execute(req)
      .catch(() => ({ status: VIRTIO_BLK_S_IOERR, written: 0 }))
      .then((r) => this.complete(epoch, req, r.status, r.written))
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  private async execute(req: Request): Promise<{ status: number; written: number }> {
    switch (req.type) {
      case VIRTIO_BLK_T_IN: {
        const len = totalLength(req.dataIn);
        if (!this.inRange(req.sector, len)) return { status: VIRTIO_BLK_S_IOERR, written: 0 };
        const views = req.dataIn.map((b) => this.memory.writableSlice(b.gpa, b.len));
        await this.backend.read(Number(req.sector) * SECTOR_SIZE, views);
        // Marked again now the data is there: a dirty-page pass between start and completion sent stale bytes.
        for (const b of req.dataIn) this.memory.writableSlice(b.gpa, b.len);
        return { status: VIRTIO_BLK_S_OK, written: len };
      }
      case VIRTIO_BLK_T_OUT: {
        const len = totalLength(req.dataOut);
        if (this.readonly || !this.inRange(req.sector, len)) return { status: VIRTIO_BLK_S_IOERR, written: 0 };
        await this.backend.write(Number(req.sector) * SECTOR_SIZE, req.dataOut.map((b) => this.memory.slice(b.gpa, b.len)));
        return { status: VIRTIO_BLK_S_OK, written: 0 };
      }
      case VIRTIO_BLK_T_FLUSH:
        if (!this.readonly) await this.backend.flush();
        return { status: VIRTIO_BLK_S_OK, written: 0 };
      case VIRTIO_BLK_T_GET_ID:
        return { status: VIRTIO_BLK_S_OK, written: copyToGuest(this.memory, req.dataIn, this.serial) };
      default:
        return { status: VIRTIO_BLK_S_UNSUPP, written: 0 };
    }
  }

  /** Whole sectors, all inside the disk. */
  private inRange(sector: bigint, len: number): boolean {
    return len % SECTOR_SIZE === 0 && sector + BigInt(len / SECTOR_SIZE) <= this.capacity;
  }

  private complete(epoch: number, req: Request, status: number, written: number): void {
    const queue = this.queue;
    if (epoch !== this.epoch || !queue?.isLive) return;
    this.memory.writeU8(req.statusGpa, status);
    queue.pushUsed(req.head, written + STATUS_SIZE);
    if (queue.needsNotification()) this.interrupt?.signalQueue(REQUEST_QUEUE);
  }

  /** Refused while requests are in flight: `await drain()` first. */
  saveState(): VirtioBlockState {
    if (this.inflight.size > 0) throw new StateError(`virtio-blk: ${this.inflight.size} requests in flight; drain before saving`);
    return { capacity: this.capacity.toString() };
  }

  restoreState(state: unknown): void {
    const capacity = (state as Record<string, unknown> | null)?.capacity;
    if (typeof capacity !== 'string' || !/^\d+$/.test(capacity)) throw new VirtioBlockStateError('capacity must be a decimal string');
    if (BigInt(capacity) !== this.capacity) {
      throw new VirtioBlockStateError(`the guest saw ${capacity} sectors but this disk has ${this.capacity}`);
    }
  }
}
