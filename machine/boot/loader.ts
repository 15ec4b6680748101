// Loads a kernel for a direct boot: picks bzImage or PVH ELF, places the initrd and command line, and returns the boot plan.

import type { GuestMemory } from '../../devices/guest-memory.js';
import { BootError } from '../errors.js';
import { CMDLINE_MAX_SIZE, CMDLINE_START, LOW_RAM_MAX, PAGE_SIZE } from '../layout.js';
import { hex, mib } from './bytes.js';
import { bzImageExtent, checkCmdline, isBzImage, loadBzImage, parseBzImage, writeZeroPage } from './bzimage.js';
import { setupBootCpu, type BootCpuState, type BootKind } from './cpu-setup.js';
import { isElf, loadElf, loadSegments, parseElf } from './elf.js';
import { findPvhEntry, writeStartInfo } from './pvh.js';
import { copyToRam, isRam } from './ram.js';

/** What loadKernel needs besides the kernel image. */
export interface LoadKernelOptions {
  readonly cmdline: string;
  /** Placed at the top of low RAM; an empty one counts as none. */
  readonly initrd?: Uint8Array;
  /** Guest RAM size in bytes: the memory map handed to the kernel is built from it. */
  readonly memSize: number;
  /** Where buildAcpiTables put the RSDP. */
  readonly rsdpAddr: number;
}

/** A guest-physical byte range. */
export interface GuestRange {
  readonly addr: number;
  readonly size: number;
}

/** Everything the machine needs to start the boot vCPU, and where the loader put things (for logs and tests). */
export interface BootPlan {
  readonly kind: BootKind;
  readonly entry: bigint;
  /** Initial state for the BSP only. */
  readonly cpu: BootCpuState;
  /** Memory the kernel occupies or needs before it reads the memory map. */
  readonly kernel: GuestRange;
  readonly cmdline: GuestRange;
  readonly initrd?: GuestRange;
}

/** A kernel format's loader, once validated: nothing has been written to guest memory yet. */
interface PreparedKernel {
  readonly kind: BootKind;
  readonly kernelEnd: number;
  /** Highest address (exclusive) the initrd may reach. */
  readonly initrdLimit: number;
  load(): { entry: bigint; start: number; end: number };
  writeBootInfo(info: { cmdlineAddr: number; initrd?: GuestRange }): void;
}

function lowRamEnd(memSize: number): number {
  return Math.min(memSize, LOW_RAM_MAX);
}

function prepareElf(kernel: Uint8Array, mem: GuestMemory, opts: LoadKernelOptions): PreparedKernel {
  const elf = parseElf(kernel);
  const segments = loadSegments(kernel, elf);
  const entry = findPvhEntry(kernel, elf);
  if (entry === undefined) {
    throw new BootError('ELF kernel has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); tsvirt boots ELF kernels only through PVH');
  }
  return {
    kind: 'pvh',
    kernelEnd: Math.max(...segments.map((s) => s.paddr + s.memsz)),
    initrdLimit: lowRamEnd(opts.memSize),
    load: () => ({ ...loadElf(kernel, elf, mem), entry: BigInt(entry) }),
    writeBootInfo: ({ cmdlineAddr, initrd }) => writeStartInfo(mem, { cmdlineAddr, initrd, rsdpAddr: opts.rsdpAddr, memSize: opts.memSize }),
  };
}

function prepareBzImage(kernel: Uint8Array, mem: GuestMemory, opts: LoadKernelOptions, cmdlineLength: number): PreparedKernel {
  const image = parseBzImage(kernel);
  checkCmdline(image, cmdlineLength);
  return {
    kind: 'linux64',
    kernelEnd: bzImageExtent(image).end,
    // initrd_addr_max is the highest address the initrd's last byte may occupy.
    initrdLimit: Math.min(lowRamEnd(opts.memSize), image.initrdAddrMax + 1),
    load: () => loadBzImage(image, mem, opts.memSize),
    writeBootInfo: ({ cmdlineAddr, initrd }) => writeZeroPage(mem, image, { cmdlineAddr, initrd, rsdpAddr: opts.rsdpAddr, memSize: opts.memSize }),
  };
}

function prepare(kernel: Uint8Array, mem: GuestMemory, opts: LoadKernelOptions, cmdlineLength: number): PreparedKernel {
  if (kernel.length === 0) throw new BootError('kernel image is empty');
  if (isElf(kernel)) return prepareElf(kernel, mem, opts);
  if (isBzImage(kernel)) return prepareBzImage(kernel, mem, opts, cmdlineLength);
  const size = kernel.length < 1024 ? ` (only ${kernel.length} bytes)` : '';
  throw new BootError(`kernel is neither a bzImage nor an ELF with a PVH entry note${size}`);
}

/** The highest page-aligned place for the initrd below `limit` and above the kernel, as QEMU and Firecracker choose. */
function placeInitrd(size: number, kernel: PreparedKernel, memSize: number): GuestRange {
  const addr = Math.floor((kernel.initrdLimit - size) / PAGE_SIZE) * PAGE_SIZE;
  if (addr < kernel.kernelEnd) {
    throw new BootError(`initrd (${mib(size)} MiB) does not fit in guest memory (${mib(memSize)} MiB)`);
  }
  return { addr, size };
}

/**
 * Loads `kernel` (a bzImage with a 64-bit entry, or an ELF with a PVH note) into `mem`, with its initrd, command
 * line and boot information, and returns the boot vCPU's plan. Every check runs before the first write, so a
 * refused kernel leaves guest memory as it was.
 */
export function loadKernel(kernel: Uint8Array, mem: GuestMemory, opts: LoadKernelOptions): BootPlan {
  const cmdlineBytes = new TextEncoder().encode(opts.cmdline);
  if (cmdlineBytes.includes(0)) throw new BootError('command line contains a NUL byte');
  if (cmdlineBytes.length + 1 > CMDLINE_MAX_SIZE) {
    throw new BootError(`command line is ${cmdlineBytes.length} bytes; at most ${CMDLINE_MAX_SIZE - 1} fit at ${hex(CMDLINE_START)}`);
  }
  const prepared = prepare(kernel, mem, opts, cmdlineBytes.length);
  const initrd = opts.initrd?.length ? placeInitrd(opts.initrd.length, prepared, opts.memSize) : undefined;
  if (initrd && !isRam(mem, initrd.addr, initrd.size)) {
    throw new BootError(`initrd at ${hex(initrd.addr)} (${mib(initrd.size)} MiB) is not backed by guest RAM`);
  }

  const loaded = prepared.load();
  if (initrd && opts.initrd) copyToRam(mem, initrd.addr, opts.initrd);
  const cmdline = { addr: CMDLINE_START, size: cmdlineBytes.length + 1 };
  mem.write(CMDLINE_START, Uint8Array.from([...cmdlineBytes, 0]));
  prepared.writeBootInfo({ cmdlineAddr: cmdline.addr, initrd });
  return {
    kind: prepared.kind,
    entry: loaded.entry,
    cpu: setupBootCpu(mem, prepared.kind, loaded.entry),
    kernel: { addr: loaded.start, size: loaded.end - loaded.start },
    cmdline,
    ...(initrd ? { initrd } : {}),
  };
}
