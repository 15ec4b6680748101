// The virtio-pci common configuration block: feature negotiation, the device status state machine, per-queue setup registers.

import { TsvirtError } from '../../machine/errors.js';
import type { Virtqueue } from './queue.js';
import {
  VIRTIO_F_VERSION_1, VIRTIO_STATUS_DEVICE_NEEDS_RESET, VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_FEATURES_OK,
  hasFeature,
} from './spec.js';

// struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3).
const COMMON_DFSELECT = 0x00;
const COMMON_DF = 0x04;
const COMMON_GFSELECT = 0x08;
const COMMON_GF = 0x0c;
const COMMON_MSIX = 0x10;
const COMMON_NUMQ = 0x12;
const COMMON_STATUS = 0x14;
const COMMON_CFGGENERATION = 0x15;
const COMMON_Q_SELECT = 0x16;
const COMMON_Q_SIZE = 0x18;
const COMMON_Q_MSIX = 0x1a;
const COMMON_Q_ENABLE = 0x1c;
const COMMON_Q_NOFF = 0x1e;
const COMMON_Q_DESC = 0x20;
const COMMON_Q_AVAIL = 0x28;
const COMMON_Q_USED = 0x30;
/** Size of the 1.1 layout; the 1.2 additions (notif_config_data, queue_reset) go with features not offered. */
const COMMON_CFG_SIZE = 0x38;

/** "No vector" for config_msix_vector and queue_msix_vector. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;
/** Feature words the driver can select: bits 0-63. */
const FEATURE_WORDS = 2;
const U32_MASK = 0xffff_ffffn;

/** What the register block needs from its transport. */
export interface CommonConfigHost {
  /** DRIVER_OK was accepted: start queues and device with `features`. */
  activateDevice(features: bigint): void;
  /** The driver wrote 0 to device_status. Must call `CommonConfig.reset`. */
  resetDevice(): void;
  /** True while a reset waits for the device to stop writing guest memory: device_status must not read 0 yet. */
  resetPending?(): boolean;
}

/** The register block's migration section (queue registers travel with each Virtqueue). */
export interface CommonConfigState {
  status: number;
  deviceFeatureSelect: number;
  driverFeatureSelect: number;
  /** Hex string: a 64-bit value. */
  driverFeatures: string;
  queueSelect: number;
  configVector: number;
  configGeneration: number;
  queueVectors: number[];
}

/** A common-config snapshot that cannot be loaded. */
export class CommonConfigStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `virtio common config state: ${field} ${message}`);
    this.field = field;
  }
}

/**
 * Common configuration registers. Every field must be accessed at its own width (64-bit queue
 * addresses also as two dword halves); other accesses read zero and writes are dropped.
 */
export class CommonConfig {
  readonly size = COMMON_CFG_SIZE;
  status = 0;
  driverFeatures = 0n;
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private queueSelect = 0;
  configVector = VIRTIO_MSI_NO_VECTOR;
  private configGeneration = 0;
  /** device_status as it was when the driver wrote 0; reads return it while the reset is pending. */
  private statusBeforeReset = 0;
  private readonly queueVectors: number[];

  constructor(
    private readonly host: CommonConfigHost,
    private readonly offered: bigint,
    private readonly queues: readonly Virtqueue[],
    private readonly msixVectors: number,
  ) {
    this.queueVectors = queues.map(() => VIRTIO_MSI_NO_VECTOR);
  }

  /** Power-on values (the queues are reset by the transport). */
  reset(): void {
    this.status = 0;
    this.driverFeatures = 0n;
    this.deviceFeatureSelect = this.driverFeatureSelect = this.queueSelect = 0;
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.queueVectors.fill(VIRTIO_MSI_NO_VECTOR);
  }

  queueVector(index: number): number {
    return this.queueVectors[index] ?? VIRTIO_MSI_NO_VECTOR;
  }

  /** The device configuration changed: drivers re-read it when the generation moves. */
  bumpGeneration(): void {
    this.configGeneration = (this.configGeneration + 1) & 0xff;
  }

  setNeedsReset(): void {
    this.status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
  }

  private get selectedQueue(): Virtqueue | undefined {
    return this.queues[this.queueSelect];
  }

  read(offset: number, data: Uint8Array): void {
    const v = this.readField(offset, data.length) ?? 0n;
    for (let i = 0; i < data.length; i++) data[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  }

  private readField(offset: number, len: number): bigint | undefined {
    const q = this.selectedQueue;
    const addr = this.queueAddressField(offset, len);
    if (addr) return q ? addr.get(q) : 0n;
    const n = (v: number) => BigInt(v);
    switch (`${offset}:${len}`) {
      case `${COMMON_DFSELECT}:4`: return n(this.deviceFeatureSelect);
      case `${COMMON_DF}:4`: return this.window(this.offered, this.deviceFeatureSelect);
      case `${COMMON_GFSELECT}:4`: return n(this.driverFeatureSelect);
      case `${COMMON_GF}:4`: return this.window(this.driverFeatures, this.driverFeatureSelect);
      case `${COMMON_MSIX}:2`: return n(this.configVector);
      case `${COMMON_NUMQ}:2`: return n(this.queues.length);
      // Linux's vp_reset polls for 0 before it reuses the buffers of requests that were in flight.
      case `${COMMON_STATUS}:1`: return n(this.host.resetPending?.() ? this.statusBeforeReset || VIRTIO_STATUS_DEVICE_NEEDS_RESET : this.status);
      case `${COMMON_CFGGENERATION}:1`: return n(this.configGeneration);
      case `${COMMON_Q_SELECT}:2`: return n(this.queueSelect);
      // An absent queue reads size 0, which is how the driver learns how many queues exist.
      case `${COMMON_Q_SIZE}:2`: return n(q ? q.size : 0);
      case `${COMMON_Q_MSIX}:2`: return n(q ? this.queueVectors[this.queueSelect] : VIRTIO_MSI_NO_VECTOR);
      case `${COMMON_Q_ENABLE}:2`: return n(q?.ready ? 1 : 0);
      // queue_notify_off is the queue index: doorbells are notify_off_multiplier bytes apart.
      case `${COMMON_Q_NOFF}:2`: return n(q ? this.queueSelect : 0);
      default: return undefined;
    }
  }

  private window(features: bigint, select: number): bigint {
    return select < FEATURE_WORDS ? (features >> BigInt(32 * select)) & U32_MASK : 0n;
  }

  /** The 64-bit queue address register an access names: whole (8 bytes) or either dword half. */
  private queueAddressField(offset: number, len: number):
    { get(q: Virtqueue): bigint; set(q: Virtqueue, v: bigint): void } | undefined {
    for (const base of [COMMON_Q_DESC, COMMON_Q_AVAIL, COMMON_Q_USED]) {
      const key = base === COMMON_Q_DESC ? 'descTable' : base === COMMON_Q_AVAIL ? 'availRing' : 'usedRing';
      let shift: bigint;
      let mask: bigint;
      if (offset === base && len === 8) [shift, mask] = [0n, (1n << 64n) - 1n];
      else if (offset === base && len === 4) [shift, mask] = [0n, U32_MASK];
      else if (offset === base + 4 && len === 4) [shift, mask] = [32n, U32_MASK];
      else continue;
      return {
        get: (q) => (q[key] >> shift) & mask,
        set: (q, v) => {
          q[key] = (q[key] & ~(mask << shift)) | ((v & mask) << shift);
        },
      };
    }
    return undefined;
  }

  write(offset: number, data: Uint8Array): void {
    let v = 0n;
    for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]);
    const q = this.selectedQueue;
    // A queue's setup is frozen once the driver enables it (virtio 1.2 §4.1.4.3.2).
    const queueEditable = q !== undefined && !q.ready;
    const addr = this.queueAddressField(offset, data.length);
    if (addr) {
      if (queueEditable) addr.set(q, v);
      return;
    }
    const num = Number(v);
    switch (`${offset}:${data.length}`) {
      case `${COMMON_DFSELECT}:4`: this.deviceFeatureSelect = num; return;
      case `${COMMON_GFSELECT}:4`: this.driverFeatureSelect = num; return;
      case `${COMMON_GF}:4`: this.writeDriverFeatures(v); return;
      case `${COMMON_MSIX}:2`: this.configVector = this.checkVector(num); return;
      case `${COMMON_STATUS}:1`: this.writeStatus(num); return;
      case `${COMMON_Q_SELECT}:2`: this.queueSelect = num; return;
      case `${COMMON_Q_SIZE}:2`: if (queueEditable) q.size = num; return;
      case `${COMMON_Q_MSIX}:2`: if (q) this.queueVectors[this.queueSelect] = this.checkVector(num); return;
      // Only 1 may be written (disabling needs VIRTIO_F_RING_RESET, not offered); queues start at DRIVER_OK.
      case `${COMMON_Q_ENABLE}:2`:
        if (queueEditable && num === 1 && !(this.status & VIRTIO_STATUS_DRIVER_OK)) q.ready = true;
        return;
      default: return;
    }
  }

  /** A vector beyond the table reads back NO_VECTOR, which tells the driver the mapping failed. */
  private checkVector(v: number): number {
    return v < this.msixVectors ? v : VIRTIO_MSI_NO_VECTOR;
  }

  private writeDriverFeatures(v: bigint): void {
    if (this.status & VIRTIO_STATUS_FEATURES_OK || this.driverFeatureSelect >= FEATURE_WORDS) return;
    const shift = BigInt(32 * this.driverFeatureSelect);
    this.driverFeatures = (this.driverFeatures & ~(U32_MASK << shift)) | (v << shift);
  }

  /**
   * The status state machine: 0 resets; FEATURES_OK sticks only for an acceptable feature set
   * (the driver reads it back to learn that); DRIVER_OK after FEATURES_OK starts the device.
   * NEEDS_RESET is the device's bit: the driver can neither set nor clear it.
   */
  private writeStatus(value: number): void {
    if (value === 0) {
      const before = this.status;
      this.host.resetDevice();
      this.statusBeforeReset = before;
      return;
    }
    const old = this.status;
    let next = (value & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET) | (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    if ((next & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) && !this.featuresAcceptable()) {
      next &= ~VIRTIO_STATUS_FEATURES_OK;
    }
    const starting = (next & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK);
    if (starting && !(next & VIRTIO_STATUS_FEATURES_OK)) next &= ~VIRTIO_STATUS_DRIVER_OK;
    this.status = next;
    if ((next & VIRTIO_STATUS_DRIVER_OK) && starting && !(next & VIRTIO_STATUS_DEVICE_NEEDS_RESET)) {
      this.host.activateDevice(this.driverFeatures);
    }
  }

  /** Only offered features, and VIRTIO_F_VERSION_1: this is a modern-only device. */
  private featuresAcceptable(): boolean {
    return (this.driverFeatures & ~this.offered) === 0n && hasFeature(this.driverFeatures, VIRTIO_F_VERSION_1);
  }

  saveState(): CommonConfigState {
    return {
      status: this.status,
      deviceFeatureSelect: this.deviceFeatureSelect,
      driverFeatureSelect: this.driverFeatureSelect,
      driverFeatures: '0x' + this.driverFeatures.toString(16),
      queueSelect: this.queueSelect,
      configVector: this.configVector,
      configGeneration: this.configGeneration,
      queueVectors: [...this.queueVectors],
    };
  }

  restoreState(state: CommonConfigState): void {
    const s = state as unknown as Record<string, unknown> | null;
    if (!s || typeof s !== 'object') throw new CommonConfigStateError('state', 'must be an object');
    const int = (k: string, max: number, v: unknown = s[k]) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
        throw new CommonConfigStateError(k, `must be an integer in 0..${max}`);
      }
      return v;
    };
    const vector = (k: string, v: unknown) => {
      const n = int(k, VIRTIO_MSI_NO_VECTOR, v);
      if (n !== VIRTIO_MSI_NO_VECTOR && n >= this.msixVectors) throw new CommonConfigStateError(k, 'names a vector beyond the table');
      return n;
    };
    const features = s.driverFeatures;
    if (typeof features !== 'string' || !/^0x[0-9a-f]{1,16}$/i.test(features)) {
      throw new CommonConfigStateError('driverFeatures', 'must be a 64-bit hex string');
    }
    const driverFeatures = BigInt(features);
    if ((driverFeatures & ~this.offered) !== 0n) throw new CommonConfigStateError('driverFeatures', 'has features this device does not offer');
    if (!Array.isArray(s.queueVectors) || s.queueVectors.length !== this.queues.length) {
      throw new CommonConfigStateError('queueVectors', `must list ${this.queues.length} vectors`);
    }
    const queueVectors = s.queueVectors.map((v, i) => vector(`queueVectors[${i}]`, v));
    const status = int('status', 0xff);
    const values = {
      deviceFeatureSelect: int('deviceFeatureSelect', 0xffff_ffff),
      driverFeatureSelect: int('driverFeatureSelect', 0xffff_ffff),
      queueSelect: int('queueSelect', 0xffff),
      configVector: vector('configVector', s.configVector),
      configGeneration: int('configGeneration', 0xff),
    };
    this.status = status;
    this.driverFeatures = driverFeatures;
    this.deviceFeatureSelect = values.deviceFeatureSelect;
    this.driverFeatureSelect = values.driverFeatureSelect;
    this.queueSelect = values.queueSelect;
    this.configVector = values.configVector;
    this.configGeneration = values.configGeneration;
    queueVectors.forEach((v, i) => (this.queueVectors[i] = v));
  }
}
