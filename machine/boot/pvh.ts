// The Xen PVH boot path: finding the PHYS32_ENTRY note in an ELF kernel and writing hvm_start_info, its memory map and module list.

import type { GuestMemory } from '../../devices/guest-memory.js';
import { BootError } from '../errors.js';
import { e820Map, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, ZERO_PAGE_START } from '../layout.js';
import { hex, Struct } from './bytes.js';
import { noteAreas, readNotes, type ElfImage } from './elf.js';

/** Note type of the 32-bit PVH entry point (xen/include/public/elfnote.h). */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** hvm_start_info.magic: "xEn3" with the top bit of the "E" set. */
export const HVM_START_MAGIC = 0x336ec578;
/** Version 1 adds memmap_paddr/memmap_entries, which Linux reads instead of asking a hypervisor for the map. */
export const HVM_START_VERSION = 1;

/** hvm_start_info field offsets (start_info.h). */
export const START_INFO = {
  magic: 0, version: 4, flags: 8, nrModules: 12, modlistPaddr: 16, cmdlinePaddr: 24,
  rsdpPaddr: 32, memmapPaddr: 40, memmapEntries: 48, size: 56,
} as const;
/** hvm_modlist_entry: paddr, size, cmdline_paddr, reserved. */
export const MODLIST_ENTRY_SIZE = 32;
/** hvm_memmap_table_entry: addr, size, type, reserved. */
export const MEMMAP_ENTRY_SIZE = 24;
/** The memory map must end before the zero page that follows it in low memory. */
const MAX_MEMMAP_ENTRIES = Math.floor((ZERO_PAGE_START - PVH_MEMMAP_START) / MEMMAP_ENTRY_SIZE);

/**
 * The 32-bit PVH entry point from the kernel's Xen PHYS32_ENTRY note: PT_NOTE segments first, then SHT_NOTE
 * sections for kernels whose notes are not in a segment. Undefined when the kernel has no such note.
 */
export function findPvhEntry(file: Uint8Array, elf: ElfImage): number | undefined {
  for (const sections of [false, true]) {
    for (const area of noteAreas(file, elf, sections)) {
      for (const note of readNotes(file, area)) {
        if (note.name !== 'Xen' || note.type !== XEN_ELFNOTE_PHYS32_ENTRY) continue;
        return pvhEntryFromDesc(note.desc, area.where);
      }
    }
  }
  return undefined;
}

/** Linux stores the entry as a 4-byte or (older kernels, `_ASM_PTR`) 8-byte value; either way it must be below 4 GiB. */
function pvhEntryFromDesc(desc: Uint8Array, where: string): number {
  const dv = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
  if (desc.length === 4) return dv.getUint32(0, true);
  if (desc.length === 8) {
    const entry = dv.getBigUint64(0, true);
    if (entry > 0xffff_ffffn) throw new BootError(`ELF kernel: PVH entry ${hex(entry)} in ${where} is not a 32-bit address`);
    return Number(entry);
  }
  throw new BootError(`ELF kernel: PVH entry note in ${where} has a ${desc.length}-byte descriptor (expected 4 or 8)`);
}

/** What hvm_start_info points at. */
export interface StartInfoOptions {
  readonly cmdlineAddr: number;
  readonly rsdpAddr: number;
  readonly memSize: number;
  readonly initrd?: { readonly addr: number; readonly size: number };
}

/** Writes hvm_start_info at PVH_INFO_START, the memory map at PVH_MEMMAP_START and the initrd module at PVH_MODLIST_START. */
export function writeStartInfo(mem: GuestMemory, opts: StartInfoOptions): void {
  const map = e820Map(opts.memSize);
  if (map.length > MAX_MEMMAP_ENTRIES) throw new BootError(`memory map has ${map.length} entries; the PVH area holds ${MAX_MEMMAP_ENTRIES}`);
  const memmap = new Struct(map.length * MEMMAP_ENTRY_SIZE);
  map.forEach((e, i) => {
    // The hvm memmap types are the e820 types (XEN_HVM_MEMMAP_TYPE_RAM = 1, _RESERVED = 2).
    memmap.u64(i * MEMMAP_ENTRY_SIZE, e.addr).u64(i * MEMMAP_ENTRY_SIZE + 8, e.size).u32(i * MEMMAP_ENTRY_SIZE + 16, e.type);
  });
  mem.write(PVH_MEMMAP_START, memmap.bytes);

  const info = new Struct(START_INFO.size)
    .u32(START_INFO.magic, HVM_START_MAGIC)
    .u32(START_INFO.version, HVM_START_VERSION)
    .u64(START_INFO.cmdlinePaddr, opts.cmdlineAddr)
    .u64(START_INFO.rsdpPaddr, opts.rsdpAddr)
    .u64(START_INFO.memmapPaddr, PVH_MEMMAP_START)
    .u32(START_INFO.memmapEntries, map.length);
  if (opts.initrd) {
    const module = new Struct(MODLIST_ENTRY_SIZE).u64(0, opts.initrd.addr).u64(8, opts.initrd.size);
    mem.write(PVH_MODLIST_START, module.bytes);
    info.u32(START_INFO.nrModules, 1).u64(START_INFO.modlistPaddr, PVH_MODLIST_START);
  }
  mem.write(PVH_INFO_START, info.bytes);
}
