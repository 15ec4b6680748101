// Records the interrupts a machine in test mode delivers: ISA line changes and MSI messages, with listeners for the qtest sessions.

import type { IrqLine } from '../../devices/irq.js';
import type { MsiSink } from '../../devices/pci/msix.js';
import type { InterruptEvent } from './protocol.js';

/** What a qtest session needs to observe interrupts (InterruptRecorder implements it). */
export interface InterruptSource {
  /** Calls `listener` for every event from now on; returns the unsubscribe function. */
  subscribe(listener: (ev: InterruptEvent) => void): () => void;
  /** Current level of ISA line `line` (false for lines never raised). */
  irqLevel(line: number): boolean;
  /** MSIs delivered so far. */
  readonly msiCount: number;
  /** The latest MSI, if any. */
  readonly lastMsi: { address: bigint; data: number } | undefined;
}

/**
 * The machine builder, in test mode, wraps each ISA IrqLine and each device's MsiSink with this
 * recorder (`line(4, irq4)`, `msiSink(router.sink(id))`). Wrapped objects still forward to the
 * real ones when given, so KVM sees the same interrupts it would without the test mode.
 */
export class InterruptRecorder implements InterruptSource {
  private readonly levels = new Map<number, boolean>();
  private readonly listeners = new Set<(ev: InterruptEvent) => void>();
  msiCount = 0;
  lastMsi: { address: bigint; data: number } | undefined;

  subscribe(listener: (ev: InterruptEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  irqLevel(line: number): boolean {
    return this.levels.get(line) ?? false;
  }

  /** An IrqLine for ISA line `line` that records level changes (a repeated level is not an event). */
  line(line: number, inner?: IrqLine): IrqLine {
    return {
      set: (level: boolean) => {
        inner?.set(level);
        if (this.irqLevel(line) === level) return;
        this.levels.set(line, level);
        this.emit({ kind: 'irq', line, level });
      },
    };
  }

  /** An MsiSink that records every message signalled, then forwards it (and table updates) to `inner`. */
  msiSink(inner?: MsiSink): MsiSink {
    return {
      signal: (vector, address, data) => {
        inner?.signal(vector, address, data);
        this.msiCount++;
        this.lastMsi = { address, data };
        this.emit({ kind: 'msi', address, data });
      },
      update: (vector, address, data, masked) => inner?.update?.(vector, address, data, masked),
    };
  }

  private emit(ev: InterruptEvent): void {
    for (const l of this.listeners) l(ev);
  }
}
