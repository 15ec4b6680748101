// Every guest-physical address and port tsvirt's q35 machine uses, in one commented place.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const PAGE_SIZE = 4096;

/** Largest single guest-memory region (and KVM memory slot): Node views stay well under Buffer's limit. */
export const MAX_REGION_SIZE = 1 * GiB;

// --- Low memory: what the direct-boot loaders place below 1 MiB -----------------------------------
/** GDT used when tsvirt enters the kernel in protected or long mode. */
export const BOOT_GDT_START = 0x500;
/** IDT (empty) loaded with the GDT so a stray exception faults cleanly rather than using garbage. */
export const BOOT_IDT_START = 0x520;
/** PVH `hvm_start_info` (guest reads it through EBX). */
export const PVH_INFO_START = 0x6000;
/** PVH module list (one entry: the initrd). */
export const PVH_MODLIST_START = 0x6800;
/** PVH memory map (`hvm_memmap_table_entry` array). */
export const PVH_MEMMAP_START = 0x6c00;
/** Linux boot_params ("zero page") for bzImage boots. */
export const ZERO_PAGE_START = 0x7000;
/** Initial stack for a 64-bit bzImage entry (grows down from here). */
export const BOOT_STACK_POINTER = 0x8ff0;
/** Identity page tables for the 64-bit bzImage entry: PML4, PDPT, then four PDs mapping 4 GiB with 2 MiB pages. */
export const PML4_START = 0x9000;
export const PDPTE_START = 0xa000;
export const PDE_START = 0xb000;
/** Kernel command line. */
export const CMDLINE_START = 0x20000;
export const CMDLINE_MAX_SIZE = 0x10000;
/** Extended BIOS data area: reserved in the e820 map as PCs have it. */
export const EBDA_START = 0x9fc00;
/** The legacy VGA/ROM hole; reserved. */
export const VGA_HOLE_START = 0xa0000;
/** ACPI RSDP, inside the BIOS area Linux scans (0xE0000-0xFFFFF); the other tables follow it. */
export const ACPI_RSDP_START = 0xe0000;
export const ACPI_TABLES_START = 0xe0040;
export const ACPI_TABLES_END = 0xf0000;
/** MP table floating pointer and configuration table (for guests that do not use ACPI). */
export const MPTABLE_START = 0xf0000;
export const BIOS_AREA_END = 0x100000;
/** Where kernels are loaded: 1 MiB. */
export const HIMEM_START = 0x100000;

// --- The PCI hole below 4 GiB (q35) ----------------------------------------------------------------
/** RAM below 4 GiB stops here when the guest has more; the rest goes above 4 GiB, as QEMU's q35 does. */
export const LOW_RAM_MAX = 0x8000_0000;
/** PCIe ECAM (MMCONFIG) window for bus 0-255, described by the ACPI MCFG table. */
export const PCIE_ECAM_START = 0xb000_0000;
export const PCIE_ECAM_SIZE = 0x1000_0000;
/** 32-bit PCI MMIO window for BARs. */
export const PCI_MMIO32_START = 0xc000_0000;
export const PCI_MMIO32_END = 0xfec0_0000;
/** In-kernel IOAPIC and local APIC (KVM places them; guests find them in the MADT). */
export const IOAPIC_START = 0xfec0_0000;
export const LAPIC_START = 0xfee0_0000;
/** RAM above 4 GiB starts here. */
export const HIGH_RAM_START = 0x1_0000_0000;

// --- I/O ports -------------------------------------------------------------------------------------
export const COM1_PORT = 0x3f8;
export const COM1_IRQ = 4;
export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;
export const CMOS_PORT = 0x70;
/** ICH9 ACPI PM block: PM1a event (0x600), PM1a control (0x604), PM timer (0x608), GPE0 (0x620). */
export const PM_BASE = 0x600;
export const PM1A_EVT_PORT = PM_BASE;
export const PM1A_CNT_PORT = PM_BASE + 0x04;
export const PM_TMR_PORT = PM_BASE + 0x08;
export const GPE0_PORT = PM_BASE + 0x20;
export const GPE0_LEN = 0x10;
/** ACPI SCI interrupt, as on q35. */
export const SCI_IRQ = 9;
/** ICH9 reset control register. */
export const RESET_CONTROL_PORT = 0xcf9;
export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
export const PCI_CONFIG_DATA_PORT = 0xcfc;

/** One range of guest-physical RAM backed by one memfd and one KVM slot. */
export interface RamRange {
  readonly gpa: number;
  readonly size: number;
}

/** Splits `memSize` bytes of RAM into q35 ranges (below the PCI hole, then above 4 GiB), each at most 1 GiB. */
export function ramRanges(memSize: number): RamRange[] {
  const ranges: RamRange[] = [];
  const low = Math.min(memSize, LOW_RAM_MAX);
  const push = (start: number, size: number) => {
    for (let off = 0; off < size; off += MAX_REGION_SIZE) {
      ranges.push({ gpa: start + off, size: Math.min(MAX_REGION_SIZE, size - off) });
    }
  };
  push(0, low);
  if (memSize > low) push(HIGH_RAM_START, memSize - low);
  return ranges;
}

/** e820 entry types. */
export const E820_RAM = 1;
export const E820_RESERVED = 2;

export interface E820Entry {
  readonly addr: number;
  readonly size: number;
  readonly type: number;
}

/** The memory map every boot path hands the guest: RAM, with the EBDA, BIOS area and ECAM window reserved. */
export function e820Map(memSize: number): E820Entry[] {
  const low = Math.min(memSize, LOW_RAM_MAX);
  const map: E820Entry[] = [
    { addr: 0, size: EBDA_START, type: E820_RAM },
    { addr: EBDA_START, size: VGA_HOLE_START - EBDA_START, type: E820_RESERVED },
    { addr: ACPI_RSDP_START, size: BIOS_AREA_END - ACPI_RSDP_START, type: E820_RESERVED },
  ];
  if (low > HIMEM_START) map.push({ addr: HIMEM_START, size: low - HIMEM_START, type: E820_RAM });
  map.push({ addr: PCIE_ECAM_START, size: PCIE_ECAM_SIZE, type: E820_RESERVED });
  if (memSize > low) map.push({ addr: HIGH_RAM_START, size: memSize - low, type: E820_RAM });
  return map;
}
