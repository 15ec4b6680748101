// The q35 chipset pieces guests rely on, placed on the port bus: i8042, CMOS RTC, ICH9 ACPI PM block, reset control, POST port.

import type { Bus, BusDevice } from '../devices/bus.js';
import type { IrqLine } from '../devices/irq.js';
import { AcpiPm } from '../devices/acpi-pm.js';
import { CmosRtc } from '../devices/cmos-rtc.js';
import { I8042 } from '../devices/i8042.js';
import { ResetControl } from '../devices/reset-control.js';
import type { VmFd } from './kvm/vm.js';
import type { Resettable, StatefulDevice } from './machine.js';
import { CMOS_PORT, I8042_COMMAND_PORT, I8042_DATA_PORT, LOW_RAM_MAX, PM_BASE, RESET_CONTROL_PORT, SCI_IRQ } from './layout.js';

/** Port 0x80 (POST codes) and 0xED (I/O delay): guests write them constantly; reading gives all-ones. */
const SINK: BusDevice = { read: (_o, d) => d.fill(0xff), write: () => {} };
const POST_PORT = 0x80;
const IO_DELAY_PORT = 0xed;
const PM_BLOCK_LEN = 0x30;

export interface ChipsetOptions {
  readonly pio: Bus;
  readonly vm: VmFd;
  readonly memSize: number;
  readonly resettables: Resettable[];
  /** Receives each chipset device's migration section. */
  readonly devices: StatefulDevice[];
  readonly onPowerOff: () => void;
  /** Lets an observer see an interrupt line (the device test mode). */
  readonly tapLine?: (gsi: number, inner: IrqLine) => IrqLine;
  readonly onReset: () => void;
}

export interface Chipset {
  pressPowerButton(): void;
}

const monotonicNs = () => process.hrtime.bigint();

export function addChipset(o: ChipsetOptions): Chipset {
  const rawSci = { set: (level: boolean) => o.vm.irqLine(SCI_IRQ, level) };
  const sci = o.tapLine?.(SCI_IRQ, rawSci) ?? rawSci;
  const pm = new AcpiPm({ sci, clock: monotonicNs, onPowerOff: o.onPowerOff });
  o.pio.register(PM_BASE, PM_BLOCK_LEN, pm, 'acpi-pm');

  const i8042 = new I8042({ onReset: o.onReset });
  o.pio.register(I8042_DATA_PORT, 1, i8042.dataPort, 'i8042-data');
  o.pio.register(I8042_COMMAND_PORT, 1, i8042.commandPort, 'i8042-command');

  const lowMem = Math.min(o.memSize, LOW_RAM_MAX);
  const rtc = new CmosRtc({ clock: () => new Date(), lowMem, highMem: o.memSize - lowMem });
  o.pio.register(CMOS_PORT, 2, rtc, 'cmos');

  const resetControl = new ResetControl({ onReset: o.onReset });
  o.pio.register(RESET_CONTROL_PORT, 1, resetControl, 'reset-control');
  o.pio.register(POST_PORT, 1, SINK, 'post');
  o.pio.register(IO_DELAY_PORT, 1, SINK, 'io-delay');

  const named: [string, { saveState(): unknown; restoreState(s: never): void }][] = [['acpi-pm', pm], ['i8042', i8042], ['cmos', rtc], ['reset-control', resetControl]];
  for (const [id, d] of named) {
    const restore = (s: unknown) => d.restoreState(s as never);
    const initial = d.saveState();
    o.resettables.push({ reset: () => restore(initial) });
    o.devices.push({ id, version: 1, saveState: () => d.saveState(), restoreState: restore });
  }
  return { pressPowerButton: () => pm.pressPowerButton() };
}
