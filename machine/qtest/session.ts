// One qtest connection's command execution against narrow machine interfaces (buses, guest RAM, interrupt source); no sockets here.

import type { GuestMemory } from '../../devices/guest-memory.js';
import type { InterruptSource } from './interrupts.js';
import {
  QtestProtocolError, bytesToValue, formatEvent, parseCommand, reply, valueToBytes, type QtestCommand,
} from './protocol.js';

/** What the test mode drives: the machine's buses and RAM, seen through the calls it needs. */
export interface QtestTarget {
  readonly pio: { read(port: number, data: Uint8Array): unknown; write(port: number, data: Uint8Array): unknown };
  readonly mmio: {
    read(addr: number, data: Uint8Array): unknown;
    write(addr: number, data: Uint8Array): unknown;
    describe(): readonly { base: number; len: number }[];
  };
  readonly memory: Pick<GuestMemory, 'contains' | 'slice' | 'writableSlice' | 'regions'>;
  readonly interrupts?: InterruptSource;
}

/**
 * Executes commands in order and answers each with one line. Sized accesses go to the MMIO bus
 * when a device is registered at the address, else to guest RAM, else to the bus (which answers
 * all-ones and drops writes, like unassigned memory). `read`/`write`/`memset` use RAM when the
 * range lies in one RAM region, else naturally aligned accesses of up to 4 bytes on the MMIO bus.
 * After `irq_intercept_in`/`_out`, interrupts are sent as they happen, between replies.
 */
export class QtestSession {
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly target: QtestTarget, private readonly send: (line: string) => void) {}

  /** Handles one line (without its newline); sends the reply (nothing for a blank line). */
  handleLine(line: string): void {
    let cmd: QtestCommand | undefined;
    let answer: string;
    try {
      cmd = parseCommand(line);
      if (!cmd) return;
      answer = this.execute(cmd);
    } catch (e) {
      answer = reply.fail(e instanceof QtestProtocolError ? e.message : `${(e as Error).name}: ${(e as Error).message}`);
    }
    this.send(answer);
  }

  /** Stops forwarding interrupts (the connection closed). */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private execute(cmd: QtestCommand): string {
    switch (cmd.kind) {
      case 'out':
        this.target.pio.write(cmd.port, valueToBytes(BigInt(cmd.value), cmd.size));
        return reply.ok();
      case 'in': {
        const data = new Uint8Array(cmd.size);
        this.target.pio.read(cmd.port, data);
        return reply.port(Number(bytesToValue(data)));
      }
      case 'mmio-write':
        this.sizedWrite(address(cmd.addr, cmd.size), valueToBytes(cmd.value, cmd.size));
        return reply.ok();
      case 'mmio-read': {
        const data = new Uint8Array(cmd.size);
        this.sizedRead(address(cmd.addr, cmd.size), data);
        return reply.mmio(bytesToValue(data));
      }
      case 'read': {
        const data = this.readBytes(address(cmd.addr, cmd.size), cmd.size);
        return cmd.base64 ? reply.base64(data) : reply.bytes(data);
      }
      case 'write':
        this.writeBytes(address(cmd.addr, cmd.data.length), cmd.data);
        return reply.ok();
      case 'memset':
        this.writeBytes(address(cmd.addr, cmd.size), new Uint8Array(cmd.size).fill(cmd.value));
        return reply.ok();
      case 'irq_intercept': {
        const source = this.interrupts();
        this.unsubscribe ??= source.subscribe((ev) => this.send(formatEvent(ev)));
        return reply.ok();
      }
      case 'irq_level':
        return reply.value(this.interrupts().irqLevel(cmd.line) ? 1 : 0);
      case 'msi_count':
        return reply.value(this.interrupts().msiCount);
      case 'msi_last': {
        const last = this.interrupts().lastMsi;
        if (!last) throw new QtestProtocolError('no MSI recorded');
        return reply.msi(last.address, last.data);
      }
      case 'endianness':
        return reply.value('little');
    }
  }

  private interrupts(): InterruptSource {
    if (!this.target.interrupts) throw new QtestProtocolError('this machine records no interrupts');
    return this.target.interrupts;
  }

  private onMmio(addr: number): boolean {
    return this.target.mmio.describe().some((e) => addr >= e.base && addr < e.base + e.len);
  }

  private sizedWrite(addr: number, data: Uint8Array): void {
    if (!this.onMmio(addr) && this.target.memory.contains(addr, data.length)) this.target.memory.writableSlice(addr, data.length).set(data);
    else this.target.mmio.write(addr, data);
  }

  private sizedRead(addr: number, data: Uint8Array): void {
    if (!this.onMmio(addr) && this.target.memory.contains(addr, data.length)) data.set(this.target.memory.slice(addr, data.length));
    else this.target.mmio.read(addr, data);
  }

  /** [addr, addr+size) as pieces each inside one RAM region (RAM is 1 GiB regions back to back), or undefined when not all RAM. */
  private ramPieces(addr: number, size: number): { gpa: number; len: number }[] | undefined {
    if (this.onMmio(addr)) return undefined;
    const pieces: { gpa: number; len: number }[] = [];
    for (let at = addr, left = size; left > 0;) {
      const r = this.target.memory.regions.find((m) => at >= m.gpa && at < m.gpa + m.size);
      if (!r) return undefined;
      const len = Math.min(left, r.gpa + r.size - at);
      pieces.push({ gpa: at, len });
      at += len;
      left -= len;
    }
    return pieces;
  }

  private readBytes(addr: number, size: number): Uint8Array {
    const ram = this.ramPieces(addr, size);
    if (ram) {
      const out = new Uint8Array(size);
      for (const p of ram) out.set(this.target.memory.slice(p.gpa, p.len), p.gpa - addr);
      return out;
    }
    const out = new Uint8Array(size);
    for (const [at, len] of chunks(addr, size)) {
      const piece = out.subarray(at - addr, at - addr + len);
      this.target.mmio.read(at, piece);
    }
    return out;
  }

  private writeBytes(addr: number, data: Uint8Array): void {
    const ram = this.ramPieces(addr, data.length);
    if (ram) {
      for (const p of ram) this.target.memory.writableSlice(p.gpa, p.len).set(data.subarray(p.gpa - addr, p.gpa - addr + p.len));
      return;
    }
    for (const [at, len] of chunks(addr, data.length)) this.target.mmio.write(at, data.slice(at - addr, at - addr + len));
  }
}

/** A guest-physical address the buses can take (they use numbers). */
function address(addr: bigint, len: number): number {
  if (addr + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) throw new QtestProtocolError(`address 0x${addr.toString(16)} is out of range`);
  return Number(addr);
}

/** Splits [addr, addr+size) into naturally aligned accesses of 4, 2 or 1 bytes. */
function* chunks(addr: number, size: number): Generator<[number, number]> {
  let at = addr;
  const end = addr + size;
  while (at < end) {
    const len = at % 4 === 0 && end - at >= 4 ? 4 : at % 2 === 0 && end - at >= 2 ? 2 : 1;
    yield [at, len];
    at += len;
  }
}
