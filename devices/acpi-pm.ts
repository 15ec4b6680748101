// The ICH9 ACPI PM I/O block at PMBASE (0x600) as tsvirt's FADT describes it: PM1a event/control, the PM timer, GPE0, and the SCI.

import { TsvirtError } from '../machine/errors.js';
import type { BusDevice } from './bus.js';
import type { IrqLine } from './irq.js';

// Byte offsets from PMBASE.
const PM1_STS = 0x00; // 16-bit, write 1 to clear
const PM1_EN = 0x02; // 16-bit
const PM1_CNT = 0x04; // 32-bit on ICH9; only the low 16 bits are defined
const PM_TMR = 0x08; // 32-bit read, 24 bits counting
const GPE0_STS = 0x20; // 64-bit, write 1 to clear
const GPE0_EN = 0x28; // 64-bit
/** Bytes the block decodes; registers ICH9 has between PM_TMR and GPE0 read as zero here. */
export const ACPI_PM_LEN = 0x30;
const GPE0_BYTES = 8;

const STS_TMR = 1 << 0;
const STS_PWRBTN = 1 << 8;
const STS_WAK = 1 << 15;
/** The status bits this model can hold: TMR and PWRBTN it sets, WAK is the one resume would set. */
const STS_MODELLED = STS_TMR | STS_PWRBTN | STS_WAK;
const EN_TMR = 1 << 0;
const EN_GBL = 1 << 5;
const EN_PWRBTN = 1 << 8;
const EN_RTC = 1 << 10;
const EN_PCIEXPWAK_DIS = 1 << 14;
const EN_WRITABLE = EN_TMR | EN_GBL | EN_PWRBTN | EN_RTC | EN_PCIEXPWAK_DIS;
/** Status bits that assert the SCI when their enable bit is set (bit 14 of PM1_EN is a disable, not an enable). */
const PM1_SCI_SOURCES = EN_TMR | EN_GBL | EN_PWRBTN | EN_RTC;

const CNT_SCI_EN = 1 << 0;
const CNT_BM_RLD = 1 << 1;
const CNT_SLP_TYP_SHIFT = 10;
const CNT_SLP_TYP = 7 << CNT_SLP_TYP_SHIFT;
const CNT_SLP_EN = 1 << 13;
// SCI_EN is fixed at 1, GBL_RLS and SLP_EN are write-only strobes: only these are stored.
const CNT_STORED = CNT_BM_RLD | CNT_SLP_TYP;
/** The SLP_TYP tsvirt's DSDT gives for \_S5, as QEMU's q35 does. */
const SLP_TYP_S5 = 0;

/** The ACPI PM timer's rate, in Hz, per the ACPI specification. */
export const PM_TIMER_HZ = 3_579_545n;
const NS_PER_S = 1_000_000_000n;
const TMR_MASK = 0xff_ffffn;
const TMR_MSB_SHIFT = 23n;

/** The PM block's migration section. */
export interface AcpiPmState {
  pm1Status: number;
  pm1Enable: number;
  /** Stored PM1_CNT bits (BM_RLD, SLP_TYP). */
  pm1Control: number;
  /** PM_TMR when saved; the timer continues from it on restore. */
  timer: number;
  gpe0Status: number[];
  gpe0Enable: number[];
}

/** A PM-block snapshot that cannot be loaded; `field` names the offending member. */
export class AcpiPmStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `acpi-pm state: ${field} ${message}`);
    this.field = field;
  }
}

function checkInt(field: string, v: unknown, mask: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > mask || (v & ~mask) !== 0) {
    throw new AcpiPmStateError(field, `must be an integer within mask 0x${mask.toString(16)}`);
  }
  return v;
}

function checkBytes(field: string, v: unknown): number[] {
  if (!Array.isArray(v) || v.length !== GPE0_BYTES) throw new AcpiPmStateError(field, `must be an array of ${GPE0_BYTES} bytes`);
  return v.map((b: unknown, i: number) => checkInt(`${field}[${i}]`, b, 0xff));
}

/** What the machine wires to the PM block. */
export interface AcpiPmOptions {
  /** The SCI (IRQ 9), level-triggered: high while any enabled status bit is set. */
  sci: IrqLine;
  /** A monotonic clock in ns (e.g. `process.hrtime.bigint`), for PM_TMR. */
  clock: () => bigint;
  /** The guest asked for soft-off (S5). */
  onPowerOff: () => void;
  /** Told about requests the model declines, such as sleep states other than S5. */
  log?: (message: string) => void;
}

/**
 * One BusDevice for PMBASE..PMBASE+0x2F. Accesses of any width at any offset are split into bytes,
 * as ICH9 decodes them (a 32-bit read at 0x600 returns STS | EN << 16), with the timer sampled
 * once per access. TMR_STS tracks PM_TMR bit 23 toggling, but is only noticed (and can only assert
 * the SCI) on an access: the model has no timers, and guests use the PM timer as a clock, not an
 * interrupt source.
 */
export class AcpiPm implements BusDevice {
  private pm1Status = 0;
  private pm1Enable = 0;
  private pm1Control = 0;
  private gpe0Status = new Array<number>(GPE0_BYTES).fill(0);
  private gpe0Enable = new Array<number>(GPE0_BYTES).fill(0);
  /** Added to the clock's tick count so PM_TMR starts at 0 and continues across migration. */
  private tickOffset: bigint;
  private lastMsbEpoch: bigint;
  private sciLevel = false;
  private readonly sci: IrqLine;
  private readonly clock: () => bigint;
  private readonly onPowerOff: () => void;
  private readonly log: (message: string) => void;

  constructor(options: AcpiPmOptions) {
    this.sci = options.sci;
    this.clock = options.clock;
    this.onPowerOff = options.onPowerOff;
    this.log = options.log ?? (() => {});
    this.tickOffset = -this.clockTicks();
    this.lastMsbEpoch = 0n;
  }

  /** Sets PWRBTN_STS, asserting the SCI if the guest enabled PWRBTN_EN. */
  pressPowerButton(): void {
    this.pm1Status |= STS_PWRBTN;
    this.updateSci();
  }

  /** Sets GPE0 status bit `bit` (0-63), for hotplug-style events; asserts the SCI if enabled. */
  raiseGpe(bit: number): void {
    if (!Number.isInteger(bit) || bit < 0 || bit >= GPE0_BYTES * 8) throw new RangeError(`GPE0 bit ${bit} out of range`);
    this.gpe0Status[bit >> 3] |= 1 << (bit & 7);
    this.updateSci();
  }

  read(offset: number, data: Uint8Array): void {
    const ticks = this.refreshTimerStatus();
    const timer = Number(ticks & TMR_MASK);
    for (let i = 0; i < data.length; i++) data[i] = this.readByte(offset + i, timer);
    this.updateSci();
  }

  write(offset: number, data: Uint8Array): void {
    this.refreshTimerStatus();
    let sleep = false;
    for (let i = 0; i < data.length; i++) sleep = this.writeByte(offset + i, data[i]) || sleep;
    this.updateSci();
    if (sleep) this.sleep();
  }

  /** The migration snapshot. */
  saveState(): AcpiPmState {
    const ticks = this.refreshTimerStatus();
    return {
      pm1Status: this.pm1Status,
      pm1Enable: this.pm1Enable,
      pm1Control: this.pm1Control,
      timer: Number(ticks & TMR_MASK),
      gpe0Status: [...this.gpe0Status],
      gpe0Enable: [...this.gpe0Enable],
    };
  }

  /** Loads a snapshot after validating all of it; the timer resumes from the saved count, the SCI follows the restored bits. */
  restoreState(state: AcpiPmState): void {
    const s = state as unknown as Record<string, unknown>;
    if (typeof s !== 'object' || s === null) throw new AcpiPmStateError('state', 'must be an object');
    const pm1Status = checkInt('pm1Status', s.pm1Status, STS_MODELLED);
    const pm1Enable = checkInt('pm1Enable', s.pm1Enable, EN_WRITABLE);
    const pm1Control = checkInt('pm1Control', s.pm1Control, CNT_STORED);
    const timer = checkInt('timer', s.timer, Number(TMR_MASK));
    const gpe0Status = checkBytes('gpe0Status', s.gpe0Status);
    const gpe0Enable = checkBytes('gpe0Enable', s.gpe0Enable);
    this.pm1Status = pm1Status;
    this.pm1Enable = pm1Enable;
    this.pm1Control = pm1Control;
    this.gpe0Status = gpe0Status;
    this.gpe0Enable = gpe0Enable;
    this.tickOffset = BigInt(timer) - this.clockTicks();
    this.lastMsbEpoch = BigInt(timer) >> TMR_MSB_SHIFT;
    this.updateSci(true);
  }

  private readByte(offset: number, timer: number): number {
    if (offset >= PM1_STS && offset < PM1_STS + 2) return byteOf(this.pm1Status, offset - PM1_STS);
    if (offset >= PM1_EN && offset < PM1_EN + 2) return byteOf(this.pm1Enable, offset - PM1_EN);
    if (offset >= PM1_CNT && offset < PM1_CNT + 4) return byteOf(this.pm1Control | CNT_SCI_EN, offset - PM1_CNT);
    if (offset >= PM_TMR && offset < PM_TMR + 4) return byteOf(timer, offset - PM_TMR);
    if (offset >= GPE0_STS && offset < GPE0_STS + GPE0_BYTES) return this.gpe0Status[offset - GPE0_STS];
    if (offset >= GPE0_EN && offset < GPE0_EN + GPE0_BYTES) return this.gpe0Enable[offset - GPE0_EN];
    return 0;
  }

  /** Applies one byte; returns true when it set SLP_EN, to be acted on once the whole access is applied. */
  private writeByte(offset: number, value: number): boolean {
    if (offset >= PM1_STS && offset < PM1_STS + 2) {
      this.pm1Status &= ~(value << (8 * (offset - PM1_STS)));
    } else if (offset >= PM1_EN && offset < PM1_EN + 2) {
      this.pm1Enable = withByte(this.pm1Enable, offset - PM1_EN, value) & EN_WRITABLE;
    } else if (offset >= PM1_CNT && offset < PM1_CNT + 2) {
      const written = withByte(this.pm1Control, offset - PM1_CNT, value);
      this.pm1Control = written & CNT_STORED;
      return offset - PM1_CNT === 1 && (written & CNT_SLP_EN) !== 0;
    } else if (offset >= GPE0_STS && offset < GPE0_STS + GPE0_BYTES) {
      this.gpe0Status[offset - GPE0_STS] &= ~value;
    } else if (offset >= GPE0_EN && offset < GPE0_EN + GPE0_BYTES) {
      this.gpe0Enable[offset - GPE0_EN] = value;
    }
    return false;
  }

  private sleep(): void {
    const type = (this.pm1Control & CNT_SLP_TYP) >> CNT_SLP_TYP_SHIFT;
    if (type === SLP_TYP_S5) {
      this.onPowerOff();
      return;
    }
    this.log(`acpi-pm: sleep with SLP_TYP ${type} ignored (only S5, SLP_TYP ${SLP_TYP_S5}, is supported)`);
  }

  private clockTicks(): bigint {
    return (this.clock() * PM_TIMER_HZ) / NS_PER_S;
  }

  /** Samples the timer and sets TMR_STS if bit 23 has toggled since the last sample; returns the running tick count. */
  private refreshTimerStatus(): bigint {
    const ticks = this.clockTicks() + this.tickOffset;
    const epoch = ticks >> TMR_MSB_SHIFT;
    if (epoch !== this.lastMsbEpoch) {
      this.lastMsbEpoch = epoch;
      this.pm1Status |= STS_TMR;
    }
    return ticks;
  }

  private updateSci(force = false): void {
    const pm1 = (this.pm1Status & this.pm1Enable & PM1_SCI_SOURCES) !== 0;
    const level = pm1 || this.gpe0Status.some((sts, i) => (sts & this.gpe0Enable[i]) !== 0);
    if (level === this.sciLevel && !force) return;
    this.sciLevel = level;
    this.sci.set(level);
  }
}

function byteOf(value: number, index: number): number {
  return (value >>> (8 * index)) & 0xff;
}

function withByte(value: number, index: number, byte: number): number {
  const shift = 8 * index;
  return (value & ~(0xff << shift)) | (byte << shift);
}
