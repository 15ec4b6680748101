// The q35 PCIe root bus: host bridge at 00.0, 32 slots x 8 functions, config access by CF8/CFC ports and ECAM, BAR-change reports.

import type { BusDevice } from '../bus.js';
import { TsvirtError } from '../../machine/errors.js';
import {
  PCI_CLASS_PROG, PCI_CONFIG_SPACE_SIZE, PCI_DEVICE_ID, PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN, PCI_NUM_BARS,
  PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID, PciConfigSpace, type PciConfigState,
} from './config-space.js';

/** One PCI function on the bus. Its BARs are MMIO regions the machine maps where the guest puts them. */
export interface PciFunction {
  readonly config: PciConfigSpace;
  /** A guest config read (offset within the function's space). Most functions pass it to `config.read`. */
  readConfig(offset: number, data: Uint8Array): void;
  /** A guest config write; functions react here to capability changes (MSI-X enable, ...). */
  writeConfig(offset: number, data: Uint8Array): void;
  /** The handler of BAR `index`'s range, offsets relative to the BAR's base; undefined for absent BARs. */
  barRegion(index: number): BusDevice | undefined;
  /** PCI-level reset (machine reset): config space, MSI-X, and the device behind it, to power-on. */
  reset(): void;
}

/**
 * Called when BAR `barIndex` of `device` starts, stops or moves decoding, with addresses as
 * `PciConfigSpace.mappedBarAddress` gives them (null: not decoding). The machine unregisters
 * `barRegion(barIndex)` at `oldAddr` and registers it at `newAddr` for the BAR's size.
 */
export type BarChangeHandler = (device: PciFunction, barIndex: number, oldAddr: bigint | null, newAddr: bigint | null) => void;

/** A `query-pci` BAR, as QEMU's PciMemoryRegion. */
export interface PciRegionInfo {
  bar: number;
  type: 'memory';
  /** The programmed address (0 before the guest assigns one). */
  address: number;
  size: number;
  prefetch: boolean;
  mem_type_64: boolean;
}

/** A `query-pci` device entry, as QEMU's PciDeviceInfo. */
export interface PciDeviceInfo {
  bus: number;
  slot: number;
  function: number;
  class_info: { class: number };
  id: { vendor: number; device: number; subsystem: number; 'subsystem-vendor': number };
  irq?: number;
  irq_pin: number;
  qdev_id: string;
  regions: PciRegionInfo[];
}

/** The root bus's own migration section: the latched CONFIG_ADDRESS and the host bridge; each device saves its own function. */
export interface PciRootBusState {
  configAddress: number;
  hostBridge: PciConfigState;
}

/** A function placed where it cannot go (a configuration error the machine reports). */
export class PciBusError extends TsvirtError {
  constructor(message: string) {
    super('ERR_PCI_BUS', message);
  }
}

export const PCI_SLOTS = 32;
export const PCI_FUNCTIONS = 8;

// The q35 MCH as QEMU presents it.
const Q35_HOST_VENDOR_ID = 0x8086;
const Q35_HOST_DEVICE_ID = 0x29c0;
const PCI_CLASS_BRIDGE_HOST = 0x060000;
const REDHAT_SUBSYSTEM_VENDOR_ID = 0x1af4;
const QEMU_SUBSYSTEM_ID = 0x1100;

/** The q35 host bridge (MCH) at 00.0: identity only; ECAM placement comes from ACPI MCFG, not PCIEXBAR. */
export class Q35HostBridge implements PciFunction {
  readonly config = new PciConfigSpace({
    vendorId: Q35_HOST_VENDOR_ID,
    deviceId: Q35_HOST_DEVICE_ID,
    classCode: PCI_CLASS_BRIDGE_HOST,
    subsystemVendorId: REDHAT_SUBSYSTEM_VENDOR_ID,
    subsystemId: QEMU_SUBSYSTEM_ID,
  }, PCI_CONFIG_SPACE_SIZE);

  constructor() {
    this.config.seal();
  }
  readConfig(offset: number, data: Uint8Array): void {
    this.config.read(offset, data);
  }
  writeConfig(offset: number, data: Uint8Array): void {
    this.config.write(offset, data);
  }
  barRegion(): undefined {
    return undefined;
  }
  reset(): void {
    this.config.reset();
  }
  saveState(): PciConfigState {
    return this.config.saveState();
  }
  restoreState(state: PciConfigState): void {
    this.config.restoreState(state);
  }
}

interface Slot {
  readonly device: PciFunction;
  readonly id: string;
  /** What the machine was last told each BAR decodes at. */
  readonly mapped: (bigint | null)[];
}

/** Bus 0's functions by devfn (slot << 3 | function), and the config-access logic both access methods share. */
export class PciRootBus {
  private readonly functions: (Slot | undefined)[] = new Array(PCI_SLOTS * PCI_FUNCTIONS).fill(undefined);
  readonly hostBridge = new Q35HostBridge();
  /** Ports 0xCF8-0xCFF. */
  readonly configIo: PciConfigIo;
  /** The ECAM window (register it at PCIE_ECAM_START for PCIE_ECAM_SIZE). */
  readonly ecam: PciEcam;

  constructor(private readonly onBarChange: BarChangeHandler, configIoOptions: PciConfigIoOptions = {}) {
    this.add(0, 0, this.hostBridge);
    this.configIo = new PciConfigIo(this, configIoOptions);
    this.ecam = new PciEcam(this);
  }

  /** Places `device` at `slot.fn`; `id` is its qdev id for `query-pci`. */
  add(slot: number, fn: number, device: PciFunction, id = ''): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= PCI_SLOTS) throw new PciBusError(`PCI slot ${slot} outside 0..31`);
    if (!Number.isInteger(fn) || fn < 0 || fn >= PCI_FUNCTIONS) throw new PciBusError(`PCI function ${fn} outside 0..7`);
    const devfn = (slot << 3) | fn;
    if (this.functions[devfn]) throw new PciBusError(`PCI address ${slot}.${fn} is already in use`);
    this.functions[devfn] = { device, id, mapped: new Array(PCI_NUM_BARS).fill(null) };
    // Linux scans functions 1-7 only when function 0 says the slot is multi-function.
    const f0 = this.functions[slot << 3];
    if (f0 && this.functions.slice((slot << 3) + 1, (slot << 3) + 8).some((s) => s)) f0.device.config.setMultifunction(true);
  }

  /** The function at `devfn`, if any. */
  device(devfn: number): PciFunction | undefined {
    return this.functions[devfn]?.device;
  }

  /** A config read of bus 0; absent functions (and other buses) read all-ones. */
  configRead(bus: number, devfn: number, reg: number, data: Uint8Array): void {
    const s = bus === 0 ? this.functions[devfn] : undefined;
    if (!s || reg + data.length > s.device.config.size) {
      data.fill(0xff);
      return;
    }
    s.device.readConfig(reg, data);
  }

  /** A config write of bus 0; afterwards reports any BAR whose decoding changed. */
  configWrite(bus: number, devfn: number, reg: number, data: Uint8Array): void {
    const s = bus === 0 ? this.functions[devfn] : undefined;
    if (!s || reg + data.length > s.device.config.size) return;
    s.device.writeConfig(reg, data);
    this.syncBars(s);
  }

  /** Reports BARs whose decoding no longer matches what the machine was told (after restore, say). */
  syncAllBars(): void {
    for (const s of this.functions) if (s) this.syncBars(s);
  }

  private syncBars(s: Slot): void {
    for (let i = 0; i < PCI_NUM_BARS; i++) {
      const now = s.device.config.mappedBarAddress(i);
      const before = s.mapped[i];
      if (now === before) continue;
      s.mapped[i] = now;
      this.onBarChange(s.device, i, before, now);
    }
  }

  /** Machine reset: every function to power-on, and its BARs unmapped. */
  reset(): void {
    for (const s of this.functions) {
      if (!s) continue;
      s.device.reset();
      this.syncBars(s);
    }
  }

  saveState(): PciRootBusState {
    return { configAddress: this.configIo.saveState().address, hostBridge: this.hostBridge.saveState() };
  }

  /** Loads the bus section; call `syncAllBars` once every device's section is loaded too. */
  restoreState(state: PciRootBusState): void {
    const s = state as unknown as Record<string, unknown> | null;
    this.configIo.restoreState({ address: s?.configAddress as number });
    this.hostBridge.restoreState(s?.hostBridge as PciConfigState);
  }

  /** The bus as `query-pci` reports it. */
  describe(): PciDeviceInfo[] {
    const out: PciDeviceInfo[] = [];
    this.functions.forEach((s, devfn) => {
      if (!s) return;
      const c = s.device.config;
      const pin = c.getU8(PCI_INTERRUPT_PIN);
      const regions: PciRegionInfo[] = [];
      for (let i = 0; i < PCI_NUM_BARS; i++) {
        const bar = c.bar(i);
        if (!bar) continue;
        regions.push({
          bar: i, type: 'memory', address: Number(c.barAddress(i)), size: bar.size,
          prefetch: bar.prefetchable, mem_type_64: bar.is64Bit,
        });
      }
      out.push({
        bus: 0,
        slot: devfn >>> 3,
        function: devfn & 7,
        class_info: { class: c.getU16(PCI_CLASS_PROG + 1) },
        id: {
          vendor: c.getU16(PCI_VENDOR_ID), device: c.getU16(PCI_DEVICE_ID),
          subsystem: c.getU16(PCI_SUBSYSTEM_ID), 'subsystem-vendor': c.getU16(PCI_SUBSYSTEM_VENDOR_ID),
        },
        ...(pin ? { irq: c.getU8(PCI_INTERRUPT_LINE) } : {}),
        irq_pin: pin,
        qdev_id: s.id,
        regions,
      });
    });
    return out;
  }
}

// CONFIG_ADDRESS (port 0xCF8) fields.
const CONFIG_ADDRESS_ENABLE = 0x8000_0000;
const CONFIG_ADDRESS_BUS_SHIFT = 16;
const CONFIG_ADDRESS_DEVFN_SHIFT = 8;
const CONFIG_ADDRESS_REG_MASK = 0xfc;
/** Bits that latch: enable, bus, device, function, dword register; reserved 30:24 and 1:0 read zero. */
const CONFIG_ADDRESS_MASK = CONFIG_ADDRESS_ENABLE | 0x00ff_fffc;
const CONFIG_DATA_OFFSET = 4;
/** Byte offset of port 0xCF9 (ICH9 reset control) inside the CF8 range. */
const RESET_CONTROL_OFFSET = 1;

/** Options of the CF8/CFC decoder. */
export interface PciConfigIoOptions {
  /**
   * Port 0xCF9's device (ICH9 reset control). Only dword accesses at 0xCF8 are CONFIG_ADDRESS, so
   * byte accesses at 0xCF9 go here when the range is registered whole (0xCF8, length 8).
   */
  resetControl?: BusDevice;
}

/**
 * Configuration mechanism #1 at 0xCF8-0xCFF: CONFIG_ADDRESS latched by dword writes at 0xCF8, data
 * by 1, 2 or 4-byte accesses at 0xCFC-0xCFF. Register it whole (0xCF8, 8), or, leaving 0xCF9 to
 * another device, register `addressPort` at 0xCF8 with length 1 (a dword access starting at 0xCF8
 * still lands there) and `dataPort` at 0xCFC with length 4.
 */
export class PciConfigIo implements BusDevice {
  private address = 0;
  /** 0xCF8 alone. */
  readonly addressPort: BusDevice;
  /** 0xCFC-0xCFF alone. */
  readonly dataPort: BusDevice;

  constructor(private readonly bus: PciRootBus, private readonly options: PciConfigIoOptions = {}) {
    this.addressPort = { read: (o, d) => this.read(o, d), write: (o, d) => this.write(o, d) };
    this.dataPort = {
      read: (o, d) => this.read(o + CONFIG_DATA_OFFSET, d),
      write: (o, d) => this.write(o + CONFIG_DATA_OFFSET, d),
    };
  }

  read(offset: number, data: Uint8Array): void {
    if (offset >= CONFIG_DATA_OFFSET) {
      const target = this.target(offset, data.length);
      if (target) this.bus.configRead(target.bus, target.devfn, target.reg, data);
      else data.fill(0xff);
      return;
    }
    if (offset === 0 && data.length === 4) {
      new DataView(data.buffer, data.byteOffset, 4).setUint32(0, this.address, true);
      return;
    }
    if (offset === RESET_CONTROL_OFFSET && this.options.resetControl) {
      this.options.resetControl.read(0, data);
      return;
    }
    data.fill(0xff);
  }

  write(offset: number, data: Uint8Array): void {
    if (offset >= CONFIG_DATA_OFFSET) {
      const target = this.target(offset, data.length);
      if (target) this.bus.configWrite(target.bus, target.devfn, target.reg, data);
      return;
    }
    if (offset === 0 && data.length === 4) {
      this.address = (new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true) & CONFIG_ADDRESS_MASK) >>> 0;
      return;
    }
    if (offset === RESET_CONTROL_OFFSET && this.options.resetControl) this.options.resetControl.write(0, data);
  }

  /**
   * The function and register the latched address selects, or undefined while disabled or when the
   * access runs past 0xCFF. The data port's byte lanes are independent, so any alignment is accepted.
   */
  private target(offset: number, len: number): { bus: number; devfn: number; reg: number } | undefined {
    const byte = offset - CONFIG_DATA_OFFSET;
    if ((this.address & CONFIG_ADDRESS_ENABLE) === 0 || byte + len > 4) return undefined;
    return {
      bus: (this.address >>> CONFIG_ADDRESS_BUS_SHIFT) & 0xff,
      devfn: (this.address >>> CONFIG_ADDRESS_DEVFN_SHIFT) & 0xff,
      reg: (this.address & CONFIG_ADDRESS_REG_MASK) + byte,
    };
  }

  /** The latched CONFIG_ADDRESS, for migration (the rest of the bus state lives in the functions). */
  saveState(): { address: number } {
    return { address: this.address };
  }
  restoreState(state: { address: number }): void {
    const a = (state as unknown as Record<string, unknown> | null)?.address;
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 0 || a > 0xffff_ffff || (a & ~CONFIG_ADDRESS_MASK) !== 0) {
      throw new PciBusError('pci config-io state: address must be a valid CONFIG_ADDRESS value');
    }
    this.address = a;
  }
}

// ECAM offset fields (PCIe base spec §7.2.2).
const ECAM_BUS_SHIFT = 20;
const ECAM_DEVFN_SHIFT = 12;
const ECAM_REG_MASK = 0xfff;

/** The MMCONFIG window: offset = bus << 20 | devfn << 12 | register. Only bus 0 exists. */
export class PciEcam implements BusDevice {
  constructor(private readonly bus: PciRootBus) {}

  read(offset: number, data: Uint8Array): void {
    const reg = offset & ECAM_REG_MASK;
    if (reg + data.length > ECAM_REG_MASK + 1) {
      data.fill(0xff);
      return;
    }
    this.bus.configRead(offset >>> ECAM_BUS_SHIFT, (offset >>> ECAM_DEVFN_SHIFT) & 0xff, reg, data);
  }

  write(offset: number, data: Uint8Array): void {
    const reg = offset & ECAM_REG_MASK;
    if (reg + data.length > ECAM_REG_MASK + 1) return;
    this.bus.configWrite(offset >>> ECAM_BUS_SHIFT, (offset >>> ECAM_DEVFN_SHIFT) & 0xff, reg, data);
  }
}
