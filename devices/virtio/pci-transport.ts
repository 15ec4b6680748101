// The virtio 1.x modern PCI transport for one device: vendor capabilities, the BAR 4 register block, MSI-X/INTx interrupts, migration state.

import type { BusDevice } from '../bus.js';
import type { GuestMemory } from '../guest-memory.js';
import { NO_IRQ, type IrqLine } from '../irq.js';
import { TsvirtError } from '../../machine/errors.js';
import {
  PCI_CAP_ID_VNDR, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MASTER, PCI_INTERRUPT_LINE, PciConfigSpace, type PciConfigState,
} from '../pci/config-space.js';
import type { PciFunction } from '../pci/host-bridge.js';
import { MsixTable, type MsiSink, type MsixState } from '../pci/msix.js';
import { CommonConfig, VIRTIO_MSI_NO_VECTOR, type CommonConfigState, type CommonConfigHost } from './common-config.js';
import type { VirtioDevice, VirtioInterrupt } from './device.js';
import { Virtqueue, type VirtqueueState } from './queue.js';
import {
  VIRTIO_ID_BLOCK, VIRTIO_ID_NET, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
  VIRTIO_STATUS_DEVICE_NEEDS_RESET, VIRTIO_STATUS_DRIVER_OK, hasFeature,
} from './spec.js';

// PCI identity of a modern (non-transitional) virtio function (virtio 1.2 §4.1.2).
const VIRTIO_PCI_VENDOR_ID = 0x1af4;
const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
/** Revision 1 tells drivers the function is modern-only. */
const VIRTIO_PCI_REVISION = 1;
const VIRTIO_PCI_SUBSYSTEM_ID = 0x1100;
const PCI_CLASS_NETWORK_ETHERNET = 0x020000;
const PCI_CLASS_STORAGE_SCSI = 0x010000;
const PCI_CLASS_OTHERS = 0xff0000;
const PCI_INTERRUPT_PIN_INTA = 1;

// Virtio PCI capability types and struct virtio_pci_cap layout (offsets from the capability start).
const VIRTIO_PCI_CAP_COMMON_CFG = 1;
const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
const VIRTIO_PCI_CAP_ISR_CFG = 3;
const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
const VIRTIO_PCI_CAP_PCI_CFG = 5;
const CAP_LEN = 2;
const CAP_CFG_TYPE = 3;
const CAP_BAR = 4;
const CAP_OFFSET = 8;
const CAP_LENGTH = 12;
/** notify_off_multiplier in the notify capability, pci_cfg_data in the PCI-config-access one. */
const CAP_EXTRA = 16;
const VIRTIO_PCI_CAP_SIZE = 16;
const VIRTIO_PCI_CAP_EXTENDED_SIZE = 20;

/** The BAR holding the table and PBA. */
export const VIRTIO_PCI_MSIX_BAR = 1;
/** The BAR holding common, ISR, device and notify regions, as QEMU places them. */
export const VIRTIO_PCI_MODERN_BAR = 4;
const COMMON_CFG_OFFSET = 0x0000;
const ISR_OFFSET = 0x1000;
const DEVICE_CFG_OFFSET = 0x2000;
/** Start of the doorbells within the modern BAR; queue n's is at + n * VIRTIO_PCI_NOTIFY_OFF_MULTIPLIER. */
export const VIRTIO_PCI_NOTIFY_OFFSET = 0x3000;
const REGION_SIZE = 0x1000;
const MODERN_BAR_SIZE = 0x4000;
/** Each queue's doorbell is 4 bytes apart (QEMU's page-per-vq=off layout). */
export const VIRTIO_PCI_NOTIFY_OFF_MULTIPLIER = 4;

const ISR_QUEUE = 0x1;
const ISR_CONFIG = 0x2;

/** What the machine gives a virtio PCI function. */
export interface VirtioPciOptions {
  memory: GuestMemory;
  /** MSI-X delivery (KVM_SIGNAL_MSI or per-vector irqfd). */
  msi: MsiSink;
  /** INTA#, used while the driver leaves MSI-X off. */
  intx?: IrqLine;
  /** The GSI `intx` reaches, preset in Interrupt Line (there is no firmware to write it). */
  interruptLine?: number;
  /** MSI-X vectors; default one per queue plus one for configuration changes. */
  msixVectors?: number;
  /** Where driver errors (the reasons for NEEDS_RESET) are reported. */
  log?: (message: string) => void;
}

/** The whole transport's migration section. */
export interface VirtioPciState {
  pci: PciConfigState;
  msix: MsixState;
  common: CommonConfigState;
  /** ISR bits the driver has not read yet. */
  isr: number;
  queues: VirtqueueState[];
  device: unknown;
}

/** A transport snapshot that does not fit this function. */
export class VirtioPciStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `virtio-pci state: ${field} ${message}`);
    this.field = field;
  }
}

function classFor(deviceType: number): number {
  if (deviceType === VIRTIO_ID_NET) return PCI_CLASS_NETWORK_ETHERNET;
  if (deviceType === VIRTIO_ID_BLOCK) return PCI_CLASS_STORAGE_SCSI;
  return PCI_CLASS_OTHERS;
}

/**
 * One virtio device as a PCIe function (vendor 1af4, device 1040 + type). BAR 1 holds MSI-X;
 * BAR 4 (64-bit, 16 KiB) holds common config at 0x0, ISR at 0x1000, device config at 0x2000 and
 * the doorbells at 0x3000. Driver errors never escape: they set DEVICE_NEEDS_RESET.
 */
export class VirtioPciDevice implements PciFunction, CommonConfigHost {
  readonly config: PciConfigSpace;
  readonly msix: MsixTable;
  readonly queues: Virtqueue[];
  private readonly common: CommonConfig;
  private readonly intx: IrqLine;
  private readonly log: (message: string) => void;
  private readonly modernRegion: BusDevice;
  private pciCfgCap = 0;
  private isr = 0;
  private active = false;
  /** Requests from before the last reset still running (see CommonConfigHost.resetPending). */
  private resetDrain: Promise<void> | undefined;
  private readonly interrupt: VirtioInterrupt;

  constructor(readonly device: VirtioDevice, options: VirtioPciOptions) {
    this.intx = options.intx ?? NO_IRQ;
    this.log = options.log ?? (() => {});
    this.queues = device.queueSizes.map((size) => new Virtqueue(options.memory, size));
    this.msix = new MsixTable(options.msixVectors ?? device.queueSizes.length + 1, options.msi);
    this.common = new CommonConfig(this, device.features, this.queues, this.msix.vectors);
    this.config = new PciConfigSpace({
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: VIRTIO_PCI_DEVICE_ID_BASE + device.deviceType,
      classCode: classFor(device.deviceType),
      revisionId: VIRTIO_PCI_REVISION,
      subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
      subsystemId: VIRTIO_PCI_SUBSYSTEM_ID,
      // Without an INTx line (the machine wires only MSI-X) the function must not claim a pin a driver would wait on.
      interruptPin: options.intx ? PCI_INTERRUPT_PIN_INTA : 0,
    });
    this.config.addBar(VIRTIO_PCI_MSIX_BAR, { size: this.msix.regionSize, is64Bit: false, prefetchable: false });
    this.config.addBar(VIRTIO_PCI_MODERN_BAR, { size: MODERN_BAR_SIZE, is64Bit: true, prefetchable: true });
    this.config.setU8(PCI_INTERRUPT_LINE, options.interruptLine ?? 0);
    this.addVirtioCaps();
    this.msix.attach(this.config, VIRTIO_PCI_MSIX_BAR);
    this.config.addPcieCapability();
    this.config.seal();
    this.modernRegion = { read: (o, d) => this.readModern(o, d), write: (o, d) => this.writeModern(o, d) };
    this.interrupt = {
      signalQueue: (i) => this.signalQueue(i),
      signalConfig: () => this.signalConfig(),
      deviceError: (e) => this.deviceError(e),
    };
  }

  private addVirtioCaps(): void {
    const cap = (type: number, offset: number, length: number, extra?: number): number => {
      const size = extra === undefined ? VIRTIO_PCI_CAP_SIZE : VIRTIO_PCI_CAP_EXTENDED_SIZE;
      const body = new Uint8Array(size - 2);
      const v = new DataView(body.buffer);
      // Offsets count from the capability start; the body begins after its id and next pointer.
      v.setUint8(CAP_LEN - 2, size);
      v.setUint8(CAP_CFG_TYPE - 2, type);
      v.setUint8(CAP_BAR - 2, VIRTIO_PCI_MODERN_BAR);
      v.setUint32(CAP_OFFSET - 2, offset, true);
      v.setUint32(CAP_LENGTH - 2, length, true);
      if (extra !== undefined) v.setUint32(CAP_EXTRA - 2, extra, true);
      return this.config.addCapability(PCI_CAP_ID_VNDR, body);
    };
    cap(VIRTIO_PCI_CAP_COMMON_CFG, COMMON_CFG_OFFSET, this.common.size);
    cap(VIRTIO_PCI_CAP_ISR_CFG, ISR_OFFSET, 1);
    if (this.device.configSize > 0) cap(VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_CFG_OFFSET, this.device.configSize);
    cap(VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFFSET,
      Math.max(1, this.queues.length) * VIRTIO_PCI_NOTIFY_OFF_MULTIPLIER, VIRTIO_PCI_NOTIFY_OFF_MULTIPLIER);
    // The spec requires the PCI-config access window: bar, offset and length are the driver's to set.
    this.pciCfgCap = cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0);
    this.config.setWritable(this.pciCfgCap + CAP_BAR, 1, 0xff);
    this.config.setWritable(this.pciCfgCap + CAP_OFFSET, 4, 0xffff_ffff);
    this.config.setWritable(this.pciCfgCap + CAP_LENGTH, 4, 0xffff_ffff);
    this.config.setWritable(this.pciCfgCap + CAP_EXTRA, 4, 0xffff_ffff);
  }

  /** Offset within the modern BAR of queue `index`'s doorbell, for the machine's ioeventfd. */
  notifyOffset(index: number): number {
    return VIRTIO_PCI_NOTIFY_OFFSET + index * VIRTIO_PCI_NOTIFY_OFF_MULTIPLIER;
  }

  /** The driver's device_status (for QMP and tests). */
  get status(): number {
    return this.common.status;
  }

  // --- PciFunction --------------------------------------------------------------------------------

  readConfig(offset: number, data: Uint8Array): void {
    if (this.touchesPciCfgData(offset, data.length)) this.pciCfgAccess(false);
    this.config.read(offset, data);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    const intxDisabled = this.config.command & PCI_COMMAND_INTX_DISABLE;
    const wasMaster = this.busMaster;
    this.config.write(offset, data);
    if (this.touchesPciCfgData(offset, data.length)) this.pciCfgAccess(true);
    this.msix.configWritten();
    if ((this.config.command & PCI_COMMAND_INTX_DISABLE) !== intxDisabled) this.updateIntx();
    // Kicks that arrived while the function could not master the bus are served now.
    if (!wasMaster && this.busMaster) this.queues.forEach((_, i) => this.notify(i));
  }

  /** Bus Master Enable: without it the function must not read or write guest memory. */
  private get busMaster(): boolean {
    return (this.config.command & PCI_COMMAND_MASTER) !== 0;
  }

  barRegion(index: number): BusDevice | undefined {
    if (index === VIRTIO_PCI_MSIX_BAR) return this.msix;
    if (index === VIRTIO_PCI_MODERN_BAR) return this.modernRegion;
    return undefined;
  }

  /** PCI-level reset: config space, MSI-X and the virtio device all to power-on. */
  reset(): void {
    this.config.reset();
    this.msix.reset();
    this.resetDevice();
  }

  private touchesPciCfgData(offset: number, len: number): boolean {
    const data = this.pciCfgCap + CAP_EXTRA;
    return offset < data + 4 && offset + len > data;
  }

  /** VIRTIO_PCI_CAP_PCI_CFG: performs the BAR access the window's bar/offset/length select. */
  private pciCfgAccess(write: boolean): void {
    const bar = this.config.getU8(this.pciCfgCap + CAP_BAR);
    const offset = this.config.getU32(this.pciCfgCap + CAP_OFFSET);
    const length = this.config.getU32(this.pciCfgCap + CAP_LENGTH);
    const region = this.barRegion(bar);
    if (!region || (length !== 1 && length !== 2 && length !== 4)) return;
    const dataAt = this.pciCfgCap + CAP_EXTRA;
    const buf = new Uint8Array(length);
    if (write) {
      for (let i = 0; i < length; i++) buf[i] = this.config.getU8(dataAt + i);
      region.write(offset, buf);
    } else {
      region.read(offset, buf);
      for (let i = 0; i < length; i++) this.config.setU8(dataAt + i, buf[i]);
    }
  }

  // --- The modern BAR -----------------------------------------------------------------------------

  private readModern(offset: number, data: Uint8Array): void {
    data.fill(0);
    const region = offset - (offset % REGION_SIZE);
    const inner = offset - region;
    if (inner + data.length > REGION_SIZE) return;
    switch (region) {
      case COMMON_CFG_OFFSET:
        this.common.read(inner, data);
        return;
      case ISR_OFFSET:
        if (inner === 0) {
          // Reading ISR acknowledges it, which lowers INTx (virtio 1.2 §4.1.4.5).
          data[0] = this.isr;
          this.isr = 0;
          this.updateIntx();
        }
        return;
      case DEVICE_CFG_OFFSET:
        if (inner + data.length <= this.device.configSize) this.device.readConfig(inner, data);
        return;
      default:
        return;
    }
  }

  private writeModern(offset: number, data: Uint8Array): void {
    const region = offset - (offset % REGION_SIZE);
    const inner = offset - region;
    if (inner + data.length > REGION_SIZE) return;
    switch (region) {
      case COMMON_CFG_OFFSET:
        this.common.write(inner, data);
        return;
      case DEVICE_CFG_OFFSET:
        if (inner + data.length <= this.device.configSize) this.device.writeConfig(inner, data);
        return;
      case VIRTIO_PCI_NOTIFY_OFFSET:
        if (inner % VIRTIO_PCI_NOTIFY_OFF_MULTIPLIER === 0) this.notify(inner / VIRTIO_PCI_NOTIFY_OFF_MULTIPLIER);
        return;
      default:
        return;
    }
  }

  /**
   * The driver kicked queue `index`. The machine calls this from the queue's ioeventfd (so kicks
   * never stop the vCPU); a plain MMIO write to the doorbell lands here too.
   */
  notify(index: number): void {
    if (!this.active || !Number.isInteger(index) || index < 0 || index >= this.queues.length) return;
    if (!this.queues[index].isLive || !this.busMaster) return;
    try {
      this.device.queueNotify(index);
    } catch (e) {
      this.deviceError(e as Error);
    }
  }

  // --- CommonConfigHost: what the register block asks of the transport --------------------------

  /** DRIVER_OK with FEATURES_OK: start the queues and the device. */
  activateDevice(features: bigint): void {
    try {
      this.startQueuesAndDevice(features);
    } catch (e) {
      this.deviceError(e as Error);
    }
  }

  private startQueuesAndDevice(features: bigint): void {
    const eventIdx = hasFeature(features, VIRTIO_RING_F_EVENT_IDX);
    const indirect = hasFeature(features, VIRTIO_RING_F_INDIRECT_DESC);
    for (const q of this.queues) q.activate(eventIdx, indirect);
    this.active = true;
    this.device.activate(this.queues, this.interrupt, features);
  }

  /** The driver wrote 0 to device_status: device, queues, vectors and ISR back to power-on. */
  resetDevice(): void {
    this.active = false;
    this.device.reset();
    for (const q of this.queues) q.reset();
    this.common.reset();
    this.isr = 0;
    this.updateIntx();
    if (this.device.inflightCount && this.device.drain) {
      const drain: Promise<void> = this.device.drain().catch(() => {}).finally(() => {
        if (this.resetDrain === drain) this.resetDrain = undefined;
      });
      this.resetDrain = drain;
    }
  }

  resetPending(): boolean {
    return this.resetDrain !== undefined;
  }

  // --- Interrupts ---------------------------------------------------------------------------------

  private signalQueue(index: number): void {
    if (!this.active) return;
    this.raise(this.common.queueVector(index), ISR_QUEUE);
  }

  private signalConfig(): void {
    if ((this.common.status & VIRTIO_STATUS_DRIVER_OK) === 0) return;
    this.common.bumpGeneration();
    this.raise(this.common.configVector, ISR_CONFIG);
  }

  private raise(vector: number, isrBit: number): void {
    if (this.msix.enabled) {
      if (vector !== VIRTIO_MSI_NO_VECTOR) this.msix.signal(vector);
      return;
    }
    this.isr |= isrBit;
    this.updateIntx();
  }

  /** INTA# follows ISR unless the driver set Interrupt Disable; the status register mirrors it. */
  private updateIntx(): void {
    const pending = this.isr !== 0;
    this.config.setInterruptStatus(pending);
    this.intx.set(pending && (this.config.command & PCI_COMMAND_INTX_DISABLE) === 0);
  }

  private deviceError(error: Error): void {
    if (this.common.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) return;
    this.log(`virtio ${this.device.deviceType}: device needs reset: ${error.message}`);
    this.active = false;
    for (const q of this.queues) q.halt();
    this.common.setNeedsReset();
    this.signalConfig();
  }

  // --- Migration ----------------------------------------------------------------------------------

  saveState(): VirtioPciState {
    return {
      pci: this.config.saveState(),
      msix: this.msix.saveState(),
      common: this.common.saveState(),
      isr: this.isr,
      queues: this.queues.map((q) => q.saveState()),
      device: this.device.saveState(),
    };
  }

  /**
   * Loads a snapshot into a function built with the same device and options, then restarts the
   * device if the driver had it running. The machine re-maps BARs afterwards (PciRootBus.syncAllBars).
   */
  restoreState(state: VirtioPciState): void {
    const s = state as unknown as Record<string, unknown> | null;
    if (!s || typeof s !== 'object') throw new VirtioPciStateError('state', 'must be an object');
    const isr = s.isr;
    if (typeof isr !== 'number' || !Number.isInteger(isr) || (isr & ~(ISR_QUEUE | ISR_CONFIG)) !== 0) {
      throw new VirtioPciStateError('isr', 'must hold only the queue and config bits');
    }
    if (!Array.isArray(s.queues) || s.queues.length !== this.queues.length) {
      throw new VirtioPciStateError('queues', `must list ${this.queues.length} queues`);
    }
    this.active = false;
    this.device.reset();
    this.config.restoreState(s.pci as PciConfigState);
    this.msix.restoreState(s.msix as MsixState);
    this.common.restoreState(s.common as CommonConfigState);
    (s.queues as VirtqueueState[]).forEach((q, i) => this.queues[i].restoreState(q));
    this.device.restoreState(s.device);
    this.isr = isr;
    const status = this.common.status;
    if ((status & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)) {
      try {
        this.startQueuesAndDevice(this.common.driverFeatures);
      } catch (e) {
        throw new VirtioPciStateError('queues', `cannot restart the device: ${(e as Error).message}`);
      }
    }
    this.updateIntx();
  }
}
