// The boot vCPU's initial registers for each boot kind, as plain data in KVM's field names, plus the GDT and page tables they point at.

import type { GuestMemory } from '../../devices/guest-memory.js';
import { BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START, PVH_INFO_START, ZERO_PAGE_START } from '../layout.js';
import { Struct } from './bytes.js';

/** How the kernel is entered: PVH (32-bit protected mode, EBX = start_info) or the Linux 64-bit boot protocol. */
export type BootKind = 'pvh' | 'linux64';

/** A segment register as struct kvm_segment has it (limit already scaled by granularity). */
export interface Segment {
  base: bigint; limit: number; selector: number; type: number; present: number; dpl: number;
  db: number; s: number; l: number; g: number; avl: number; unusable: number;
}

/** struct kvm_dtable without padding. */
export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** The registers the KVM layer copies into struct kvm_regs / kvm_sregs for the boot vCPU; unnamed ones are zero. */
export interface BootCpuState {
  regs: { rip: bigint; rsp: bigint; rflags: bigint; rsi: bigint; rbx: bigint; rbp: bigint; rdi: bigint };
  sregs: {
    cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
    gdt: DescriptorTable; idt: DescriptorTable; cr0: bigint; cr3: bigint; cr4: bigint; efer: bigint;
  };
}

export const X86_CR0_PE = 1n << 0n;
export const X86_CR0_ET = 1n << 4n;
export const X86_CR0_PG = 1n << 31n;
export const X86_CR4_PAE = 1n << 5n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
/** Bit 1 of EFLAGS is reserved and always reads as one; interrupts stay off. */
const RFLAGS_RESERVED = 0x2n;

/** Descriptor access/flags words (flags nibble << 12 | access byte), as in Firecracker's gdt.rs. */
const CODE32 = 0xc09b; // G, D/B, present, code execute/read accessed
const CODE64 = 0xa09b; // G, L, present, code execute/read accessed
const DATA = 0xc093; // G, D/B, present, data read/write accessed
const TSS_BUSY = 0x008b; // present, system, busy TSS
/** The smallest 32-bit TSS; nothing ever switches tasks through it. */
const TSS_LIMIT = 0x67;

/** Linux's boot protocol fixes these selectors: __BOOT_CS and __BOOT_DS. */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;

/** Encodes one 8-byte GDT descriptor. */
export function gdtEntry(flags: number, base: number, limit: number): bigint {
  const b = BigInt(base);
  const l = BigInt(limit);
  const f = BigInt(flags);
  return ((b & 0xff000000n) << 32n) | ((f & 0xf0ffn) << 40n) | ((l & 0xf0000n) << 32n) | ((b & 0xffffffn) << 16n) | (l & 0xffffn);
}

/** The segment register state KVM needs for a descriptor, so registers and GDT agree bit for bit. */
export function segmentFromGdt(entry: bigint, selector: number): Segment {
  const bits = (shift: bigint, mask: bigint) => Number((entry >> shift) & mask);
  const g = bits(55n, 1n);
  const rawLimit = bits(48n, 0xfn) * 0x10000 + bits(0n, 0xffffn);
  const base = ((entry >> 32n) & 0xff000000n) | ((entry >> 16n) & 0xffffffn);
  const present = bits(47n, 1n);
  return {
    base, limit: g ? rawLimit * 0x1000 + 0xfff : rawLimit, selector,
    type: bits(40n, 0xfn), s: bits(44n, 1n), dpl: bits(45n, 3n), present,
    avl: bits(52n, 1n), l: bits(53n, 1n), db: bits(54n, 1n), g, unusable: present ? 0 : 1,
  };
}

/** No LDT: KVM wants it marked unusable rather than pointing anywhere. */
const NO_LDT: Segment = { base: 0n, limit: 0, selector: 0, type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1 };

/**
 * The four GDT slots below BOOT_IDT_START. PVH takes Firecracker's layout; linux64 must have code at 0x10 and data
 * at 0x18, so its TSS goes in slot 1. A long-mode TSS descriptor would take 16 bytes, but the guest installs its own
 * GDT and TR before it could load this one: KVM takes TR from the registers, and the descriptor is there to match them.
 */
function gdtFor(kind: BootKind): { entries: bigint[]; cs: number; ds: number; tr: number } {
  const tss = gdtEntry(TSS_BUSY, 0, TSS_LIMIT);
  if (kind === 'pvh') return { entries: [0n, gdtEntry(CODE32, 0, 0xfffff), gdtEntry(DATA, 0, 0xfffff), tss], cs: 0x08, ds: 0x10, tr: 0x18 };
  return { entries: [0n, tss, gdtEntry(CODE64, 0, 0xfffff), gdtEntry(DATA, 0, 0xfffff)], cs: BOOT_CS, ds: BOOT_DS, tr: 0x08 };
}

/** Writes the GDT and an empty IDT; returns the descriptor-table registers and segments. */
function writeDescriptorTables(mem: GuestMemory, kind: BootKind) {
  const { entries, cs, ds, tr } = gdtFor(kind);
  const gdt = new Struct(entries.length * 8);
  entries.forEach((e, i) => gdt.u64(i * 8, e));
  mem.write(BOOT_GDT_START, gdt.bytes);
  // One zero gate: any exception before the kernel sets its own IDT ends in a triple fault, a clean shutdown exit.
  mem.writeU64(BOOT_IDT_START, 0n);
  const data = segmentFromGdt(entries[ds / 8], ds);
  return {
    cs: segmentFromGdt(entries[cs / 8], cs),
    ds: data, es: { ...data }, fs: { ...data }, gs: { ...data }, ss: { ...data },
    tr: segmentFromGdt(entries[tr / 8], tr),
    ldt: NO_LDT,
    gdt: { base: BigInt(BOOT_GDT_START), limit: entries.length * 8 - 1 },
    idt: { base: BigInt(BOOT_IDT_START), limit: 7 },
  };
}

const PAGE_PRESENT_RW = 0x3n;
const PAGE_PS = 0x80n;
const IDENTITY_GIB = 4;

/** Identity-maps the first 4 GiB with 2 MiB pages: the kernel, zero page and command line are all in there. */
function writeIdentityPageTables(mem: GuestMemory): void {
  const pml4 = new Struct(4096).u64(0, BigInt(PDPTE_START) | PAGE_PRESENT_RW);
  const pdpt = new Struct(4096);
  const pd = new Struct(4096 * IDENTITY_GIB);
  for (let gib = 0; gib < IDENTITY_GIB; gib++) {
    pdpt.u64(gib * 8, BigInt(PDE_START + gib * 4096) | PAGE_PRESENT_RW);
  }
  for (let i = 0; i < 512 * IDENTITY_GIB; i++) pd.u64(i * 8, (BigInt(i) << 21n) | PAGE_PRESENT_RW | PAGE_PS);
  mem.write(PML4_START, pml4.bytes);
  mem.write(PDPTE_START, pdpt.bytes);
  mem.write(PDE_START, pd.bytes);
}

/**
 * Writes what the boot vCPU's registers point at and returns those registers. Only the BSP boots this way;
 * the APs stay in their reset state until the guest wakes them with INIT/SIPI through the in-kernel LAPIC.
 */
export function setupBootCpu(mem: GuestMemory, kind: BootKind, entry: bigint): BootCpuState {
  const tables = writeDescriptorTables(mem, kind);
  if (kind === 'pvh') {
    return {
      // The PVH ABI: 32-bit protected mode, paging off, EBX = hvm_start_info; there is no stack.
      regs: { rip: entry, rsp: 0n, rflags: RFLAGS_RESERVED, rsi: 0n, rbx: BigInt(PVH_INFO_START), rbp: 0n, rdi: 0n },
      sregs: { ...tables, cr0: X86_CR0_PE | X86_CR0_ET, cr3: 0n, cr4: 0n, efer: 0n },
    };
  }
  writeIdentityPageTables(mem);
  return {
    regs: {
      rip: entry, rsp: BigInt(BOOT_STACK_POINTER), rflags: RFLAGS_RESERVED,
      rsi: BigInt(ZERO_PAGE_START), rbx: 0n, rbp: BigInt(BOOT_STACK_POINTER), rdi: 0n,
    },
    sregs: {
      ...tables,
      cr0: X86_CR0_PE | X86_CR0_ET | X86_CR0_PG,
      cr3: BigInt(PML4_START),
      cr4: X86_CR4_PAE,
      efer: EFER_LME | EFER_LMA,
    },
  };
}
