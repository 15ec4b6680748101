// virtio-net (device type 1): rx/tx/ctrl queues, the 12-byte v1 header, merged rx buffers, guest announce; the host side is injected.

import type { GuestMemory } from '../guest-memory.js';
import { TsvirtError } from '../../machine/errors.js';
import { carve, copyFromGuest, copyToGuest } from './buffers.js';
import type { VirtioDevice, VirtioInterrupt } from './device.js';
import { VirtqueueError, type DescriptorChain, type Virtqueue } from './queue.js';
import {
  VIRTIO_F_VERSION_1, VIRTIO_ID_NET, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, feature, hasFeature,
} from './spec.js';

// Feature bits (virtio 1.2 §5.1.3).
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_F_CTRL_VQ = 17;
export const VIRTIO_NET_F_CTRL_RX = 18;
export const VIRTIO_NET_F_GUEST_ANNOUNCE = 21;

// struct virtio_net_config: mac, status, max_virtqueue_pairs.
const CONFIG_MAC = 0;
const CONFIG_STATUS = 6;
const CONFIG_MAX_VQ_PAIRS = 8;
const CONFIG_SIZE = 10;
export const VIRTIO_NET_S_LINK_UP = 1;
export const VIRTIO_NET_S_ANNOUNCE = 2;
const STATUS_BITS = VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE;

/** struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers. */
export const VIRTIO_NET_HDR_SIZE = 12;
const HDR_NUM_BUFFERS = 10;

// Control queue classes, commands and acks (§5.1.6.5).
export const VIRTIO_NET_CTRL_RX = 0;
const VIRTIO_NET_CTRL_RX_NOBCAST = 5;
export const VIRTIO_NET_CTRL_MAC = 1;
const VIRTIO_NET_CTRL_MAC_TABLE_SET = 0;
export const VIRTIO_NET_CTRL_ANNOUNCE = 3;
export const VIRTIO_NET_CTRL_ANNOUNCE_ACK = 0;
export const VIRTIO_NET_OK = 0;
export const VIRTIO_NET_ERR = 1;
const CTRL_HEADER_SIZE = 2;
const CTRL_ACK_SIZE = 1;
/** Names of the VIRTIO_NET_CTRL_RX commands, by command number. */
const RX_MODES = ['promisc', 'allmulti', 'alluni', 'nomulti', 'nouni', 'nobcast'] as const;

const RX_QUEUE = 0;
const TX_QUEUE = 1;
const CTRL_QUEUE = 2;
const DEFAULT_QUEUE_SIZE = 256;
const CTRL_QUEUE_SIZE = 64;
/** Frames longer than a tap device takes are dropped rather than sent. */
export const NET_MAX_FRAME = 65536;

/** The host side of a NIC (a tap adapter). */
export interface NetBackend {
  /**
   * Sends one frame given as pieces (views of guest memory: consume them before returning).
   * Returns false when the host would block; the device retries after `onWritable` fires.
   */
  send(frame: Uint8Array[]): boolean;
  /** Registers the callback for "sending may succeed again". */
  onWritable(cb: () => void): void;
}

/** How the machine configures a NIC. */
export interface VirtioNetOptions {
  memory: GuestMemory;
  backend: NetBackend;
  /** The MAC the guest reads; fixed for the device's lifetime (and across migration). */
  mac: Uint8Array;
  /** Offer VIRTIO_NET_F_MRG_RXBUF (default true). */
  mergeableRxBuffers?: boolean;
  /** rx and tx queue size, default 256. */
  queueSize?: number;
}

/** The receive filter the driver asked for; tsvirt does not filter, but keeps and migrates it. */
export type RxMode = Record<(typeof RX_MODES)[number], boolean>;

/** The NIC's migration section. */
export interface VirtioNetState {
  /** VIRTIO_NET_S_* bits: link and a pending announce. */
  status: number;
  rxMode: RxMode;
}

/** A net snapshot that cannot be loaded. */
export class VirtioNetStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `virtio-net state: ${field} ${message}`);
    this.field = field;
  }
}

function defaultRxMode(): RxMode {
  // Promiscuous until the driver says otherwise, as QEMU starts.
  return { promisc: true, allmulti: false, alluni: false, nomulti: false, nouni: false, nobcast: false };
}

/**
 * A virtio-net device with one queue pair and a control queue. No offloads are offered, so the
 * header's only live field is num_buffers on receive. Frames move through GuestMemory only.
 */
export class VirtioNet implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_NET;
  readonly queueSizes: readonly number[];
  readonly features: bigint;
  readonly configSize = CONFIG_SIZE;
  readonly mac: Uint8Array;
  /** Frames dropped: too big to send, or too big for a non-mergeable rx buffer. */
  dropped = 0;
  private readonly memory: GuestMemory;
  private readonly backend: NetBackend;
  private status = VIRTIO_NET_S_LINK_UP;
  private rxMode = defaultRxMode();
  private queues: readonly Virtqueue[] = [];
  private interrupt: VirtioInterrupt | undefined;
  private negotiated = 0n;
  private txBlocked = false;
  private rxWaiting = true;
  private rxAvailableListener: (() => void) | undefined;

  constructor(options: VirtioNetOptions) {
    if (options.mac.length !== 6) throw new RangeError('a MAC address has 6 bytes');
    this.memory = options.memory;
    this.backend = options.backend;
    this.mac = Uint8Array.from(options.mac);
    const size = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    this.queueSizes = [size, size, CTRL_QUEUE_SIZE];
    this.features = [
      VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS,
      VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_GUEST_ANNOUNCE,
      ...(options.mergeableRxBuffers ?? true ? [VIRTIO_NET_F_MRG_RXBUF] : []),
    ].reduce((f, bit) => f | feature(bit), 0n);
    this.backend.onWritable(() => {
      this.txBlocked = false;
      this.guarded(() => this.processTx());
    });
  }

  /** The callback the host adapter uses to resume reading after `receive` returned false. */
  onRxBuffersAvailable(cb: (() => void) | undefined): void {
    this.rxAvailableListener = cb;
  }

  /** The driver's receive filter requests. */
  get receiveMode(): Readonly<RxMode> {
    return this.rxMode;
  }

  /** VIRTIO_NET_S_* as the guest reads it. */
  get linkStatus(): number {
    return this.status;
  }

  readConfig(offset: number, data: Uint8Array): void {
    const cfg = new Uint8Array(CONFIG_SIZE);
    cfg.set(this.mac, CONFIG_MAC);
    const v = new DataView(cfg.buffer);
    v.setUint16(CONFIG_STATUS, this.status, true);
    v.setUint16(CONFIG_MAX_VQ_PAIRS, 1, true);
    data.fill(0);
    data.set(cfg.subarray(offset, offset + data.length));
  }

  /** The MAC is fixed by configuration (VIRTIO_NET_F_CTRL_MAC_ADDR is not offered): writes are dropped. */
  writeConfig(): void {}

  activate(queues: readonly Virtqueue[], interrupt: VirtioInterrupt, features: bigint): void {
    this.queues = queues;
    this.interrupt = interrupt;
    this.negotiated = features;
    this.processTx();
    this.processCtrl();
    this.rxKicked();
  }

  queueNotify(index: number): void {
    if (index === RX_QUEUE) this.rxKicked();
    else if (index === TX_QUEUE) this.processTx();
    else if (index === CTRL_QUEUE) this.processCtrl();
  }

  reset(): void {
    this.queues = [];
    this.interrupt = undefined;
    this.negotiated = 0n;
    this.status &= VIRTIO_NET_S_LINK_UP;
    this.rxMode = defaultRxMode();
    this.txBlocked = false;
    this.rxWaiting = true;
  }

  /** Host-side errors come from callbacks, not guest accesses: report them as the guest's fault. */
  private guarded<T>(fn: () => T, fallback: T): T;
  private guarded(fn: () => void): void;
  private guarded<T>(fn: () => T, fallback?: T): T | undefined {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.interrupt?.deviceError(e);
      return fallback;
    }
  }

  private live(index: number): Virtqueue | undefined {
    const q = this.queues[index];
    return q?.isLive ? q : undefined;
  }

  private notifyIfWanted(index: number, q: Virtqueue): void {
    if (q.needsNotification()) this.interrupt?.signalQueue(index);
  }

  // --- Transmit -----------------------------------------------------------------------------------

  private processTx(): void {
    const q = this.live(TX_QUEUE);
    if (!q || this.txBlocked) return;
    let used = false;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      if (chain.readableLength < VIRTIO_NET_HDR_SIZE) {
        throw new VirtqueueError('request-shape', `tx chain ${chain.head} is shorter than the ${VIRTIO_NET_HDR_SIZE}-byte header`);
      }
      const frameLength = chain.readableLength - VIRTIO_NET_HDR_SIZE;
      if (frameLength > NET_MAX_FRAME) {
        this.dropped++;
      } else {
        const pieces = carve(chain.readable, VIRTIO_NET_HDR_SIZE).map((b) => this.memory.slice(b.gpa, b.len));
        if (!this.backend.send(pieces)) {
          // Left on the ring (not popped) so it is sent after `onWritable`, and migrates if the VM moves first.
          q.undoPop();
          this.txBlocked = true;
          break;
        }
      }
      q.pushUsed(chain.head, 0);
      used = true;
    }
    if (used) this.notifyIfWanted(TX_QUEUE, q);
  }

  // --- Receive ------------------------------------------------------------------------------------

  private rxKicked(): void {
    const q = this.live(RX_QUEUE);
    if (!q || !this.rxWaiting || q.pending() === 0) return;
    this.rxWaiting = false;
    this.rxAvailableListener?.();
  }

  /**
   * Copies one host frame into the guest's next receive buffer(s). Returns false when the guest
   * has not posted enough buffers (or the device is not running): the adapter stops reading until
   * `onRxBuffersAvailable` fires. Frames that can never fit a non-mergeable buffer are dropped (true).
   */
  receive(frame: Uint8Array): boolean {
    return this.guarded(() => this.receiveFrame(frame), false);
  }

  private receiveFrame(frame: Uint8Array): boolean {
    const q = this.live(RX_QUEUE);
    if (!q) {
      this.rxWaiting = true;
      return false;
    }
    const mergeable = hasFeature(this.negotiated, VIRTIO_NET_F_MRG_RXBUF);
    const total = VIRTIO_NET_HDR_SIZE + frame.length;
    const taken: { chain: DescriptorChain; len: number }[] = [];
    for (let left = total; left > 0;) {
      const chain = q.pop();
      if (!chain) {
        for (let i = 0; i < taken.length; i++) q.undoPop();
        this.rxWaiting = true;
        return false;
      }
      // Every buffer must hold at least a header (§5.1.6.3.1), mergeable or not.
      if (chain.writableLength < VIRTIO_NET_HDR_SIZE) {
        throw new VirtqueueError('request-shape', `rx buffer ${chain.head} is smaller than the ${VIRTIO_NET_HDR_SIZE}-byte header`);
      }
      if (!mergeable && chain.writableLength < total) {
        q.undoPop();
        this.dropped++;
        return true;
      }
      const len = Math.min(chain.writableLength, left);
      taken.push({ chain, len });
      left -= len;
    }
    const header = new Uint8Array(VIRTIO_NET_HDR_SIZE);
    new DataView(header.buffer).setUint16(HDR_NUM_BUFFERS, taken.length, true);
    const buffers = taken.flatMap((t) => carve(t.chain.writable, 0, t.len));
    copyToGuest(this.memory, buffers, header);
    copyToGuest(this.memory, carve(buffers, VIRTIO_NET_HDR_SIZE), frame);
    for (const t of taken) q.pushUsed(t.chain.head, t.len);
    this.notifyIfWanted(RX_QUEUE, q);
    return true;
  }

  // --- Control queue ------------------------------------------------------------------------------

  private processCtrl(): void {
    const q = this.live(CTRL_QUEUE);
    if (!q) return;
    let used = false;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      if (chain.readableLength < CTRL_HEADER_SIZE || chain.writableLength < CTRL_ACK_SIZE) {
        throw new VirtqueueError('request-shape', `control command ${chain.head} lacks its class/command or ack byte`);
      }
      // Class, command and the first data byte are all any accepted command uses.
      const command = copyFromGuest(this.memory, chain.readable, CTRL_HEADER_SIZE + 1);
      const ack = this.control(command[0], command[1], command.subarray(CTRL_HEADER_SIZE));
      copyToGuest(this.memory, carve(chain.writable, chain.writableLength - CTRL_ACK_SIZE), Uint8Array.of(ack));
      q.pushUsed(chain.head, CTRL_ACK_SIZE);
      used = true;
    }
    if (used) this.notifyIfWanted(CTRL_QUEUE, q);
  }

  private control(cls: number, cmd: number, data: Uint8Array): number {
    if (cls === VIRTIO_NET_CTRL_RX && hasFeature(this.negotiated, VIRTIO_NET_F_CTRL_RX)) {
      if (cmd > VIRTIO_NET_CTRL_RX_NOBCAST || data.length < 1) return VIRTIO_NET_ERR;
      this.rxMode[RX_MODES[cmd]] = data[0] !== 0;
      return VIRTIO_NET_OK;
    }
    // Linux sends the MAC filter table whenever CTRL_RX is on; accepted, as nothing is filtered.
    if (cls === VIRTIO_NET_CTRL_MAC && cmd === VIRTIO_NET_CTRL_MAC_TABLE_SET && hasFeature(this.negotiated, VIRTIO_NET_F_CTRL_RX)) {
      return VIRTIO_NET_OK;
    }
    if (cls === VIRTIO_NET_CTRL_ANNOUNCE && cmd === VIRTIO_NET_CTRL_ANNOUNCE_ACK) {
      this.status &= ~VIRTIO_NET_S_ANNOUNCE;
      return VIRTIO_NET_OK;
    }
    return VIRTIO_NET_ERR;
  }

  // --- Host events --------------------------------------------------------------------------------

  /**
   * Asks the guest to announce itself (gratuitous ARP / unsolicited NA) after migration: sets
   * VIRTIO_NET_S_ANNOUNCE and raises a config interrupt. Returns false when the driver did not
   * negotiate VIRTIO_NET_F_GUEST_ANNOUNCE or is not running.
   */
  announce(): boolean {
    if (!this.interrupt || !hasFeature(this.negotiated, VIRTIO_NET_F_GUEST_ANNOUNCE)) return false;
    this.status |= VIRTIO_NET_S_ANNOUNCE;
    this.interrupt.signalConfig();
    return true;
  }

  /** QMP `set_link`: changes LINK_UP and tells a driver that negotiated VIRTIO_NET_F_STATUS. */
  setLinkUp(up: boolean): void {
    const before = this.status;
    this.status = up ? this.status | VIRTIO_NET_S_LINK_UP : this.status & ~VIRTIO_NET_S_LINK_UP;
    if (this.status !== before && hasFeature(this.negotiated, VIRTIO_NET_F_STATUS)) this.interrupt?.signalConfig();
  }

  saveState(): VirtioNetState {
    return { status: this.status, rxMode: { ...this.rxMode } };
  }

  restoreState(state: unknown): void {
    const s = state as Record<string, unknown> | null;
    const status = s?.status;
    if (typeof status !== 'number' || !Number.isInteger(status) || (status & ~STATUS_BITS) !== 0 || status < 0) {
      throw new VirtioNetStateError('status', 'must hold only LINK_UP and ANNOUNCE');
    }
    const mode = s?.rxMode as Record<string, unknown> | undefined;
    const rxMode = defaultRxMode();
    for (const k of RX_MODES) {
      if (typeof mode?.[k] !== 'boolean') throw new VirtioNetStateError(`rxMode.${k}`, 'must be a boolean');
      rxMode[k] = mode[k] as boolean;
    }
    this.status = status;
    this.rxMode = rxMode;
  }
}
