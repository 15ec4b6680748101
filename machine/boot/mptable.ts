// The Intel MultiProcessor Specification 1.4 table, for guests (or acpi=off kernels) that find CPUs and IRQs without ACPI.

import type { GuestMemory } from '../../devices/guest-memory.js';
import { BootError } from '../errors.js';
import { BIOS_AREA_END, IOAPIC_START, LAPIC_START, MPTABLE_START, SCI_IRQ } from '../layout.js';
import { fixChecksum, Struct } from './bytes.js';

/** APIC ids are 8 bits and 0xff means "all": 255 processors at most. */
export const MPTABLE_MAX_CPUS = 255;
const SPEC_REV_1_4 = 4;
const FLOATING_POINTER_SIZE = 16;
const CONFIG_HEADER_SIZE = 44;
/** Entry types and sizes. */
export const MP_PROCESSOR = 0;
export const MP_BUS = 1;
export const MP_IOAPIC = 2;
export const MP_IOINTR = 3;
export const MP_LINTR = 4;
const PROCESSOR_ENTRY_SIZE = 20;
const OTHER_ENTRY_SIZE = 8;
/** Versions KVM's in-kernel local APIC and IOAPIC report. */
const LAPIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
const IOAPIC_ID = 0;
const CPU_ENABLED = 1 << 0;
const CPU_BOOTSTRAP = 1 << 1;
/** Family 6 model 0 stepping 0 with FPU and APIC feature bits: Linux reads only the APIC bit here. */
const CPU_SIGNATURE = 0x600;
const CPU_FEATURES = (1 << 0) | (1 << 9);
const ISA_BUS_ID = 0;
const INT_TYPE_INT = 0;
const INT_TYPE_NMI = 1;
const INT_TYPE_EXTINT = 3;
/** Flags: polarity and trigger "conform to the bus"; the SCI is active high, level triggered as in the MADT. */
const INT_CONFORMS = 0;
const INT_ACTIVE_HIGH_LEVEL = 0x0d;
const ALL_LAPICS = 0xff;

/** The ISA IRQ -> IOAPIC pin routes: identity, except IRQ0 on pin 2; IRQ2 is the 8259 cascade and never reaches the IOAPIC. */
function isaRoutes(): { irq: number; pin: number; flags: number }[] {
  const routes = [];
  for (let irq = 0; irq < 16; irq++) {
    if (irq === 2) continue;
    routes.push({ irq, pin: irq === 0 ? 2 : irq, flags: irq === SCI_IRQ ? INT_ACTIVE_HIGH_LEVEL : INT_CONFORMS });
  }
  return routes;
}

/** Writes the MP floating pointer at MPTABLE_START and the configuration table after it, for `cpus` processors. */
export function buildMpTable(mem: GuestMemory, cpus: number): void {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MPTABLE_MAX_CPUS) {
    throw new BootError(`MP table cannot describe ${cpus} vCPUs (1 to ${MPTABLE_MAX_CPUS})`);
  }
  const routes = isaRoutes();
  const entries = cpus + 1 + 1 + routes.length + 2;
  const length = CONFIG_HEADER_SIZE + cpus * PROCESSOR_ENTRY_SIZE + (entries - cpus) * OTHER_ENTRY_SIZE;
  const configAddr = MPTABLE_START + FLOATING_POINTER_SIZE;
  if (configAddr + length > BIOS_AREA_END) throw new BootError(`MP table for ${cpus} vCPUs does not fit below 0x${BIOS_AREA_END.toString(16)}`);

  const t = new Struct(length)
    .ascii(0, 'PCMP', 4).u16(4, length).u8(6, SPEC_REV_1_4)
    .ascii(8, 'TSVIRT', 8).ascii(16, 'q35', 12)
    .u16(34, entries).u32(36, LAPIC_START);
  let at = CONFIG_HEADER_SIZE;
  for (let id = 0; id < cpus; id++, at += PROCESSOR_ENTRY_SIZE) {
    t.u8(at, MP_PROCESSOR).u8(at + 1, id).u8(at + 2, LAPIC_VERSION)
      .u8(at + 3, CPU_ENABLED | (id === 0 ? CPU_BOOTSTRAP : 0))
      .u32(at + 4, CPU_SIGNATURE).u32(at + 8, CPU_FEATURES);
  }
  t.u8(at, MP_BUS).u8(at + 1, ISA_BUS_ID).ascii(at + 2, 'ISA', 6);
  at += OTHER_ENTRY_SIZE;
  t.u8(at, MP_IOAPIC).u8(at + 1, IOAPIC_ID).u8(at + 2, IOAPIC_VERSION).u8(at + 3, CPU_ENABLED).u32(at + 4, IOAPIC_START);
  at += OTHER_ENTRY_SIZE;
  for (const r of routes) {
    t.u8(at, MP_IOINTR).u8(at + 1, INT_TYPE_INT).u16(at + 2, r.flags).u8(at + 4, ISA_BUS_ID).u8(at + 5, r.irq).u8(at + 6, IOAPIC_ID).u8(at + 7, r.pin);
    at += OTHER_ENTRY_SIZE;
  }
  // The 8259 reaches the BSP through LINT0 (virtual wire mode); NMIs reach every CPU through LINT1.
  t.u8(at, MP_LINTR).u8(at + 1, INT_TYPE_EXTINT).u16(at + 2, INT_CONFORMS).u8(at + 4, ISA_BUS_ID).u8(at + 5, 0).u8(at + 6, 0).u8(at + 7, 0);
  at += OTHER_ENTRY_SIZE;
  t.u8(at, MP_LINTR).u8(at + 1, INT_TYPE_NMI).u16(at + 2, INT_CONFORMS).u8(at + 4, ISA_BUS_ID).u8(at + 5, 0).u8(at + 6, ALL_LAPICS).u8(at + 7, 1);
  fixChecksum(t.bytes, 7);

  // Feature bytes all zero: a configuration table is present, and the IMCR is absent (virtual wire mode).
  const fp = new Struct(FLOATING_POINTER_SIZE).ascii(0, '_MP_', 4).u32(4, configAddr).u8(8, 1).u8(9, SPEC_REV_1_4);
  fixChecksum(fp.bytes, 10);
  mem.write(MPTABLE_START, fp.bytes);
  mem.write(configAddr, t.bytes);
}
