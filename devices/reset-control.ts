// The ICH9 reset control register at port 0xCF9, which Linux's `reboot=pci` and bare-metal guests write to reset the machine.

import { TsvirtError } from '../machine/errors.js';
import type { BusDevice } from './bus.js';

const SYS_RST = 0x02; // with RST_CPU: a full platform reset rather than a CPU-only (soft) one
const RST_CPU = 0x04; // writing 1 starts the reset; self-clearing
const FULL_RST = 0x08; // with SYS_RST: also cycle power
/** Bits that read back; the rest are reserved and read 0. RST_CPU never reads back. */
const STORED_BITS = SYS_RST | FULL_RST;

/** The register's migration section. */
export interface ResetControlState {
  /** The stored SYS_RST and FULL_RST bits. */
  value: number;
}

/** A reset-control snapshot that cannot be loaded; `field` names the offending member. */
export class ResetControlStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `reset-control state: ${field} ${message}`);
    this.field = field;
  }
}

/** What the machine wires to the register. */
export interface ResetControlOptions {
  /** The guest wrote RST_CPU (0x06 and 0x0E both land here: tsvirt resets the same way for each). */
  onReset: () => void;
}

/**
 * The one-byte register at 0xCF9. It sits inside the PCI CONFIG_ADDRESS dword (0xCF8-0xCFB), so
 * whoever decodes 0xCF8 must hand byte accesses at 0xCF9 here; wider accesses touch only the first
 * byte.
 */
export class ResetControl implements BusDevice {
  private value = 0;
  private readonly onReset: () => void;

  constructor(options: ResetControlOptions) {
    this.onReset = options.onReset;
  }

  read(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    data.fill(0);
    data[0] = this.value;
  }

  write(_offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.value = data[0] & STORED_BITS;
    if (data[0] & RST_CPU) this.onReset();
  }

  /** The migration snapshot. */
  saveState(): ResetControlState {
    return { value: this.value };
  }

  /** Loads a snapshot after validating it. */
  restoreState(state: ResetControlState): void {
    const v = (state as unknown as Record<string, unknown> | null)?.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || (v & ~STORED_BITS) !== 0) {
      throw new ResetControlStateError('value', `must be a byte within mask 0x${STORED_BITS.toString(16)}`);
    }
    this.value = v;
  }
}
