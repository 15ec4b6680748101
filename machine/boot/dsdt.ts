// The AML body of tsvirt's DSDT: the soft-off sleep state, the q35 PCIe host bridge and the legacy ISA devices.

import {
  COM1_IRQ, COM1_PORT, CMOS_PORT, I8042_COMMAND_PORT, I8042_DATA_PORT, PCI_CONFIG_ADDRESS_PORT,
  PCI_MMIO32_END, PCI_MMIO32_START, PCIE_ECAM_SIZE, PCIE_ECAM_START,
} from '../layout.js';
import { concatBytes } from './bytes.js';
import {
  device, dwordMemory, eisaId, integer, ioPorts, irqNoFlags, memory32Fixed, name, pkg, resourceTemplate,
  scope, wordBusNumber, wordIo, type Aml,
} from './aml.js';

const RTC_IRQ = 8;
const KEYBOARD_IRQ = 1;
const PCI_CONFIG_PORTS = 8;

/**
 * \_S5: SLP_TYP 0 for PM1a and PM1b, as QEMU's q35 declares soft-off, so writing SLP_TYP=0 with SLP_EN to
 * PM1a_CNT is how the guest asks to power off.
 */
function sleepStates(): Aml {
  return name('\\_S5', pkg([integer(0), integer(0), integer(0), integer(0)]));
}

/** \_SB.PCI0: the PCIe host bridge, and the bus, port and 32-bit MMIO windows it passes to its devices. */
function pciHostBridge(): Aml {
  return device('PCI0', [
    name('_HID', eisaId('PNP0A08')),
    name('_CID', eisaId('PNP0A03')),
    name('_SEG', integer(0)),
    name('_BBN', integer(0)),
    name('_UID', integer(0)),
    name('_CRS', resourceTemplate([
      wordBusNumber(0x00, 0xff),
      // The config address/data ports belong to the bridge itself; the windows skip them.
      ioPorts(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORTS),
      wordIo(0x0000, PCI_CONFIG_ADDRESS_PORT - 1),
      wordIo(0x0d00, 0xffff),
      dwordMemory(PCI_MMIO32_START, PCI_MMIO32_END - 1),
    ])),
  ]);
}

/** Motherboard resources: Linux trusts the MCFG's ECAM window once a PNP0C02 device reserves it. */
function ecamReservation(): Aml {
  return device('MRES', [
    name('_HID', eisaId('PNP0C02')),
    name('_UID', integer(0)),
    name('_CRS', resourceTemplate([memory32Fixed(PCIE_ECAM_START, PCIE_ECAM_SIZE)])),
  ]);
}

function com1(): Aml {
  return device('COM1', [
    name('_HID', eisaId('PNP0501')),
    name('_UID', integer(1)),
    name('_CRS', resourceTemplate([ioPorts(COM1_PORT, 8), irqNoFlags(COM1_IRQ)])),
  ]);
}

function rtc(): Aml {
  return device('RTC', [
    name('_HID', eisaId('PNP0B00')),
    name('_CRS', resourceTemplate([ioPorts(CMOS_PORT, 2), irqNoFlags(RTC_IRQ)])),
  ]);
}

function keyboard(): Aml {
  return device('KBD', [
    name('_HID', eisaId('PNP0303')),
    name('_CRS', resourceTemplate([ioPorts(I8042_DATA_PORT, 1), ioPorts(I8042_COMMAND_PORT, 1), irqNoFlags(KEYBOARD_IRQ)])),
  ]);
}

/** The DSDT's definition block body (everything after the table header). */
export function dsdtBody(): Aml {
  return concatBytes([
    sleepStates(),
    scope('\\_SB', [pciHostBridge(), ecamReservation(), com1(), rtc(), keyboard()]),
  ]);
}
