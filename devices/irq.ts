// Interrupt lines as device models see them: injected, so models need no KVM, fds or threads.

/** A level-sensitive interrupt line (an ISA IRQ routed through the PIC/IOAPIC). */
export interface IrqLine {
  /** Raises (true) or lowers (false) the line. */
  set(level: boolean): void;
}

/** A line that records its level: for unit tests and for state that must be re-raised after restore. */
export class RecordingIrqLine implements IrqLine {
  level = false;
  raises = 0;
  set(level: boolean): void {
    if (level && !this.level) this.raises++;
    this.level = level;
  }
}

/** A line that goes nowhere (devices not wired to an interrupt). */
export const NO_IRQ: IrqLine = { set() {} };
