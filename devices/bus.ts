// Port-I/O and MMIO buses: range-checked dispatch to device models, which see only offsets.

import { TsvirtError } from '../machine/errors.js';

/**
 * A device on a bus. `data.length` is the access size (1, 2, 4 or 8); reads fill `data`,
 * writes consume it, little-endian. Offsets are relative to the device's base.
 */
export interface BusDevice {
  read(offset: number, data: Uint8Array): void;
  write(offset: number, data: Uint8Array): void;
}

/** Little-endian value of an access of up to 4 bytes. */
export function dataToNumber(data: Uint8Array): number {
  let v = 0;
  for (let i = Math.min(data.length, 4) - 1; i >= 0; i--) v = v * 256 + data[i];
  return v;
}

/** Fills `data` with the low `data.length` bytes of `value`, little-endian (up to 4 bytes; higher bytes 0). */
export function numberToData(data: Uint8Array, value: number): void {
  let v = value >>> 0;
  for (let i = 0; i < data.length; i++) {
    data[i] = i < 4 ? v & 0xff : 0;
    v = i < 4 ? v >>> 8 : 0;
  }
}

/** A second registration over an occupied range. */
export class BusConflictError extends TsvirtError {
  constructor(name: string, base: number, len: number, other: string) {
    super('ERR_BUS_CONFLICT', `${name} at 0x${base.toString(16)}+0x${len.toString(16)} overlaps ${other}`);
  }
}

interface Entry {
  readonly base: number;
  readonly len: number;
  readonly name: string;
  readonly device: BusDevice;
}

/** Called for accesses no device claims; the bus rate-limits it. */
export type UnmappedLogger = (message: string) => void;

/**
 * A sorted set of non-overlapping ranges. Unmapped reads return all-ones and unmapped writes are
 * dropped, logged at most `logBurst` times, so a probing guest never stops the vCPU loop.
 */
export class Bus {
  private entries: Entry[] = [];
  private unmappedLogged = 0;

  constructor(
    readonly name: string,
    private readonly log: UnmappedLogger = () => {},
    private readonly logBurst = 32,
  ) {}

  register(base: number, len: number, device: BusDevice, name: string): void {
    for (const e of this.entries) {
      if (base < e.base + e.len && e.base < base + len) throw new BusConflictError(name, base, len, e.name);
    }
    this.entries.push({ base, len, name, device });
    this.entries.sort((a, b) => a.base - b.base);
  }

  unregister(base: number): void {
    this.entries = this.entries.filter((e) => e.base !== base);
  }

  /** The entry covering `addr`, by binary search. */
  private find(addr: number): Entry | undefined {
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.entries[mid];
      if (addr < e.base) hi = mid - 1;
      else if (addr >= e.base + e.len) lo = mid + 1;
      else return e;
    }
    return undefined;
  }

  /** Dispatches a read; returns false (and fills all-ones) when nothing is mapped at `addr`. */
  read(addr: number, data: Uint8Array): boolean {
    const e = this.find(addr);
    if (!e) {
      data.fill(0xff);
      this.logUnmapped('read', addr, data.length);
      return false;
    }
    e.device.read(addr - e.base, data);
    return true;
  }

  /** Dispatches a write; returns false (and drops it) when nothing is mapped at `addr`. */
  write(addr: number, data: Uint8Array): boolean {
    const e = this.find(addr);
    if (!e) {
      this.logUnmapped('write', addr, data.length);
      return false;
    }
    e.device.write(addr - e.base, data);
    return true;
  }

  /** Names of the registered ranges, for diagnostics and tests. */
  describe(): { base: number; len: number; name: string }[] {
    return this.entries.map(({ base, len, name }) => ({ base, len, name }));
  }

  private logUnmapped(kind: string, addr: number, size: number): void {
    if (this.unmappedLogged >= this.logBurst) return;
    this.unmappedLogged++;
    const tail = this.unmappedLogged === this.logBurst ? ' (further unmapped accesses not logged)' : '';
    this.log(`${this.name}: unmapped ${kind} of ${size} byte(s) at 0x${addr.toString(16)}${tail}`);
  }
}
