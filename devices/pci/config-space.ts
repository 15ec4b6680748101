// A PCI type-0 configuration space (4 KiB, PCIe/ECAM sized): ids, command/status, BARs, capability list, per-byte write masks.

import { TsvirtError } from '../../machine/errors.js';

// Type-0 header offsets (PCI Local Bus 3.0 §6.1, Linux pci_regs.h).
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;

export const PCI_COMMAND_IO = 0x0001;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_PARITY = 0x0040;
export const PCI_COMMAND_SERR = 0x0100;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;
/** Command bits a guest may change: no I/O BARs exist, so I/O decode stays off. */
const COMMAND_WRITABLE =
  PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

export const PCI_STATUS_INTERRUPT = 0x0008;
export const PCI_STATUS_CAP_LIST = 0x0010;

export const PCI_HEADER_TYPE_MULTIFUNCTION = 0x80;

export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
/** Low BAR bits that are flags, not address. */
export const PCI_BASE_ADDRESS_MEM_FLAGS = 0x0f;

/** Capability ids (pci_regs.h PCI_CAP_ID_*). */
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_CAP_ID_VNDR = 0x09;

/** Size of conventional config space, the part CF8/CFC reaches. */
export const PCI_CONFIG_SPACE_SIZE = 0x100;
/** Size of a PCIe function's config space, reached through ECAM. */
export const PCIE_CONFIG_SPACE_SIZE = 0x1000;
export const PCI_NUM_BARS = 6;
/** Capabilities live after the 64-byte header, dword aligned. */
const CAP_START = 0x40;

// PCI Express capability (PCIe base spec §7.5.3), version 2 layout: 0x3c bytes.
const PCI_EXP_SIZEOF = 0x3c;
const PCI_EXP_FLAGS = 0x02;
const PCI_EXP_FLAGS_VERSION_2 = 0x0002;
const PCI_EXP_TYPE_RC_END = 0x9;
const PCI_EXP_TYPE_SHIFT = 4;
const PCI_EXP_DEVCTL = 0x08;
/** Device-control bits a driver sets (error reporting, relaxed ordering, payload/read sizes, no snoop); FLR is not offered. */
const PCI_EXP_DEVCTL_WRITABLE = 0x7fff;

/** Identity of a function: what `lspci -n` shows. */
export interface PciIds {
  vendorId: number;
  deviceId: number;
  /** 24-bit class code: base class << 16 | subclass << 8 | programming interface. */
  classCode: number;
  revisionId?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 0 for none, 1-4 for INTA#-INTD#. */
  interruptPin?: number;
}

/** How a BAR decodes. Only memory BARs exist: tsvirt's devices need no port I/O. */
export interface BarSpec {
  /** Power of two, at least 16 bytes (32-bit) and below 2^53 (64-bit). */
  size: number;
  is64Bit: boolean;
  prefetchable: boolean;
}

/** A configuration space snapshot; also refuses to load into a function with different identity. */
export interface PciConfigState {
  /** The whole space, base64: read-only bytes are checked against this function's, writable bytes restored. */
  bytes: string;
}

/** A config snapshot that does not fit this function. */
export class PciStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `pci config state: ${field} ${message}`);
    this.field = field;
  }
}

/** A device model asked for an impossible layout (a programming error, not guest input). */
export class PciLayoutError extends TsvirtError {
  constructor(message: string) {
    super('ERR_PCI_LAYOUT', message);
  }
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * The configuration registers of one function. Guest writes go through `write`, which honours a
 * per-byte write mask, so read-only fields and BAR size bits hold without special cases: BAR
 * sizing (write all-ones, read back) falls out of the mask. Device models use `set*` to change
 * read-only fields.
 */
export class PciConfigSpace {
  readonly size: number;
  private readonly bytes: Uint8Array;
  private readonly writable: Uint8Array;
  private readonly bars: (BarSpec | undefined)[] = new Array(PCI_NUM_BARS).fill(undefined);
  private readonly caps: { id: number; offset: number }[] = [];
  private nextCap = CAP_START;
  private powerOn: Uint8Array | undefined;

  constructor(ids: PciIds, size = PCIE_CONFIG_SPACE_SIZE) {
    if (size !== PCI_CONFIG_SPACE_SIZE && size !== PCIE_CONFIG_SPACE_SIZE) {
      throw new PciLayoutError(`config space size must be 256 or 4096, not ${size}`);
    }
    this.size = size;
    this.bytes = new Uint8Array(size);
    this.writable = new Uint8Array(size);
    this.setU16(PCI_VENDOR_ID, ids.vendorId);
    this.setU16(PCI_DEVICE_ID, ids.deviceId);
    this.setU8(PCI_REVISION_ID, ids.revisionId ?? 0);
    this.setU8(PCI_CLASS_PROG, ids.classCode & 0xff);
    this.setU16(PCI_CLASS_PROG + 1, (ids.classCode >>> 8) & 0xffff);
    this.setU16(PCI_SUBSYSTEM_VENDOR_ID, ids.subsystemVendorId ?? 0);
    this.setU16(PCI_SUBSYSTEM_ID, ids.subsystemId ?? 0);
    this.setU8(PCI_INTERRUPT_PIN, ids.interruptPin ?? 0);
    this.setWritable(PCI_COMMAND, 2, COMMAND_WRITABLE);
    this.setWritable(PCI_CACHE_LINE_SIZE, 1, 0xff);
    this.setWritable(PCI_INTERRUPT_LINE, 1, 0xff);
  }

  // --- Guest accesses ---------------------------------------------------------------------------

  /** A guest read of 1, 2 or 4 bytes; beyond the space reads all-ones. */
  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      data[i] = o >= 0 && o < this.size ? this.bytes[o] : 0xff;
    }
  }

  /** A guest write: only bits in the write mask change. */
  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      if (o < 0 || o >= this.size) continue;
      const mask = this.writable[o];
      this.bytes[o] = (this.bytes[o] & ~mask) | (data[i] & mask);
    }
  }

  // --- Device-side accessors (ignore write masks) ------------------------------------------------

  getU8(offset: number): number {
    return this.bytes[offset];
  }
  getU16(offset: number): number {
    return this.bytes[offset] | (this.bytes[offset + 1] << 8);
  }
  getU32(offset: number): number {
    return (this.getU16(offset) | (this.getU16(offset + 2) << 16)) >>> 0;
  }
  setU8(offset: number, v: number): void {
    this.bytes[offset] = v & 0xff;
  }
  setU16(offset: number, v: number): void {
    this.bytes[offset] = v & 0xff;
    this.bytes[offset + 1] = (v >>> 8) & 0xff;
  }
  setU32(offset: number, v: number): void {
    this.setU16(offset, v & 0xffff);
    this.setU16(offset + 2, (v >>> 16) & 0xffff);
  }

  /** Makes the low `len` bytes of `mask` (little-endian) the guest-writable bits at `offset`. */
  setWritable(offset: number, len: number, mask: number): void {
    for (let i = 0; i < len; i++) this.writable[offset + i] = Math.floor(mask / 2 ** (8 * i)) & 0xff;
  }

  get command(): number {
    return this.getU16(PCI_COMMAND);
  }

  /** Reflects a pending INTx in the status register, as `lspci` and the PCI core read it. */
  setInterruptStatus(pending: boolean): void {
    const s = this.getU16(PCI_STATUS);
    this.setU16(PCI_STATUS, pending ? s | PCI_STATUS_INTERRUPT : s & ~PCI_STATUS_INTERRUPT);
  }

  /** Sets the multi-function bit so the guest scans functions 1-7 of the slot. */
  setMultifunction(on: boolean): void {
    const h = this.getU8(PCI_HEADER_TYPE);
    this.setU8(PCI_HEADER_TYPE, on ? h | PCI_HEADER_TYPE_MULTIFUNCTION : h & ~PCI_HEADER_TYPE_MULTIFUNCTION);
  }

  // --- BARs ---------------------------------------------------------------------------------------

  /** Declares BAR `index` (a 64-bit BAR also takes `index + 1`). */
  addBar(index: number, spec: BarSpec): void {
    const slots = spec.is64Bit ? 2 : 1;
    if (!Number.isInteger(index) || index < 0 || index + slots > PCI_NUM_BARS) {
      throw new PciLayoutError(`BAR ${index} does not fit`);
    }
    if (this.bars[index] || (spec.is64Bit && this.bars[index + 1]) || this.isUpperHalf(index)) {
      throw new PciLayoutError(`BAR ${index} is already taken`);
    }
    const { size } = spec;
    const maxSize = spec.is64Bit ? Number.MAX_SAFE_INTEGER : 2 ** 31;
    if (!Number.isSafeInteger(size) || size < 16 || size > maxSize || (BigInt(size) & BigInt(size - 1)) !== 0n) {
      throw new PciLayoutError(`BAR ${index} size ${size} must be a power of two of at least 16`);
    }
    this.bars[index] = spec;
    const flags = (spec.is64Bit ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (spec.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    const off = PCI_BASE_ADDRESS_0 + 4 * index;
    this.setU32(off, flags);
    // Address bits at and above log2(size) are writable; the rest read as zero, which is how sizing works.
    const mask = ~(BigInt(size) - 1n) & U64_MAX;
    this.setWritable(off, 4, Number(mask & 0xffff_fff0n));
    if (spec.is64Bit) this.setWritable(off + 4, 4, Number(mask >> 32n));
  }

  /** The BAR declared at `index`, if any (the upper half of a 64-bit BAR has none). */
  bar(index: number): BarSpec | undefined {
    return this.bars[index];
  }

  private isUpperHalf(index: number): boolean {
    return index > 0 && this.bars[index - 1]?.is64Bit === true;
  }

  /** The address the guest programmed into BAR `index`, whether or not decoding is on. */
  barAddress(index: number): bigint {
    const spec = this.bars[index];
    if (!spec) return 0n;
    const off = PCI_BASE_ADDRESS_0 + 4 * index;
    const lo = BigInt(this.getU32(off)) & ~BigInt(PCI_BASE_ADDRESS_MEM_FLAGS) & 0xffff_ffffn;
    const hi = spec.is64Bit ? BigInt(this.getU32(off + 4)) << 32n : 0n;
    return hi | lo;
  }

  /**
   * Where BAR `index` decodes now, or null: memory decode off, no address programmed, the sizing
   * pattern still in the register, or a range that would wrap. The machine maps exactly this.
   */
  mappedBarAddress(index: number): bigint | null {
    const spec = this.bars[index];
    if (!spec || (this.command & PCI_COMMAND_MEMORY) === 0) return null;
    const addr = this.barAddress(index);
    const size = BigInt(spec.size);
    const limit = spec.is64Bit ? 1n << 64n : 1n << 32n;
    const sizingPattern = (limit - size) & ~0xfn;
    if (addr === 0n || addr === sizingPattern || addr + size > limit) return null;
    return addr;
  }

  // --- Capabilities -------------------------------------------------------------------------------

  /**
   * Appends a capability whose body (bytes after id and next pointer) is `body`; `writableMask`,
   * the same length as the body, names the bits the guest may change. Returns the capability's offset.
   */
  addCapability(id: number, body: Uint8Array, writableMask?: Uint8Array): number {
    const len = 2 + body.length;
    const offset = this.nextCap;
    if (offset + len > PCI_CONFIG_SPACE_SIZE) throw new PciLayoutError(`no room for capability 0x${id.toString(16)}`);
    this.setU8(offset, id);
    this.setU8(offset + 1, 0);
    this.bytes.set(body, offset + 2);
    if (writableMask) this.writable.set(writableMask.subarray(0, body.length), offset + 2);
    const last = this.caps[this.caps.length - 1];
    if (last) this.setU8(last.offset + 1, offset);
    else this.setU8(PCI_CAPABILITY_LIST, offset);
    this.setU16(PCI_STATUS, this.getU16(PCI_STATUS) | PCI_STATUS_CAP_LIST);
    this.caps.push({ id, offset });
    this.nextCap = (offset + len + 3) & ~3;
    return offset;
  }

  /** The capabilities in list order. */
  capabilities(): readonly { id: number; offset: number }[] {
    return this.caps;
  }

  /**
   * Adds a PCI Express capability describing a root-complex integrated endpoint, which is what a
   * device on q35's root bus is: Linux then treats the function as PCIe and uses the 4 KiB space.
   */
  addPcieCapability(): number {
    const body = new Uint8Array(PCI_EXP_SIZEOF - 2);
    const mask = new Uint8Array(body.length);
    const flags = PCI_EXP_FLAGS_VERSION_2 | (PCI_EXP_TYPE_RC_END << PCI_EXP_TYPE_SHIFT);
    body[PCI_EXP_FLAGS - 2] = flags & 0xff;
    body[PCI_EXP_FLAGS - 1] = flags >>> 8;
    mask[PCI_EXP_DEVCTL - 2] = PCI_EXP_DEVCTL_WRITABLE & 0xff;
    mask[PCI_EXP_DEVCTL - 1] = PCI_EXP_DEVCTL_WRITABLE >>> 8;
    return this.addCapability(PCI_CAP_ID_EXP, body, mask);
  }

  // --- Reset and migration ------------------------------------------------------------------------

  /** Records the current contents as the power-on state `reset` returns to; call once the layout is final. */
  seal(): void {
    this.powerOn = this.bytes.slice();
  }

  /** Returns every register to power-on (BARs unprogrammed, decode off, capabilities' control bits clear). */
  reset(): void {
    if (!this.powerOn) this.seal();
    this.bytes.set(this.powerOn!);
  }

  saveState(): PciConfigState {
    return { bytes: Buffer.from(this.bytes).toString('base64') };
  }

  /** Loads a snapshot: read-only bytes must equal this function's (same device, same layout). */
  restoreState(state: PciConfigState): void {
    const b64 = (state as unknown as Record<string, unknown> | null)?.bytes;
    if (typeof b64 !== 'string') throw new PciStateError('bytes', 'must be a base64 string');
    const saved = new Uint8Array(Buffer.from(b64, 'base64'));
    if (saved.length !== this.size) throw new PciStateError('bytes', `must hold ${this.size} bytes, not ${saved.length}`);
    if (!this.powerOn) this.seal();
    for (let i = 0; i < this.size; i++) {
      // The INTx status bit is live state the owner recomputes; everything else read-only must match.
      const volatile = i === PCI_STATUS ? PCI_STATUS_INTERRUPT : 0;
      const fixed = ~(this.writable[i] | volatile) & 0xff;
      if ((saved[i] & fixed) !== (this.powerOn![i] & fixed)) {
        throw new PciStateError('bytes', `read-only byte 0x${i.toString(16)} differs: snapshot of another device?`);
      }
    }
    this.bytes.set(saved);
  }
}
