// MSI-X for one PCI function: the capability, the vector table and pending-bit array in a BAR, and delivery through an injected sink.

import type { BusDevice } from '../bus.js';
import { TsvirtError } from '../../machine/errors.js';
import { PCI_CAP_ID_MSIX, PCI_COMMAND_MASTER, type PciConfigSpace } from './config-space.js';

// Capability layout (PCI Local Bus 3.0 §6.8.2), offsets from the capability start.
const PCI_MSIX_FLAGS = 0x02;
const PCI_MSIX_TABLE = 0x04;
const PCI_MSIX_PBA = 0x08;
const PCI_MSIX_CAP_BODY = 10;
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;

// Table entry layout.
export const MSIX_ENTRY_SIZE = 16;
const MSIX_ENTRY_LOWER_ADDR = 0x0;
const MSIX_ENTRY_UPPER_ADDR = 0x4;
const MSIX_ENTRY_DATA = 0x8;
const MSIX_ENTRY_VECTOR_CTRL = 0xc;
export const MSIX_ENTRY_CTRL_MASKBIT = 0x1;

/** The most vectors a function can have (table size is an 11-bit field plus one). */
export const MSIX_MAX_VECTORS = 2048;
/** Table and PBA sit in separate 2 KiB halves of a page, as QEMU lays them out for virtio. */
const MSIX_PBA_ALIGN = 0x800;
const MSIX_MIN_REGION = 0x1000;

/** Where MSI-X messages go: the machine backs it with KVM_SIGNAL_MSI or an irqfd per vector. */
export interface MsiSink {
  /** Delivers the message programmed in `vector`'s table entry. */
  signal(vector: number, address: bigint, data: number): void;
  /**
   * Optional: `vector`'s message or masking changed (table write, enable or function-mask change),
   * so an irqfd-backed sink can update its KVM GSI route before the next `signal`.
   */
  update?(vector: number, address: bigint, data: number, masked: boolean): void;
}

/** The MSI-X migration section; enable and function-mask live in config space and travel with it. */
export interface MsixState {
  /** One per vector: the table entry's four dwords. */
  entries: { addressLo: number; addressHi: number; data: number; control: number }[];
  /** Vectors whose pending bit is set. */
  pending: number[];
}

/** An MSI-X snapshot that does not fit this table. */
export class MsixStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `msix state: ${field} ${message}`);
    this.field = field;
  }
}

function isU32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}

/**
 * MSI-X table and PBA of one function. As a BusDevice it decodes offsets relative to the start of
 * the BAR that holds it: the table at `tableOffset`, the PBA at `pbaOffset`; anything else reads
 * zero. Enable and function-mask are read from the capability in config space, so the owner must
 * call `configWritten` after each guest config write.
 */
export class MsixTable implements BusDevice {
  readonly tableOffset: number;
  readonly pbaOffset: number;
  /** Bytes of BAR space the table and PBA need (a power of two, at least 4 KiB). */
  readonly regionSize: number;
  private readonly table: Uint8Array;
  private readonly tableView: DataView;
  private readonly pba: Uint8Array;
  private config: PciConfigSpace | undefined;
  private capOffset = 0;
  private wasDelivering = false;

  constructor(
    readonly vectors: number,
    private readonly sink: MsiSink,
    tableOffset = 0,
  ) {
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > MSIX_MAX_VECTORS) {
      throw new RangeError(`MSI-X vector count ${vectors} outside 1..${MSIX_MAX_VECTORS}`);
    }
    this.tableOffset = tableOffset;
    this.pbaOffset = tableOffset + Math.ceil((vectors * MSIX_ENTRY_SIZE) / MSIX_PBA_ALIGN) * MSIX_PBA_ALIGN;
    this.table = new Uint8Array(vectors * MSIX_ENTRY_SIZE);
    this.tableView = new DataView(this.table.buffer);
    this.pba = new Uint8Array(Math.ceil(vectors / 64) * 8);
    let size = MSIX_MIN_REGION;
    while (size < this.pbaOffset + this.pba.length) size *= 2;
    this.regionSize = size;
    this.reset();
  }

  /** Adds the MSI-X capability to `config`, naming BAR `bar` for both table and PBA; returns its offset. */
  attach(config: PciConfigSpace, bar: number): number {
    const body = new Uint8Array(PCI_MSIX_CAP_BODY);
    const view = new DataView(body.buffer);
    view.setUint16(PCI_MSIX_FLAGS - 2, this.vectors - 1, true);
    view.setUint32(PCI_MSIX_TABLE - 2, this.tableOffset | bar, true);
    view.setUint32(PCI_MSIX_PBA - 2, this.pbaOffset | bar, true);
    const mask = new Uint8Array(PCI_MSIX_CAP_BODY);
    mask[PCI_MSIX_FLAGS - 1] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >>> 8;
    this.config = config;
    this.capOffset = config.addCapability(PCI_CAP_ID_MSIX, body, mask);
    return this.capOffset;
  }

  private get control(): number {
    return this.config ? this.config.getU16(this.capOffset + PCI_MSIX_FLAGS) : 0;
  }

  /** The guest set MSI-X Enable: interrupts go here rather than to INTx. */
  get enabled(): boolean {
    return (this.control & PCI_MSIX_FLAGS_ENABLE) !== 0;
  }

  get functionMasked(): boolean {
    return (this.control & PCI_MSIX_FLAGS_MASKALL) !== 0;
  }

  /** An MSI-X message is a memory write: without Bus Master Enable it stays pending. */
  private get busMaster(): boolean {
    return this.config ? (this.config.command & PCI_COMMAND_MASTER) !== 0 : true;
  }

  isMasked(vector: number): boolean {
    return (this.tableView.getUint32(vector * MSIX_ENTRY_SIZE + MSIX_ENTRY_VECTOR_CTRL, true) & MSIX_ENTRY_CTRL_MASKBIT) !== 0;
  }

  isPending(vector: number): boolean {
    return (this.pba[vector >>> 3] & (1 << (vector & 7))) !== 0;
  }

  private setPending(vector: number, on: boolean): void {
    if (on) this.pba[vector >>> 3] |= 1 << (vector & 7);
    else this.pba[vector >>> 3] &= ~(1 << (vector & 7));
  }

  private message(vector: number): { address: bigint; data: number } {
    const base = vector * MSIX_ENTRY_SIZE;
    const lo = this.tableView.getUint32(base + MSIX_ENTRY_LOWER_ADDR, true);
    const hi = this.tableView.getUint32(base + MSIX_ENTRY_UPPER_ADDR, true);
    return { address: (BigInt(hi) << 32n) | BigInt(lo), data: this.tableView.getUint32(base + MSIX_ENTRY_DATA, true) };
  }

  /**
   * Raises `vector`: delivered now when enabled and unmasked, otherwise its pending bit is set and
   * it is delivered when unmasked. Returns false when MSI-X is disabled (the caller falls back to INTx).
   */
  signal(vector: number): boolean {
    if (!this.enabled) return false;
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.vectors) return true;
    if (this.functionMasked || this.isMasked(vector) || !this.busMaster) {
      this.setPending(vector, true);
      return true;
    }
    const { address, data } = this.message(vector);
    this.sink.signal(vector, address, data);
    return true;
  }

  /** Call after every guest config write: delivers what an enable or function unmask released. */
  configWritten(): void {
    const delivering = this.enabled && !this.functionMasked && this.busMaster;
    if (delivering === this.wasDelivering) return;
    this.wasDelivering = delivering;
    for (let v = 0; v < this.vectors; v++) this.announce(v);
    if (delivering) for (let v = 0; v < this.vectors; v++) this.flushPending(v);
  }

  private flushPending(vector: number): void {
    if (!this.isPending(vector) || this.isMasked(vector) || !this.enabled || this.functionMasked || !this.busMaster) return;
    this.setPending(vector, false);
    const { address, data } = this.message(vector);
    this.sink.signal(vector, address, data);
  }

  private announce(vector: number): void {
    if (!this.sink.update) return;
    const { address, data } = this.message(vector);
    this.sink.update(vector, address, data, !this.enabled || this.functionMasked || this.isMasked(vector));
  }

  // --- BAR region ---------------------------------------------------------------------------------

  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      const t = o - this.tableOffset;
      const p = o - this.pbaOffset;
      if (t >= 0 && t < this.table.length) data[i] = this.table[t];
      else if (p >= 0 && p < this.pba.length) data[i] = this.pba[p];
      else data[i] = 0;
    }
  }

  /** Table writes change one entry's message or mask; the PBA is read-only. */
  write(offset: number, data: Uint8Array): void {
    const touched = new Set<number>();
    for (let i = 0; i < data.length; i++) {
      const t = offset + i - this.tableOffset;
      if (t < 0 || t >= this.table.length) continue;
      const field = t % MSIX_ENTRY_SIZE;
      // Only the mask bit of Vector Control is defined; the rest is reserved and reads zero.
      if (field >= MSIX_ENTRY_VECTOR_CTRL) {
        this.table[t] = field === MSIX_ENTRY_VECTOR_CTRL ? data[i] & MSIX_ENTRY_CTRL_MASKBIT : 0;
      } else {
        this.table[t] = data[i];
      }
      touched.add(Math.floor(t / MSIX_ENTRY_SIZE));
    }
    for (const v of touched) {
      this.announce(v);
      this.flushPending(v);
    }
  }

  // --- Reset and migration ------------------------------------------------------------------------

  /** Power-on: every vector masked with an empty message, nothing pending. */
  reset(): void {
    this.table.fill(0);
    for (let v = 0; v < this.vectors; v++) {
      this.tableView.setUint32(v * MSIX_ENTRY_SIZE + MSIX_ENTRY_VECTOR_CTRL, MSIX_ENTRY_CTRL_MASKBIT, true);
    }
    this.pba.fill(0);
    this.wasDelivering = false;
  }

  saveState(): MsixState {
    const entries = [];
    const pending = [];
    for (let v = 0; v < this.vectors; v++) {
      const base = v * MSIX_ENTRY_SIZE;
      entries.push({
        addressLo: this.tableView.getUint32(base + MSIX_ENTRY_LOWER_ADDR, true),
        addressHi: this.tableView.getUint32(base + MSIX_ENTRY_UPPER_ADDR, true),
        data: this.tableView.getUint32(base + MSIX_ENTRY_DATA, true),
        control: this.tableView.getUint32(base + MSIX_ENTRY_VECTOR_CTRL, true),
      });
      if (this.isPending(v)) pending.push(v);
    }
    return { entries, pending };
  }

  /** Loads a snapshot; config space must already be restored so enable and mask are current. */
  restoreState(state: MsixState): void {
    const s = state as unknown as Record<string, unknown> | null;
    const entries = s?.entries;
    const pending = s?.pending;
    if (!Array.isArray(entries) || entries.length !== this.vectors) {
      throw new MsixStateError('entries', `must list ${this.vectors} vectors`);
    }
    if (!Array.isArray(pending) || !pending.every((v) => Number.isInteger(v) && v >= 0 && v < this.vectors)) {
      throw new MsixStateError('pending', `must list vectors below ${this.vectors}`);
    }
    entries.forEach((e: Record<string, unknown>, v) => {
      for (const k of ['addressLo', 'addressHi', 'data', 'control']) {
        if (!isU32(e?.[k])) throw new MsixStateError(`entries[${v}].${k}`, 'must be a 32-bit unsigned integer');
      }
      if (((e.control as number) & ~MSIX_ENTRY_CTRL_MASKBIT) !== 0) {
        throw new MsixStateError(`entries[${v}].control`, 'has reserved bits set');
      }
    });
    entries.forEach((e: Record<string, number>, v) => {
      const base = v * MSIX_ENTRY_SIZE;
      this.tableView.setUint32(base + MSIX_ENTRY_LOWER_ADDR, e.addressLo, true);
      this.tableView.setUint32(base + MSIX_ENTRY_UPPER_ADDR, e.addressHi, true);
      this.tableView.setUint32(base + MSIX_ENTRY_DATA, e.data, true);
      this.tableView.setUint32(base + MSIX_ENTRY_VECTOR_CTRL, e.control, true);
    });
    this.pba.fill(0);
    for (const v of pending as number[]) this.setPending(v, true);
    this.wasDelivering = this.enabled && !this.functionMasked;
    for (let v = 0; v < this.vectors; v++) this.announce(v);
  }
}
