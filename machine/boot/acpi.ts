// ACPI tables for tsvirt's q35 machine: RSDP, XSDT and RSDT, FADT with FACS and DSDT, MADT and MCFG, in the BIOS area.

import type { GuestMemory } from '../../devices/guest-memory.js';
import { BootError } from '../errors.js';
import {
  ACPI_RSDP_START, ACPI_TABLES_END, ACPI_TABLES_START, GPE0_LEN, GPE0_PORT, IOAPIC_START, LAPIC_START,
  PCIE_ECAM_START, PM1A_CNT_PORT, PM1A_EVT_PORT, PM_TMR_PORT, RESET_CONTROL_PORT, SCI_IRQ,
} from '../layout.js';
import { fixChecksum, Struct } from './bytes.js';
import { dsdtBody } from './dsdt.js';

export const OEM_ID = 'TSVIRT';
const OEM_REVISION = 1;
const CREATOR_ID = 'TSVT';
const CREATOR_REVISION = 1;
/** Every description table starts with this 36-byte header. */
export const SDT_HEADER_SIZE = 36;
/** xAPIC ids are 8 bits and 0xff is the broadcast id. */
export const MAX_CPUS = 255;

/** FADT offsets (ACPI 6.0 table 5-33) and the values tsvirt puts there. */
export const FADT = {
  revision: 6, minorRevision: 0, size: 276,
  firmwareCtrl: 36, dsdt: 40, sciInt: 46, smiCmd: 48,
  pm1aEvtBlk: 56, pm1aCntBlk: 64, pmTmrBlk: 76, gpe0Blk: 80,
  pm1EvtLen: 88, pm1CntLen: 89, pmTmrLen: 91, gpe0BlkLen: 92,
  pLvl2Lat: 96, pLvl3Lat: 98, iapcBootArch: 109, flags: 112,
  resetReg: 116, resetValue: 128, minorVersion: 131,
  xFirmwareCtrl: 132, xDsdt: 140, xPm1aEvtBlk: 148, xPm1aCntBlk: 172, xPmTmrBlk: 208, xGpe0Blk: 220,
} as const;
/** FADT flags (ACPI 6.0 table 5-34). */
export const FADT_WBINVD = 1 << 0;
export const FADT_PROC_C1 = 1 << 2;
export const FADT_PWR_BUTTON = 1 << 4;
export const FADT_SLP_BUTTON = 1 << 5;
export const FADT_TMR_VAL_EXT = 1 << 8;
export const FADT_RESET_REG_SUP = 1 << 10;
/** IA-PC boot architecture flags. */
export const IAPC_LEGACY_DEVICES = 1 << 0;
export const IAPC_8042 = 1 << 1;
export const IAPC_VGA_NOT_PRESENT = 1 << 2;
/** ICH9 RST_CNT: SYS_RST | RST_CPU, a hard reset. */
export const RESET_VALUE = 0x06;
const GAS_SYSTEM_IO = 1;
/** C2/C3 latencies above 100/1000 us say "not supported": a vCPU has no deep C-states to offer. */
const NO_C2_C3 = 0x0fff;

/** MADT structure types and flags. */
export const MADT_LOCAL_APIC = 0;
export const MADT_IO_APIC = 1;
export const MADT_INTERRUPT_OVERRIDE = 2;
export const MADT_LOCAL_APIC_NMI = 4;
const MADT_PCAT_COMPAT = 1;
const MADT_ENABLED = 1;
/** MPS INTI flags: active high (01) and level triggered (11 << 2). */
const INTI_ACTIVE_HIGH_LEVEL = 0x0d;
const ALL_PROCESSORS = 0xff;

/** Where the tables were put; the kernel is told the RSDP address. */
export interface AcpiTables {
  readonly rsdpAddr: number;
}

/** Builds one description table: header fields, length and checksum around a filled-in body. */
function sdt(signature: string, revision: number, length: number, fill: (s: Struct) => void): Uint8Array {
  const s = new Struct(length)
    .ascii(0, signature, 4)
    .u32(4, length)
    .u8(8, revision)
    .ascii(10, OEM_ID, 6)
    .ascii(16, `TSVT${signature}`, 8)
    .u32(24, OEM_REVISION)
    .ascii(28, CREATOR_ID, 4)
    .u32(32, CREATOR_REVISION);
  fill(s);
  fixChecksum(s.bytes, 9);
  return s.bytes;
}

/** Firmware ACPI Control Structure: no checksum; required (with a zero waking vector) on non-hardware-reduced machines. */
function facs(): Uint8Array {
  return new Struct(64).ascii(0, 'FACS', 4).u32(4, 64).u8(32, 2).bytes;
}

function dsdt(): Uint8Array {
  const body = dsdtBody();
  // Revision 2: integers in the namespace are 64 bits wide.
  return sdt('DSDT', 2, SDT_HEADER_SIZE + body.length, (s) => s.set(SDT_HEADER_SIZE, body));
}

/** A Generic Address Structure for an I/O-port register block (access size left "legacy", as QEMU does). */
function ioGas(s: Struct, offset: number, port: number, bytes: number): void {
  s.u8(offset, GAS_SYSTEM_IO).u8(offset + 1, bytes * 8).u8(offset + 2, 0).u8(offset + 3, 0).u64(offset + 4, port);
}

/** The FADT for the ICH9 PM block. SMI_CMD 0 tells the OS ACPI is always on; the PM device must report SCI_EN set. */
function fadt(facsAddr: number, dsdtAddr: number): Uint8Array {
  return sdt('FACP', FADT.revision, FADT.size, (s) => {
    s.u32(FADT.firmwareCtrl, facsAddr).u32(FADT.dsdt, dsdtAddr)
      .u16(FADT.sciInt, SCI_IRQ).u32(FADT.smiCmd, 0)
      .u32(FADT.pm1aEvtBlk, PM1A_EVT_PORT).u32(FADT.pm1aCntBlk, PM1A_CNT_PORT)
      .u32(FADT.pmTmrBlk, PM_TMR_PORT).u32(FADT.gpe0Blk, GPE0_PORT)
      .u8(FADT.pm1EvtLen, 4).u8(FADT.pm1CntLen, 2).u8(FADT.pmTmrLen, 4).u8(FADT.gpe0BlkLen, GPE0_LEN)
      .u16(FADT.pLvl2Lat, NO_C2_C3).u16(FADT.pLvl3Lat, NO_C2_C3)
      .u16(FADT.iapcBootArch, IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT)
      // PWR_BUTTON clear: the power button is the fixed-feature one. SLP_BUTTON set: there is no sleep button.
      // TMR_VAL_EXT clear: the PM timer is 24 bits.
      .u32(FADT.flags, FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP)
      .u8(FADT.resetValue, RESET_VALUE)
      .u8(FADT.minorVersion, FADT.minorRevision)
      .u64(FADT.xFirmwareCtrl, facsAddr).u64(FADT.xDsdt, dsdtAddr);
    ioGas(s, FADT.resetReg, RESET_CONTROL_PORT, 1);
    ioGas(s, FADT.xPm1aEvtBlk, PM1A_EVT_PORT, 4);
    ioGas(s, FADT.xPm1aCntBlk, PM1A_CNT_PORT, 2);
    ioGas(s, FADT.xPmTmrBlk, PM_TMR_PORT, 4);
    ioGas(s, FADT.xGpe0Blk, GPE0_PORT, GPE0_LEN);
  });
}

/** MADT: one local APIC per vCPU (APIC id = index), the IOAPIC at GSI 0, the ISA overrides and LINT1 as NMI. */
function madt(cpus: number): Uint8Array {
  const overrides = [
    // The PIT's IRQ 0 is wired to IOAPIC pin 2, as on every PC since the IOAPIC arrived.
    { irq: 0, gsi: 2, flags: 0 },
    // The SCI is a level-triggered, active-high interrupt on q35.
    { irq: SCI_IRQ, gsi: SCI_IRQ, flags: INTI_ACTIVE_HIGH_LEVEL },
  ];
  const length = SDT_HEADER_SIZE + 8 + cpus * 8 + 12 + overrides.length * 10 + 6;
  return sdt('APIC', 4, length, (s) => {
    s.u32(36, LAPIC_START).u32(40, MADT_PCAT_COMPAT);
    let at = 44;
    for (let id = 0; id < cpus; id++, at += 8) {
      s.u8(at, MADT_LOCAL_APIC).u8(at + 1, 8).u8(at + 2, id).u8(at + 3, id).u32(at + 4, MADT_ENABLED);
    }
    s.u8(at, MADT_IO_APIC).u8(at + 1, 12).u8(at + 2, 0).u32(at + 4, IOAPIC_START).u32(at + 8, 0);
    at += 12;
    for (const o of overrides) {
      s.u8(at, MADT_INTERRUPT_OVERRIDE).u8(at + 1, 10).u8(at + 2, 0).u8(at + 3, o.irq).u32(at + 4, o.gsi).u16(at + 8, o.flags);
      at += 10;
    }
    s.u8(at, MADT_LOCAL_APIC_NMI).u8(at + 1, 6).u8(at + 2, ALL_PROCESSORS).u16(at + 3, 0).u8(at + 5, 1);
  });
}

/** MCFG: the ECAM window for segment 0, buses 0-255. */
function mcfg(): Uint8Array {
  return sdt('MCFG', 1, SDT_HEADER_SIZE + 8 + 16, (s) => {
    s.u64(44, PCIE_ECAM_START).u16(52, 0).u8(54, 0).u8(55, 0xff);
  });
}

function xsdt(tables: number[]): Uint8Array {
  return sdt('XSDT', 1, SDT_HEADER_SIZE + tables.length * 8, (s) => tables.forEach((a, i) => s.u64(SDT_HEADER_SIZE + i * 8, a)));
}

function rsdt(tables: number[]): Uint8Array {
  return sdt('RSDT', 1, SDT_HEADER_SIZE + tables.length * 4, (s) => tables.forEach((a, i) => s.u32(SDT_HEADER_SIZE + i * 4, a)));
}

/** RSDP revision 2: the first 20 bytes have their own checksum for ACPI 1.0 readers, all 36 the extended one. */
function rsdp(rsdtAddr: number, xsdtAddr: number): Uint8Array {
  const s = new Struct(36).ascii(0, 'RSD PTR ', 8).ascii(9, OEM_ID, 6).u8(15, 2).u32(16, rsdtAddr).u32(20, 36).u64(24, xsdtAddr);
  fixChecksum(s.bytes.subarray(0, 20), 8);
  fixChecksum(s.bytes, 32);
  return s.bytes;
}

/** Places tables one after another from ACPI_TABLES_START, refusing to run past ACPI_TABLES_END. */
class TableArea {
  private next = ACPI_TABLES_START;
  constructor(private readonly mem: GuestMemory) {}

  put(table: Uint8Array, align = 8): number {
    const addr = Math.ceil(this.next / align) * align;
    if (addr + table.length > ACPI_TABLES_END) {
      throw new BootError(`ACPI tables do not fit below 0x${ACPI_TABLES_END.toString(16)} (${table.length}-byte table at 0x${addr.toString(16)})`);
    }
    this.mem.write(addr, table);
    this.next = addr + table.length;
    return addr;
  }
}

/**
 * Writes the ACPI tables for `cpus` vCPUs between ACPI_RSDP_START and ACPI_TABLES_END and returns the RSDP
 * address. `memSize` is accepted for the memory-dependent tables to come (SRAT, a 64-bit PCI window); none
 * of today's tables depend on it.
 */
export function buildAcpiTables(mem: GuestMemory, opts: { cpus: number; memSize: number }): AcpiTables {
  if (!Number.isInteger(opts.cpus) || opts.cpus < 1 || opts.cpus > MAX_CPUS) {
    throw new BootError(`ACPI MADT cannot describe ${opts.cpus} vCPUs (1 to ${MAX_CPUS})`);
  }
  const area = new TableArea(mem);
  const facsAddr = area.put(facs(), 64); // the FACS must be 64-byte aligned
  const dsdtAddr = area.put(dsdt());
  const described = [area.put(fadt(facsAddr, dsdtAddr)), area.put(madt(opts.cpus)), area.put(mcfg())];
  const xsdtAddr = area.put(xsdt(described));
  const rsdtAddr = area.put(rsdt(described));
  mem.write(ACPI_RSDP_START, rsdp(rsdtAddr, xsdtAddr));
  return { rsdpAddr: ACPI_RSDP_START };
}
