// A 16550A UART (COM1) as Linux's 8250 driver and bare-metal guests expect it: a pure model with an injected IRQ line and output.

import { TsvirtError } from '../machine/errors.js';
import type { BusDevice } from './bus.js';
import type { IrqLine } from './irq.js';

// Register offsets from the port base. Offsets 0 and 1 become the divisor latch (DLL, DLM) while LCR.DLAB is set.
const RBR_THR = 0;
const IER = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const IER_ERBFI = 0x01; // received data available
const IER_ETBEI = 0x02; // transmitter holding register empty
const IER_ELSI = 0x04; // receiver line status
const IER_EDSSI = 0x08; // modem status
const IER_MASK = 0x0f;

// IIR interrupt identifications, highest priority first, and the FIFO-enabled flag in bits 6-7.
const IIR_RLSI = 0x06;
const IIR_RDI = 0x04;
const IIR_CTI = 0x0c;
const IIR_THRI = 0x02;
const IIR_MSI = 0x00;
const IIR_NO_INT = 0x01;
const IIR_ID_MASK = 0x0f;
const IIR_FIFO_ENABLED = 0xc0;

const FCR_ENABLE = 0x01;
const FCR_RX_RESET = 0x02;
const FCR_TX_RESET = 0x04;
// Only these bits are latched; the reset bits clear themselves.
const FCR_LATCHED = 0xc9;

const LCR_DLAB = 0x80;

const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const MCR_MASK = 0x1f;

const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_PE = 0x04;
const LSR_FE = 0x08;
const LSR_BI = 0x10;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
// Sticky error bits: cleared by reading LSR, and the source of the line-status interrupt.
const LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

const MSR_DCTS = 0x01;
const MSR_DDSR = 0x02;
const MSR_TERI = 0x04;
const MSR_DDCD = 0x08;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;
const MSR_DELTAS = 0x0f;
/** Outside loopback the far end is an always-ready host: carrier, data set ready and clear to send. */
const MSR_HOST_LINES = MSR_DCD | MSR_DSR | MSR_CTS;

/** A 16550A's receive FIFO; a 64-byte FIFO would make Linux's autoconfig see a 16750. */
export const SERIAL_FIFO_SIZE = 16;
/** Receive trigger levels selected by FCR bits 6-7. */
const RX_TRIGGER_LEVELS = [1, 4, 8, 14];

// Power-on values, as vm-superio chooses them: 9600 baud 8N1 with OUT2 set, so firmware-less guests can print at once.
const DEFAULT_DLL = 0x0c;
const DEFAULT_LCR = 0x03;
const DEFAULT_MCR = MCR_OUT2;

/** The UART's migration section: registers plus the receive FIFO; DR, THRE, TEMT and IIR are derived on load. */
export interface Serial8250State {
  dll: number;
  dlm: number;
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  /** Latched FCR bits: FIFO enable, DMA mode, trigger level. */
  fcr: number;
  /** Sticky LSR error bits (OE, PE, FE, BI). */
  lsrErrors: number;
  /** MSR delta bits (DCTS, DDSR, TERI, DDCD) not yet read by the guest. */
  msrDeltas: number;
  /** 1 while a THR-empty interrupt is pending (not yet acknowledged by an IIR read or a THR write). */
  thrInterruptPending: number;
  /** Received bytes the guest has not read, oldest first. */
  rxFifo: number[];
}

/** A UART snapshot that cannot be loaded; `field` names the offending member. */
export class SerialStateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `serial state: ${field} ${message}`);
    this.field = field;
  }
}

function checkInt(field: string, v: unknown, max: number, mask = max): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new SerialStateError(field, `must be an integer in 0..${max}`);
  }
  if ((v & ~mask) !== 0) throw new SerialStateError(field, `has bits outside 0x${mask.toString(16)}`);
  return v;
}

/**
 * A 16550A UART. Transmission is instantaneous, so THRE and TEMT always read as set and every THR
 * write re-arms the THR-empty interrupt at once. The receive character timeout is modelled as
 * already expired (there are no timers here): data below the trigger level reports a timeout
 * interrupt rather than waiting. As in QEMU, the interrupt is not gated by MCR.OUT2. The receive
 * FIFO is off after power-on, leaving a one-byte holding register, until the guest sets FCR bit 0.
 */
export class Serial8250 implements BusDevice {
  private dll = DEFAULT_DLL;
  private dlm = 0;
  private ier = 0;
  private lcr = DEFAULT_LCR;
  private mcr = DEFAULT_MCR;
  private scr = 0;
  private fcr = 0;
  private lsrErrors = 0;
  private msrDeltas = 0;
  private thrPending = false;
  private rx: number[] = [];
  private irqLevel = false;
  // Set when the host was turned away, so the listener fires only for a backend that is waiting.
  private inputRefused = false;
  private inputSpaceListener: (() => void) | undefined;

  /** `irq` is COM1's line (IRQ 4); `out` receives every byte the guest transmits outside loopback. */
  constructor(
    private readonly irq: IrqLine,
    private readonly out: (bytes: Uint8Array) => void,
  ) {}

  /**
   * Registers the back-pressure callback: it runs (inside the guest access that freed room, after
   * the model is consistent) once space appears after `enqueueInput` accepted fewer bytes than offered.
   */
  onInputSpace(listener: (() => void) | undefined): void {
    this.inputSpaceListener = listener;
  }

  /** Bytes the receiver can take now: the FIFO's free room, one byte without FIFO, none in loopback. */
  inputSpace(): number {
    if (this.mcr & MCR_LOOP) return 0;
    return this.rxCapacity() - this.rx.length;
  }

  /** Queues host input for the guest; returns how many bytes fit. Retry the rest when `onInputSpace` fires. */
  enqueueInput(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, this.inputSpace());
    for (let i = 0; i < n; i++) this.rx.push(bytes[i]);
    if (n < bytes.length) this.inputRefused = true;
    if (n > 0) this.updateIrq();
    return n;
  }

  read(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    data.fill(0);
    data[0] = this.readRegister(offset);
    this.notifyInputSpace();
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.writeRegister(offset, data[0]);
    this.notifyInputSpace();
  }

  /**
   * Whether a THR write and an LSR read may be answered outside the model right now, and what LSR then reads: -1 when
   * not, else the LSR value. They may when such a THR write only outputs its byte and re-arms the (disabled) THR-empty
   * interrupt, and such an LSR read has no side effect: DLAB clear, loopback off, the THR-empty interrupt disabled, no
   * sticky LSR error (reading it would clear it) and no input-space callback due (any access would fire it).
   * The caller must ask again after every access and every `enqueueInput` or `restoreState`.
   */
  fastPathLsr(): number {
    if (this.lcr & LCR_DLAB || this.mcr & MCR_LOOP || this.ier & IER_ETBEI || this.lsrErrors) return -1;
    if (this.inputRefused && this.inputSpace() > 0) return -1;
    return (this.rx.length > 0 ? LSR_DR : 0) | LSR_THRE | LSR_TEMT;
  }

  /**
   * Applies THR writes the guest made while `fastPathLsr()` allowed them, oldest first: the same output (in one call)
   * and the same state as writing the bytes to THR one by one at that time.
   */
  transmit(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.out(bytes);
    this.thrPending = true;
    this.updateIrq();
  }

  /** The migration snapshot. */
  saveState(): Serial8250State {
    return {
      dll: this.dll,
      dlm: this.dlm,
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      fcr: this.fcr,
      lsrErrors: this.lsrErrors,
      msrDeltas: this.msrDeltas,
      thrInterruptPending: this.thrPending ? 1 : 0,
      rxFifo: [...this.rx],
    };
  }

  /** Loads a snapshot after validating all of it (nothing changes on error), then drives the IRQ line to match. */
  restoreState(state: Serial8250State): void {
    const s = state as unknown as Record<string, unknown>;
    if (typeof s !== 'object' || s === null) throw new SerialStateError('state', 'must be an object');
    const dll = checkInt('dll', s.dll, 0xff);
    const dlm = checkInt('dlm', s.dlm, 0xff);
    const ier = checkInt('ier', s.ier, 0xff, IER_MASK);
    const lcr = checkInt('lcr', s.lcr, 0xff);
    const mcr = checkInt('mcr', s.mcr, 0xff, MCR_MASK);
    const scr = checkInt('scr', s.scr, 0xff);
    const fcr = checkInt('fcr', s.fcr, 0xff, FCR_LATCHED);
    const lsrErrors = checkInt('lsrErrors', s.lsrErrors, 0xff, LSR_ERRORS);
    const msrDeltas = checkInt('msrDeltas', s.msrDeltas, 0xff, MSR_DELTAS);
    const thrInterruptPending = checkInt('thrInterruptPending', s.thrInterruptPending, 1);
    const capacity = fcr & FCR_ENABLE ? SERIAL_FIFO_SIZE : 1;
    if (!Array.isArray(s.rxFifo) || s.rxFifo.length > capacity) {
      throw new SerialStateError('rxFifo', `must be an array of at most ${capacity} bytes`);
    }
    const rx = s.rxFifo.map((b: unknown, i: number) => checkInt(`rxFifo[${i}]`, b, 0xff));

    this.dll = dll;
    this.dlm = dlm;
    this.ier = ier;
    this.lcr = lcr;
    this.mcr = mcr;
    this.scr = scr;
    this.fcr = fcr;
    this.lsrErrors = lsrErrors;
    this.msrDeltas = msrDeltas;
    this.thrPending = thrInterruptPending === 1;
    this.rx = rx;
    // The line is driven even if unchanged: the restored machine's interrupt controller starts low.
    this.updateIrq(true);
  }

  private readRegister(offset: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR:
        return dlab ? this.dll : this.readRbr();
      case IER:
        return dlab ? this.dlm : this.ier;
      case IIR_FCR:
        return this.readIir();
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR: {
        const lsr = (this.rx.length > 0 ? LSR_DR : 0) | this.lsrErrors | LSR_THRE | LSR_TEMT;
        if (this.lsrErrors) {
          this.lsrErrors = 0;
          this.updateIrq();
        }
        return lsr;
      }
      case MSR: {
        const msr = this.modemLines() | this.msrDeltas;
        if (this.msrDeltas) {
          this.msrDeltas = 0;
          this.updateIrq();
        }
        return msr;
      }
      case SCR:
        return this.scr;
      default:
        return 0xff;
    }
  }

  private writeRegister(offset: number, value: number): void {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR:
        if (dlab) this.dll = value;
        else this.writeThr(value);
        return;
      case IER:
        if (dlab) this.dlm = value;
        else this.writeIer(value);
        return;
      case IIR_FCR:
        this.writeFcr(value);
        return;
      case LCR:
        this.lcr = value;
        return;
      case MCR:
        this.writeMcr(value);
        return;
      case SCR:
        this.scr = value;
        return;
      default:
        // LSR and MSR are read-only; a factory-test write to them changes nothing on a 16550A either.
        return;
    }
  }

  private readRbr(): number {
    const byte = this.rx.shift() ?? 0;
    this.updateIrq();
    return byte;
  }

  private readIir(): number {
    const id = this.pendingInterrupt();
    // Reading IIR acknowledges a THR-empty interrupt only when that is what it reports.
    if (id === IIR_THRI) {
      this.thrPending = false;
      this.updateIrq();
    }
    return id | (this.fcr & FCR_ENABLE ? IIR_FIFO_ENABLED : 0);
  }

  private writeThr(value: number): void {
    // Dropping THRI first gives an edge-triggered IOAPIC pin a fresh edge when it re-arms below.
    this.thrPending = false;
    this.updateIrq();
    if (this.mcr & MCR_LOOP) this.receiveLoopback(value);
    else this.out(Uint8Array.of(value));
    this.thrPending = true;
    this.updateIrq();
  }

  private writeIer(value: number): void {
    const changed = (this.ier ^ value) & IER_MASK;
    this.ier = value & IER_MASK;
    // Enabling ETBEI with THR empty raises THRI at once: Linux's UART_BUG_THRE and TXEN probes check for it.
    if (changed & IER_ETBEI) this.thrPending = (this.ier & IER_ETBEI) !== 0;
    if (changed) this.updateIrq();
  }

  private writeFcr(value: number): void {
    let v = value;
    // Toggling FIFO mode flushes both FIFOs, as on a real 16550A (and in QEMU).
    if ((v ^ this.fcr) & FCR_ENABLE) v |= FCR_RX_RESET | FCR_TX_RESET;
    if (v & FCR_RX_RESET) {
      this.rx = [];
      this.lsrErrors &= ~LSR_BI;
    }
    if (v & FCR_TX_RESET) this.thrPending = (this.ier & IER_ETBEI) !== 0;
    this.fcr = v & FCR_LATCHED;
    this.updateIrq();
  }

  private writeMcr(value: number): void {
    const before = this.modemLines();
    this.mcr = value & MCR_MASK;
    const after = this.modemLines();
    const changed = before ^ after;
    if (changed & MSR_CTS) this.msrDeltas |= MSR_DCTS;
    if (changed & MSR_DSR) this.msrDeltas |= MSR_DDSR;
    if (before & MSR_RI & ~after) this.msrDeltas |= MSR_TERI; // trailing edge only
    if (changed & MSR_DCD) this.msrDeltas |= MSR_DDCD;
    this.updateIrq();
  }

  /** CTS, DSR, RI, DCD: in loopback they are wired to RTS, DTR, OUT1, OUT2. */
  private modemLines(): number {
    if (!(this.mcr & MCR_LOOP)) return MSR_HOST_LINES;
    return (
      (this.mcr & MCR_RTS ? MSR_CTS : 0) |
      (this.mcr & MCR_DTR ? MSR_DSR : 0) |
      (this.mcr & MCR_OUT1 ? MSR_RI : 0) |
      (this.mcr & MCR_OUT2 ? MSR_DCD : 0)
    );
  }

  private receiveLoopback(byte: number): void {
    if (this.rx.length < this.rxCapacity()) {
      this.rx.push(byte);
      return;
    }
    // Overrun: with the FIFO the new byte is lost; without it the holding register is overwritten.
    this.lsrErrors |= LSR_OE;
    if (!(this.fcr & FCR_ENABLE)) this.rx[0] = byte;
  }

  private rxCapacity(): number {
    return this.fcr & FCR_ENABLE ? SERIAL_FIFO_SIZE : 1;
  }

  /** The highest-priority enabled source, as IIR bits 0-3. */
  private pendingInterrupt(): number {
    if (this.ier & IER_ELSI && this.lsrErrors) return IIR_RLSI;
    if (this.ier & IER_ERBFI && this.rx.length > 0) {
      if (!(this.fcr & FCR_ENABLE)) return IIR_RDI;
      return this.rx.length >= RX_TRIGGER_LEVELS[this.fcr >> 6] ? IIR_RDI : IIR_CTI;
    }
    if (this.ier & IER_ETBEI && this.thrPending) return IIR_THRI;
    if (this.ier & IER_EDSSI && this.msrDeltas) return IIR_MSI;
    return IIR_NO_INT;
  }

  private updateIrq(force = false): void {
    const level = (this.pendingInterrupt() & IIR_ID_MASK) !== IIR_NO_INT;
    if (level === this.irqLevel && !force) return;
    this.irqLevel = level;
    this.irq.set(level);
  }

  private notifyInputSpace(): void {
    if (!this.inputRefused || this.inputSpace() === 0) return;
    this.inputRefused = false;
    this.inputSpaceListener?.();
  }
}
