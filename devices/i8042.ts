// The part of the i8042 PS/2 controller that Linux probes and that `reboot=k` and bare-metal guests use to reset the machine.

import { TsvirtError } from '../machine/errors.js';
import type { BusDevice } from './bus.js';
import { NO_IRQ, type IrqLine } from './irq.js';

// Status register (read at 0x64).
const STS_OBF = 0x01; // output buffer full: a byte waits at 0x60
const STS_SYS = 0x04; // system flag, copied from command-byte bit 2
const STS_CMD = 0x08; // the last write went to 0x64 (a command), not 0x60
const STS_UNLOCKED = 0x10; // keyboard not inhibited by the keylock; Linux warns when clear
const STS_AUXDATA = 0x20; // the waiting byte came from the AUX (mouse) side
const STS_TIMEOUT = 0x40; // no device answered the last byte sent to it
// Status bits the model keeps; IBF (0x02) never sets because writes are consumed at once.
const STS_KEPT = STS_OBF | STS_CMD | STS_AUXDATA | STS_TIMEOUT;

// Command byte ("CTR" in Linux).
const CTR_KBDINT = 0x01;
const CTR_SYS = 0x04;
const CTR_KBDDIS = 0x10;
const CTR_AUXDIS = 0x20;
const CTR_XLATE = 0x40;
/** As firmware leaves it: keyboard interrupt on, POST passed, scan-code translation on. */
const DEFAULT_CTR = CTR_KBDINT | CTR_SYS | CTR_XLATE;

// Output port: bit 0 drives the CPU reset line (active low), bit 1 gates A20.
const OUTP_RESET_HIGH = 0x01;
const OUTP_A20 = 0x02;
const DEFAULT_OUTPUT_PORT = OUTP_RESET_HIGH | OUTP_A20;

// Controller commands (written to 0x64).
const CMD_READ_CTR = 0x20;
const CMD_WRITE_CTR = 0x60;
const CMD_AUX_DISABLE = 0xa7;
const CMD_AUX_ENABLE = 0xa8;
const CMD_AUX_TEST = 0xa9;
const CMD_SELF_TEST = 0xaa;
const CMD_KBD_TEST = 0xab;
const CMD_KBD_DISABLE = 0xad;
const CMD_KBD_ENABLE = 0xae;
const CMD_READ_OUTPUT_PORT = 0xd0;
const CMD_WRITE_OUTPUT_PORT = 0xd1;
const CMD_WRITE_KBD_BUFFER = 0xd2;
const CMD_WRITE_AUX_BUFFER = 0xd3;
const CMD_WRITE_AUX_DEVICE = 0xd4;
// 0xF0-0xFF pulse the output-port lines whose bits are clear in the low nibble; 0xFE pulses reset.
const CMD_PULSE_BASE = 0xf0;

/** Commands whose next byte at 0x60 is their parameter. */
const COMMANDS_WITH_PARAMETER = [
  CMD_WRITE_CTR,
  CMD_WRITE_OUTPUT_PORT,
  CMD_WRITE_KBD_BUFFER,
  CMD_WRITE_AUX_BUFFER,
  CMD_WRITE_AUX_DEVICE,
];
const NO_PENDING_COMMAND = 0;

const SELF_TEST_PASSED = 0x55;
const INTERFACE_TEST_PASSED = 0x00;
/** What the controller reports for a byte sent to a port with nothing attached (with STS_TIMEOUT). */
const NO_DEVICE_REPLY = 0xfe;

/** The controller's migration section. */
export interface I8042State {
  /** Status bits OBF, CMD, AUXDATA and TIMEOUT; SYS and the keylock bit are derived. */
  status: number;
  /** The byte in (or last read from) the output buffer. */
  outputBuffer: number;
  commandByte: number;
  outputPort: number;
  /** The command awaiting its parameter at 0x60, or 0. */
  pendingCommand: number;
}

/** A controller snapshot that cannot be loaded; `field` names the offending member. */
export class I8042StateError extends TsvirtError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_DEVICE_STATE', `i8042 state: ${field} ${message}`);
    this.field = field;
  }
}

function checkByte(field: string, v: unknown, mask = 0xff): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff || (v & ~mask) !== 0) {
    throw new I8042StateError(field, `must be a byte within mask 0x${mask.toString(16)}`);
  }
  return v;
}

/** What the machine wires to the controller. */
export interface I8042Options {
  /** The guest pulsed the CPU reset line (command 0xFE, or output-port bit 0 cleared). */
  onReset: () => void;
  /** IRQ 1: raised while a keyboard-side byte waits and the command byte enables it. */
  irq?: IrqLine;
}

/**
 * An i8042 with no keyboard or mouse attached. Its two ports are not adjacent (0x61 belongs to
 * another device), so it exposes two BusDevices, `dataPort` (0x60) and `commandPort` (0x64), each
 * one port long. Bytes sent to the keyboard or mouse are answered with 0xFE and the timeout bit,
 * which makes Linux's atkbd/psmouse probes fail fast instead of waiting. AUX loopback (0xD3) echoes
 * as a PS/2 controller does, but IRQ 12 is not modelled, so Linux drops the AUX port after its
 * IRQ test (pass `i8042.noaux` to skip that 250 ms). The output buffer holds one byte; a newer
 * byte replaces an unread one.
 */
export class I8042 {
  /** Port 0x60: output buffer on read, command parameters or device bytes on write. */
  readonly dataPort: BusDevice;
  /** Port 0x64: status on read, controller commands on write. */
  readonly commandPort: BusDevice;

  private status = STS_CMD;
  private outputBuffer = 0;
  private commandByte = DEFAULT_CTR;
  private outputPort = DEFAULT_OUTPUT_PORT;
  private pendingCommand = NO_PENDING_COMMAND;
  private irqLevel = false;
  private readonly onReset: () => void;
  private readonly irq: IrqLine;

  constructor(options: I8042Options) {
    this.onReset = options.onReset;
    this.irq = options.irq ?? NO_IRQ;
    this.dataPort = {
      read: (_offset, data) => this.fill(data, this.readData()),
      write: (_offset, data) => {
        if (data.length > 0) this.writeData(data[0]);
      },
    };
    this.commandPort = {
      read: (_offset, data) => this.fill(data, this.readStatus()),
      write: (_offset, data) => {
        if (data.length > 0) this.writeCommand(data[0]);
      },
    };
  }

  /** The migration snapshot. */
  saveState(): I8042State {
    return {
      status: this.status,
      outputBuffer: this.outputBuffer,
      commandByte: this.commandByte,
      outputPort: this.outputPort,
      pendingCommand: this.pendingCommand,
    };
  }

  /** Loads a snapshot after validating all of it, then drives IRQ 1 to match. */
  restoreState(state: I8042State): void {
    const s = state as unknown as Record<string, unknown>;
    if (typeof s !== 'object' || s === null) throw new I8042StateError('state', 'must be an object');
    const status = checkByte('status', s.status, STS_KEPT);
    const outputBuffer = checkByte('outputBuffer', s.outputBuffer);
    const commandByte = checkByte('commandByte', s.commandByte);
    const outputPort = checkByte('outputPort', s.outputPort);
    const pendingCommand = checkByte('pendingCommand', s.pendingCommand);
    if (pendingCommand !== NO_PENDING_COMMAND && !COMMANDS_WITH_PARAMETER.includes(pendingCommand)) {
      throw new I8042StateError('pendingCommand', 'is not a command that takes a parameter');
    }
    this.status = status;
    this.outputBuffer = outputBuffer;
    this.commandByte = commandByte;
    this.outputPort = outputPort;
    this.pendingCommand = pendingCommand;
    this.updateIrq(true);
  }

  private fill(data: Uint8Array, value: number): void {
    data.fill(0);
    if (data.length > 0) data[0] = value;
  }

  private readStatus(): number {
    return this.status | STS_UNLOCKED | (this.commandByte & CTR_SYS ? STS_SYS : 0);
  }

  private readData(): number {
    this.status &= ~(STS_OBF | STS_AUXDATA | STS_TIMEOUT);
    this.updateIrq();
    return this.outputBuffer;
  }

  private writeCommand(cmd: number): void {
    this.status |= STS_CMD;
    this.pendingCommand = NO_PENDING_COMMAND;
    if (COMMANDS_WITH_PARAMETER.includes(cmd)) {
      this.pendingCommand = cmd;
      return;
    }
    switch (cmd) {
      case CMD_READ_CTR:
        this.queue(this.commandByte);
        return;
      case CMD_AUX_DISABLE:
        this.commandByte |= CTR_AUXDIS;
        return;
      case CMD_AUX_ENABLE:
        this.commandByte &= ~CTR_AUXDIS;
        return;
      case CMD_SELF_TEST:
        this.commandByte |= CTR_SYS;
        this.queue(SELF_TEST_PASSED);
        return;
      case CMD_AUX_TEST:
      case CMD_KBD_TEST:
        this.queue(INTERFACE_TEST_PASSED);
        return;
      case CMD_KBD_DISABLE:
        this.commandByte |= CTR_KBDDIS;
        return;
      case CMD_KBD_ENABLE:
        this.commandByte &= ~CTR_KBDDIS;
        return;
      case CMD_READ_OUTPUT_PORT:
        this.queue(this.outputPort);
        return;
      default:
        if (cmd >= CMD_PULSE_BASE && !(cmd & OUTP_RESET_HIGH)) this.onReset();
        // Other commands (password, input port, test inputs...) are ignored as a controller without them would.
        return;
    }
  }

  private writeData(value: number): void {
    this.status &= ~STS_CMD;
    const cmd = this.pendingCommand;
    this.pendingCommand = NO_PENDING_COMMAND;
    switch (cmd) {
      case CMD_WRITE_CTR:
        this.commandByte = value;
        this.updateIrq();
        return;
      case CMD_WRITE_OUTPUT_PORT:
        this.outputPort = value;
        if (!(value & OUTP_RESET_HIGH)) this.onReset();
        return;
      case CMD_WRITE_KBD_BUFFER:
        this.queue(value);
        return;
      case CMD_WRITE_AUX_BUFFER:
        this.queue(value, STS_AUXDATA);
        return;
      case CMD_WRITE_AUX_DEVICE:
        this.queue(NO_DEVICE_REPLY, STS_AUXDATA | STS_TIMEOUT);
        return;
      default:
        // A byte for the keyboard, and there is none.
        this.queue(NO_DEVICE_REPLY, STS_TIMEOUT);
        return;
    }
  }

  private queue(byte: number, flags = 0): void {
    this.outputBuffer = byte;
    this.status = (this.status & ~(STS_AUXDATA | STS_TIMEOUT)) | STS_OBF | flags;
    this.updateIrq();
  }

  private updateIrq(force = false): void {
    const level =
      (this.status & (STS_OBF | STS_AUXDATA)) === STS_OBF && (this.commandByte & CTR_KBDINT) !== 0;
    if (level === this.irqLevel && !force) return;
    this.irqLevel = level;
    this.irq.set(level);
  }
}
