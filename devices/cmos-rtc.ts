// The MC146818 CMOS RTC and NVRAM at ports 0x70/0x71: wall-clock time from an injected clock, and the memory-size bytes firmware leaves.

import { TsvirtError } from '../machine/errors.js';
import type { BusDevice } from './bus.js';

// Port offsets from 0x70.
const INDEX_PORT = 0;
const DATA_PORT = 1;
const INDEX_NMI_MASK = 0x80;
const INDEX_MASK = 0x7f;
/** QEMU's 128 bytes: the standard 64 plus the extended bank reachable through 0x70/0x71. */
export const CMOS_NVRAM_SIZE = 128;

// Clock registers.
const REG_SECONDS = 0x00;
const REG_MINUTES = 0x02;
const REG_HOURS = 0x04;
const REG_DAY_OF_WEEK = 0x06;
const REG_DATE = 0x07;
const REG_MONTH = 0x08;
const REG_YEAR = 0x09;
const REG_CENTURY = 0x32;
const CLOCK_REGISTERS = [REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_WEEK, REG_DATE, REG_MONTH, REG_YEAR, REG_CENTURY];
const HOURS_PM = 0x80;

// Control registers.
const REG_A = 0x0a;
const REG_B = 0x0b;
const REG_C = 0x0c;
const REG_D = 0x0d;
const A_UIP = 0x80;
const A_WRITABLE = 0x7f;
/** 32.768 kHz time base, 1.024 kHz periodic rate: what every PC BIOS programs. */
const DEFAULT_A = 0x26;
const B_SET = 0x80;
const B_UIE = 0x10;
const B_BINARY = 0x04;
const B_24H = 0x02;
const DEFAULT_B = B_24H;
const C_IRQF = 0x80;
const C_UF = 0x10;
const D_VRT = 0x80;

/**
 * UIP reads as set during the last 2 ms of every second: about the real chip's 244 us warning plus
 * its update cycle, which guests (Linux's mc146818_get_time among them) poll around.
 */
const UIP_WINDOW_MS = 2;

// Memory-size bytes, laid out as QEMU's pc_cmos_init writes them.
const REG_BASE_MEM = 0x15; // KiB below 1 MiB (0x15-0x16)
const REG_EXT_MEM = 0x17; // KiB above 1 MiB, capped (0x17-0x18)
const REG_EXT_MEM_COPY = 0x30; // the same again (0x30-0x31)
const REG_MEM_ABOVE_16M = 0x34; // 64 KiB units between 16 MiB and the end of low RAM (0x34-0x35)
const REG_MEM_ABOVE_4G = 0x5b; // 64 KiB units above 4 GiB (0x5b-0x5d)
const KIB = 1024;
const MIB = 1024 * KIB;
const BASE_MEM_KIB = 640;

/** The RTC's migration section. Guest time is kept as an offset from the host clock, so it keeps running across migration. */
export interface CmosRtcState {
  index: number;
  /** 1 when the guest set bit 7 of the index port (NMI disabled). */
  nmiMasked: number;
  /** All 128 bytes; while register B's SET bit is on, the clock registers hold the guest's frozen time. */
  nvram: number[];
  /** Guest time minus host clock, in ms. */
  offsetMs: number;
  /** The guest second (ms / 1000) at the last register C read, for the update-ended flag. */
  lastUpdateSecond: number;
}

/** An RTC snapshot that cannot be loaded; `field` names the offending member. */
export class CmosStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `cmos state: ${field} ${message}`);
    this.field = field;
  }
}

/** What the machine gives the RTC. */
export interface CmosRtcOptions {
  /** Host wall clock (a Date, or ms since the epoch); the guest's time is UTC. */
  clock: () => Date | number;
  /** Bytes of RAM below 4 GiB. */
  lowMem: number;
  /** Bytes of RAM above 4 GiB. */
  highMem: number;
}

const toBcd = (v: number) => Math.floor(v / 10) * 16 + (v % 10);
const fromBcd = (v: number) => (v >> 4) * 10 + (v & 0x0f);

function checkInt(field: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new CmosStateError(field, `must be an integer in 0..${max}`);
  }
  return v;
}

/**
 * The CMOS RTC. It raises no interrupts (no periodic, alarm or update-ended IRQ 8: they would need
 * timers, and the guests tsvirt targets read the time by polling). Register C still reports the
 * update-ended flag when a second has passed since it was last read. Writing the clock registers
 * sets the guest's time; with register B's SET bit on they hold still until SET is cleared, as on
 * the chip.
 */
export class CmosRtc implements BusDevice {
  private index = 0;
  private nmiMasked = false;
  private nvram: number[] = new Array<number>(CMOS_NVRAM_SIZE).fill(0);
  private offsetMs = 0;
  private lastUpdateSecond: number;
  private readonly clock: () => Date | number;

  constructor(options: CmosRtcOptions) {
    this.clock = options.clock;
    this.nvram[REG_A] = DEFAULT_A;
    this.nvram[REG_B] = DEFAULT_B;
    this.nvram[REG_D] = D_VRT;
    this.writeMemorySizes(options.lowMem, options.highMem);
    this.lastUpdateSecond = this.guestSecond();
  }

  /** Whether the guest has masked NMIs through the index port (no NMI source is modelled; kept for the guest to read back). */
  get nmiDisabled(): boolean {
    return this.nmiMasked;
  }

  read(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    data.fill(0);
    // The index port is write-only; reading it floats high.
    data[0] = offset === DATA_PORT ? this.readRegister(this.index) : 0xff;
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    if (offset === INDEX_PORT) {
      this.index = data[0] & INDEX_MASK;
      this.nmiMasked = (data[0] & INDEX_NMI_MASK) !== 0;
    } else if (offset === DATA_PORT) {
      this.writeRegister(this.index, data[0]);
    }
  }

  /** The migration snapshot (clock registers are stored as of now). */
  saveState(): CmosRtcState {
    return {
      index: this.index,
      nmiMasked: this.nmiMasked ? 1 : 0,
      nvram: this.nvram.map((v, reg) => (this.isLiveClockRegister(reg) ? this.readRegister(reg) : v)),
      offsetMs: this.offsetMs,
      lastUpdateSecond: this.lastUpdateSecond,
    };
  }

  /** Loads a snapshot after validating all of it. */
  restoreState(state: CmosRtcState): void {
    const s = state as unknown as Record<string, unknown>;
    if (typeof s !== 'object' || s === null) throw new CmosStateError('state', 'must be an object');
    const index = checkInt('index', s.index, INDEX_MASK);
    const nmiMasked = checkInt('nmiMasked', s.nmiMasked, 1);
    if (!Array.isArray(s.nvram) || s.nvram.length !== CMOS_NVRAM_SIZE) {
      throw new CmosStateError('nvram', `must be an array of ${CMOS_NVRAM_SIZE} bytes`);
    }
    const nvram = s.nvram.map((v: unknown, i: number) => checkInt(`nvram[${i}]`, v, 0xff));
    if (typeof s.offsetMs !== 'number' || !Number.isFinite(s.offsetMs)) {
      throw new CmosStateError('offsetMs', 'must be a finite number');
    }
    const lastUpdateSecond = s.lastUpdateSecond;
    if (typeof lastUpdateSecond !== 'number' || !Number.isSafeInteger(lastUpdateSecond)) {
      throw new CmosStateError('lastUpdateSecond', 'must be an integer');
    }
    this.index = index;
    this.nmiMasked = nmiMasked === 1;
    this.nvram = nvram;
    this.offsetMs = s.offsetMs;
    this.lastUpdateSecond = lastUpdateSecond;
  }

  private readRegister(reg: number): number {
    switch (reg) {
      case REG_A:
        return (this.nvram[REG_A] & A_WRITABLE) | (this.updateInProgress() ? A_UIP : 0);
      case REG_C:
        return this.readRegisterC();
      case REG_D:
        return D_VRT;
      default:
        return this.isLiveClockRegister(reg) ? this.clockRegister(reg, this.guestMs()) : this.nvram[reg];
    }
  }

  private writeRegister(reg: number, value: number): void {
    switch (reg) {
      case REG_A:
        this.nvram[REG_A] = value & A_WRITABLE;
        return;
      case REG_B:
        this.writeRegisterB(value);
        return;
      case REG_C:
      case REG_D:
        return; // read-only
      default:
        if (!CLOCK_REGISTERS.includes(reg)) {
          this.nvram[reg] = value;
        } else if (this.nvram[REG_B] & B_SET) {
          this.nvram[reg] = value;
        } else {
          // One field changed while running: freeze, change it, and restart from the result mid-second as before.
          const intoSecond = this.millisIntoSecond();
          this.latchClock();
          this.nvram[reg] = value;
          this.commitClock(intoSecond);
        }
    }
  }

  private writeRegisterB(value: number): void {
    const wasSet = (this.nvram[REG_B] & B_SET) !== 0;
    const set = (value & B_SET) !== 0;
    if (set && !wasSet) this.latchClock();
    // Setting SET also clears UIE on the chip: no update cycles run while it is on.
    this.nvram[REG_B] = set ? value & ~B_UIE : value;
    if (!set && wasSet) this.commitClock();
  }

  private readRegisterC(): number {
    const second = this.guestSecond();
    const updated = !(this.nvram[REG_B] & B_SET) && second !== this.lastUpdateSecond;
    this.lastUpdateSecond = second;
    if (!updated) return 0;
    return C_UF | (this.nvram[REG_B] & B_UIE ? C_IRQF : 0);
  }

  private isLiveClockRegister(reg: number): boolean {
    return CLOCK_REGISTERS.includes(reg) && !(this.nvram[REG_B] & B_SET);
  }

  private hostMs(): number {
    const t = this.clock();
    return typeof t === 'number' ? t : t.getTime();
  }

  private guestMs(): number {
    return this.hostMs() + this.offsetMs;
  }

  private guestSecond(): number {
    return Math.floor(this.guestMs() / 1000);
  }

  private millisIntoSecond(): number {
    return ((this.guestMs() % 1000) + 1000) % 1000;
  }

  private updateInProgress(): boolean {
    if (this.nvram[REG_B] & B_SET) return false;
    return this.millisIntoSecond() >= 1000 - UIP_WINDOW_MS;
  }

  /** One clock register's value for `ms`, encoded per register B (BCD or binary, 12 or 24 hour). */
  private clockRegister(reg: number, ms: number): number {
    const t = new Date(ms);
    switch (reg) {
      case REG_SECONDS:
        return this.encode(t.getUTCSeconds());
      case REG_MINUTES:
        return this.encode(t.getUTCMinutes());
      case REG_HOURS: {
        const h = t.getUTCHours();
        if (this.nvram[REG_B] & B_24H) return this.encode(h);
        return this.encode(h % 12 || 12) | (h >= 12 ? HOURS_PM : 0);
      }
      case REG_DAY_OF_WEEK:
        return this.encode(t.getUTCDay() + 1);
      case REG_DATE:
        return this.encode(t.getUTCDate());
      case REG_MONTH:
        return this.encode(t.getUTCMonth() + 1);
      case REG_YEAR:
        return this.encode(t.getUTCFullYear() % 100);
      default:
        return this.encode(Math.floor(t.getUTCFullYear() / 100));
    }
  }

  private encode(v: number): number {
    return this.nvram[REG_B] & B_BINARY ? v : toBcd(v);
  }

  private decode(v: number): number {
    return this.nvram[REG_B] & B_BINARY ? v : fromBcd(v);
  }

  /** Copies the running time into the clock registers, as the chip holds them while SET is on. */
  private latchClock(): void {
    const ms = this.guestMs();
    for (const reg of CLOCK_REGISTERS) this.nvram[reg] = this.clockRegister(reg, ms);
  }

  /** Restarts the clock from the clock registers (the day of week is derived from the date, not read back). */
  private commitClock(intoSecond = 0): void {
    const raw = this.nvram;
    let hours: number;
    if (raw[REG_B] & B_24H) {
      hours = this.decode(raw[REG_HOURS]);
    } else {
      hours = (this.decode(raw[REG_HOURS] & ~HOURS_PM) % 12) + (raw[REG_HOURS] & HOURS_PM ? 12 : 0);
    }
    const year = this.decode(raw[REG_CENTURY]) * 100 + this.decode(raw[REG_YEAR]);
    const date = new Date(0);
    date.setUTCFullYear(year, this.decode(raw[REG_MONTH]) - 1, this.decode(raw[REG_DATE]));
    date.setUTCHours(hours, this.decode(raw[REG_MINUTES]), this.decode(raw[REG_SECONDS]), intoSecond);
    // A garbage date (out of Date's range) leaves the clock where it was rather than poisoning it.
    if (Number.isFinite(date.getTime())) this.offsetMs = date.getTime() - this.hostMs();
  }

  private writeMemorySizes(lowMem: number, highMem: number): void {
    const put = (reg: number, value: number, bytes: number) => {
      for (let i = 0; i < bytes; i++) this.nvram[reg + i] = Math.floor(value / 256 ** i) & 0xff;
    };
    put(REG_BASE_MEM, Math.min(Math.floor(lowMem / KIB), BASE_MEM_KIB), 2);
    const extKib = Math.min(lowMem > MIB ? Math.floor((lowMem - MIB) / KIB) : 0, 0xffff);
    put(REG_EXT_MEM, extKib, 2);
    put(REG_EXT_MEM_COPY, extKib, 2);
    const above16m = Math.min(lowMem > 16 * MIB ? Math.floor((lowMem - 16 * MIB) / (64 * KIB)) : 0, 0xffff);
    put(REG_MEM_ABOVE_16M, above16m, 2);
    put(REG_MEM_ABOVE_4G, Math.floor(highMem / (64 * KIB)), 3);
  }
}
