// The Linux x86 boot protocol for bzImages: header checks, loading the protected-mode kernel, and the boot_params zero page.

import type { GuestMemory } from '../../devices/guest-memory.js';
import { BootError } from '../errors.js';
import { e820Map, HIMEM_START, ZERO_PAGE_START } from '../layout.js';
import { hex, mib, Struct } from './bytes.js';
import { copyToRam, isRam } from './ram.js';

/** boot_params / setup_header offsets (Documentation/arch/x86/boot.rst, asm/bootparam.h). */
export const BP = {
  acpiRsdpAddr: 0x070,
  extRamdiskImage: 0x0c0,
  extRamdiskSize: 0x0c4,
  extCmdLinePtr: 0x0c8,
  e820Entries: 0x1e8,
  setupHeader: 0x1f1,
  setupSects: 0x1f1,
  /** Size of the protected-mode code in 16-byte paragraphs. */
  syssize: 0x1f4,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  prefAddress: 0x258,
  initSize: 0x260,
  /** setup_header ends here at protocol 2.12 (after handover_offset); shorter headers are not 2.12. */
  headerEnd212: 0x268,
  /** boot_params reserves up to here for setup_header (the edd_mbr_sig_buffer follows). */
  headerLimit: 0x290,
  e820Table: 0x2d0,
  size: 0x1000,
} as const;

/** "HdrS" read as a little-endian u32. */
const HDRS_MAGIC = 0x53726448;
/** The 64-bit entry and xloadflags both arrived in boot protocol 2.12. */
export const MIN_BOOT_PROTOCOL = 0x020c;
export const XLF_KERNEL_64 = 1 << 0;
export const LOADED_HIGH = 1 << 0;
export const CAN_USE_HEAP = 1 << 7;
/** "Undefined" boot loader id: tsvirt has no registered one. */
const TYPE_OF_LOADER_UNDEFINED = 0xff;
/** End of the setup heap relative to the real-mode code, minus 0x200, as QEMU sets it (only the 16-bit entry uses it). */
const HEAP_END_PTR = 0xfe00;
/** startup_64 sits 0x200 bytes into the protected-mode kernel. */
const STARTUP_64_OFFSET = 0x200;
const E820_ENTRY_SIZE = 20;
const E820_MAX_ZEROPAGE = 128;
const SECTOR = 512;

/** A bzImage's header fields the loader needs, and its protected-mode part. */
export interface BzImage {
  readonly protocol: number;
  readonly xloadflags: number;
  readonly cmdlineSize: number;
  readonly initrdAddrMax: number;
  readonly prefAddress: number;
  readonly initSize: number;
  /** The setup header as the kernel ships it, copied into the zero page. */
  readonly setupHeader: Uint8Array;
  readonly protectedMode: Uint8Array;
}

/** True when `file` carries the "HdrS" boot protocol signature. */
export function isBzImage(file: Uint8Array): boolean {
  return file.length >= BP.header + 4 && new DataView(file.buffer, file.byteOffset, file.byteLength).getUint32(BP.header, true) === HDRS_MAGIC;
}

function protocolString(version: number): string {
  return `${version >> 8}.${String(version & 0xff).padStart(2, '0')}`;
}

/** Validates a bzImage's header for a 64-bit direct boot and splits off its protected-mode kernel. */
export function parseBzImage(file: Uint8Array): BzImage {
  if (!isBzImage(file)) throw new BootError('kernel is not a bzImage (no "HdrS" at 0x202)');
  if (file.length < BP.version + 2) throw new BootError(`bzImage truncated in its setup header (${file.length} bytes)`);
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const protocol = dv.getUint16(BP.version, true);
  if (protocol < MIN_BOOT_PROTOCOL) {
    throw new BootError(`bzImage boot protocol ${protocolString(protocol)} is too old: tsvirt needs ${protocolString(MIN_BOOT_PROTOCOL)} or later for the 64-bit entry`);
  }
  // The byte at 0x201 is the jump offset, which the boot protocol defines as the setup header's length.
  const headerEnd = BP.header + file[BP.jump + 1];
  if (headerEnd < BP.headerEnd212 || headerEnd > BP.headerLimit) {
    throw new BootError(`bzImage setup header ends at ${hex(headerEnd)}, which does not fit protocol ${protocolString(protocol)}`);
  }
  if (file.length < headerEnd) throw new BootError(`bzImage truncated in its setup header (${file.length} bytes, header ends at ${hex(headerEnd)})`);
  const xloadflags = dv.getUint16(BP.xloadflags, true);
  if (!(xloadflags & XLF_KERNEL_64)) throw new BootError('bzImage has no 64-bit entry point (XLF_KERNEL_64 is clear in xloadflags)');
  const setupSects = file[BP.setupSects] || 4; // 0 means 4, for kernels older than anyone remembers
  const setupSize = (setupSects + 1) * SECTOR;
  if (file.length <= setupSize) throw new BootError(`bzImage truncated: its setup code takes ${setupSize} bytes but the file has ${file.length}`);
  // syssize counts the protected-mode kernel in 16-byte paragraphs: a shorter file lost part of the kernel.
  const kernelSize = dv.getUint32(BP.syssize, true) * 16;
  if (file.length < setupSize + kernelSize) {
    throw new BootError(`bzImage truncated: its header promises ${setupSize + kernelSize} bytes but the file has ${file.length}`);
  }
  return {
    protocol,
    xloadflags,
    cmdlineSize: dv.getUint32(BP.cmdlineSize, true),
    initrdAddrMax: dv.getUint32(BP.initrdAddrMax, true),
    prefAddress: Number(dv.getBigUint64(BP.prefAddress, true)),
    initSize: dv.getUint32(BP.initSize, true),
    setupHeader: file.subarray(BP.setupHeader, headerEnd),
    protectedMode: file.subarray(setupSize),
  };
}

/** Where the kernel lives once loaded: it runs from `entry`, and needs [start, end) before it reads the memory map. */
export interface LoadedBzImage {
  readonly entry: bigint;
  readonly start: number;
  readonly end: number;
}

/** Guest memory the kernel needs: its image at 1 MiB, and init_size bytes from where it decompresses itself. */
export function bzImageExtent(image: BzImage): LoadedBzImage {
  // A relocatable kernel loaded below pref_address (LOAD_PHYSICAL_ADDR) moves up to it before decompressing.
  const runtimeStart = Math.max(HIMEM_START, image.prefAddress);
  return {
    entry: BigInt(HIMEM_START + STARTUP_64_OFFSET),
    start: HIMEM_START,
    end: Math.max(HIMEM_START + image.protectedMode.length, runtimeStart + image.initSize),
  };
}

/** Copies the protected-mode kernel to HIMEM_START after checking guest RAM holds all it needs. */
export function loadBzImage(image: BzImage, mem: GuestMemory, memSize: number): LoadedBzImage {
  const extent = bzImageExtent(image);
  if (!isRam(mem, extent.start, extent.end - extent.start)) {
    throw new BootError(`kernel needs guest RAM up to ${hex(extent.end)} (${mib(extent.end)} MiB) to decompress, but the guest has ${mib(memSize)} MiB`);
  }
  copyToRam(mem, HIMEM_START, image.protectedMode);
  return extent;
}

/** Refuses a command line longer than the kernel reads (cmdline_size excludes the NUL). */
export function checkCmdline(image: BzImage, cmdlineLength: number): void {
  if (cmdlineLength > image.cmdlineSize) {
    throw new BootError(`command line is ${cmdlineLength} bytes but this kernel accepts at most ${image.cmdlineSize} (cmdline_size)`);
  }
}

/** What the zero page points at. */
export interface ZeroPageOptions {
  readonly cmdlineAddr: number;
  readonly rsdpAddr: number;
  readonly memSize: number;
  readonly initrd?: { readonly addr: number; readonly size: number };
}

/** Builds boot_params at ZERO_PAGE_START: the kernel's setup header plus what a boot loader fills in. */
export function writeZeroPage(mem: GuestMemory, image: BzImage, opts: ZeroPageOptions): void {
  const map = e820Map(opts.memSize);
  if (map.length > E820_MAX_ZEROPAGE) throw new BootError(`memory map has ${map.length} entries; the zero page holds ${E820_MAX_ZEROPAGE}`);
  const zp = new Struct(BP.size).set(BP.setupHeader, image.setupHeader);
  zp.u8(BP.typeOfLoader, TYPE_OF_LOADER_UNDEFINED)
    .u8(BP.loadflags, zp.bytes[BP.loadflags] | LOADED_HIGH | CAN_USE_HEAP)
    .u16(BP.heapEndPtr, HEAP_END_PTR)
    .u32(BP.cmdLinePtr, opts.cmdlineAddr)
    .u32(BP.ramdiskImage, opts.initrd?.addr ?? 0)
    .u32(BP.ramdiskSize, opts.initrd?.size ?? 0)
    .u64(BP.acpiRsdpAddr, opts.rsdpAddr)
    .u8(BP.e820Entries, map.length);
  map.forEach((e, i) => {
    const at = BP.e820Table + i * E820_ENTRY_SIZE;
    zp.u64(at, e.addr).u64(at + 8, e.size).u32(at + 16, e.type);
  });
  mem.write(ZERO_PAGE_START, zp.bytes);
}
