// Reads the kernel and initrd named on the command line and boots them: firmware tables, images in RAM, the BSP's registers.

import * as fs from 'node:fs';
import { BootError } from './errors.js';
import type { VmConfig } from './config.js';
import { buildAcpiTables } from './boot/acpi.js';
import { buildMpTable } from './boot/mptable.js';
import { loadKernel } from './boot/loader.js';
import type { Machine } from './machine.js';

/** The boot files, read once at start (a reset reloads them from these bytes). */
export interface BootImages {
  readonly kernel: Uint8Array;
  readonly initrd?: Uint8Array;
}

function readImage(flag: string, path: string): Uint8Array {
  try {
    return fs.readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new BootError(`-${flag}: cannot read ${path}: ${why}`);
  }
}

export function readBootImages(config: VmConfig): BootImages {
  if (!config.kernel) throw new BootError('-kernel: a kernel is required');
  const kernel = readImage('kernel', config.kernel);
  const initrd = config.initrd ? readImage('initrd', config.initrd) : undefined;
  return { kernel, initrd };
}

/** FPU control word and MXCSR at power-on, as the boot protocol's 64-bit entry expects them. */
const FPU_FCW = 0x37f;
const MXCSR = 0x1f80;
/** LAPIC LVT LINT0/LINT1 offsets and delivery modes: LINT0 as ExtINT (PIC virtual wire), LINT1 as NMI. */
const APIC_LVT0 = 0x350;
const APIC_LVT1 = 0x360;
const APIC_MODE_EXTINT = 0x7;
const APIC_MODE_NMI = 0x4;

function setLint(lapic: Uint8Array): Uint8Array {
  const dv = new DataView(lapic.buffer, lapic.byteOffset, lapic.byteLength);
  const setMode = (off: number, mode: number) => dv.setUint32(off, (dv.getUint32(off, true) & ~0x700) | (mode << 8), true);
  setMode(APIC_LVT0, APIC_MODE_EXTINT);
  setMode(APIC_LVT1, APIC_MODE_NMI);
  return lapic;
}

/** Loads firmware tables and the kernel into RAM and points the boot vCPU at the kernel's entry. */
export function bootGuest(machine: Machine, config: VmConfig, images: BootImages): void {
  const mem = machine.memory;
  const { rsdpAddr } = buildAcpiTables(mem, { cpus: config.cpus, memSize: config.memSize });
  buildMpTable(mem, config.cpus);
  const plan = loadKernel(images.kernel, mem, { cmdline: config.append, initrd: images.initrd, memSize: config.memSize, rsdpAddr });
  for (const v of machine.vcpus) {
    v.fd.setLapic(setLint(v.fd.getLapic()));
  }
  const bsp = machine.vcpus[0].fd;
  const fpu = bsp.getFpu();
  const dv = new DataView(fpu.buffer);
  dv.setUint16(128, FPU_FCW, true); // kvm_fpu.fcw
  dv.setUint32(408, MXCSR, true);
  bsp.setFpu(fpu);
  bsp.setSregs(plan.cpu.sregs);
  bsp.setRegs({ rax: 0n, rcx: 0n, rdx: 0n, ...plan.cpu.regs });
  machine.log.info(`boot: ${plan.kind} kernel entry 0x${plan.entry.toString(16)}, ${config.cpus} vCPU(s), ${Math.floor(config.memSize / 2 ** 20)} MiB`);
}
