// A qtest client for TypeScript tests: typed port/MMIO/RAM accessors, PCI config cycles, and waiting for IRQ and MSI events.

import * as net from 'node:net';
import { TsvirtError } from '../errors.js';
import { parseEvent, type InterruptEvent } from './protocol.js';

/** The machine answered FAIL (or the connection broke). */
export class QtestClientError extends TsvirtError {
  constructor(message: string) {
    super('ERR_QTEST', message);
  }
}

const PCI_CONFIG_ADDRESS = 0xcf8;
const PCI_CONFIG_DATA = 0xcfc;

type Pending = { resolve: (rest: string) => void; reject: (e: Error) => void; line: string };
type Waiter = { match: (ev: InterruptEvent) => boolean; resolve: (ev: InterruptEvent) => void };

/**
 * Drives a tsvirt in `-mod-test` mode like a guest driver would. Commands are pipelined and
 * answered in order; asynchronous IRQ/MSI lines are collected in `events` (after `irqIntercept`)
 * and can be awaited.
 */
export class QtestClient {
  private readonly pending: Pending[] = [];
  private readonly waiters: Waiter[] = [];
  /** Every interrupt event received, oldest first (tests may splice it). */
  readonly events: InterruptEvent[] = [];
  private buffered = '';
  private closedError: Error | undefined;

  constructor(private readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const fail = (e: Error) => {
      this.closedError = e;
      for (const p of this.pending.splice(0)) p.reject(e);
    };
    socket.on('error', (e) => fail(new QtestClientError(`qtest connection: ${e.message}`)));
    socket.on('close', () => fail(new QtestClientError('qtest connection closed')));
  }

  /** Connects to a listening qtest socket. */
  static connect(path: string): Promise<QtestClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path, () => {
        s.off('error', reject);
        resolve(new QtestClient(s));
      });
      s.once('error', reject);
    });
  }

  /** Sends one command line; resolves with what follows "OK" (trimmed), rejects on FAIL. */
  command(line: string): Promise<string> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, line });
      this.socket.write(line + '\n');
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const ev = parseEvent(line);
      if (ev) {
        this.events.push(ev);
        for (let i = this.waiters.length - 1; i >= 0; i--) {
          if (this.waiters[i].match(ev)) this.waiters.splice(i, 1)[0].resolve(ev);
        }
        continue;
      }
      const p = this.pending.shift();
      if (!p) continue;
      if (line === 'OK' || line.startsWith('OK ')) p.resolve(line.slice(2).trim());
      else p.reject(new QtestClientError(`${p.line}: ${line}`));
    }
  }

  // --- Port I/O, MMIO and RAM ---------------------------------------------------------------------

  async outb(port: number, v: number): Promise<void> { await this.command(`outb 0x${port.toString(16)} 0x${v.toString(16)}`); }
  async outw(port: number, v: number): Promise<void> { await this.command(`outw 0x${port.toString(16)} 0x${v.toString(16)}`); }
  async outl(port: number, v: number): Promise<void> { await this.command(`outl 0x${port.toString(16)} 0x${(v >>> 0).toString(16)}`); }
  async inb(port: number): Promise<number> { return Number(await this.command(`inb 0x${port.toString(16)}`)); }
  async inw(port: number): Promise<number> { return Number(await this.command(`inw 0x${port.toString(16)}`)); }
  async inl(port: number): Promise<number> { return Number(await this.command(`inl 0x${port.toString(16)}`)); }

  private async mmioWrite(suffix: string, addr: number | bigint, v: number | bigint): Promise<void> {
    await this.command(`write${suffix} 0x${addr.toString(16)} 0x${BigInt(v).toString(16)}`);
  }
  private async mmioRead(suffix: string, addr: number | bigint): Promise<bigint> {
    return BigInt(await this.command(`read${suffix} 0x${addr.toString(16)}`));
  }
  writeb(addr: number | bigint, v: number): Promise<void> { return this.mmioWrite('b', addr, v); }
  writew(addr: number | bigint, v: number): Promise<void> { return this.mmioWrite('w', addr, v); }
  writel(addr: number | bigint, v: number): Promise<void> { return this.mmioWrite('l', addr, v >>> 0); }
  writeq(addr: number | bigint, v: bigint): Promise<void> { return this.mmioWrite('q', addr, v); }
  async readb(addr: number | bigint): Promise<number> { return Number(await this.mmioRead('b', addr)); }
  async readw(addr: number | bigint): Promise<number> { return Number(await this.mmioRead('w', addr)); }
  async readl(addr: number | bigint): Promise<number> { return Number(await this.mmioRead('l', addr)); }
  readq(addr: number | bigint): Promise<bigint> { return this.mmioRead('q', addr); }

  /** `read ADDR SIZE`: bytes of RAM (or MMIO). */
  async read(addr: number | bigint, size: number): Promise<Uint8Array> {
    const hex = await this.command(`read 0x${addr.toString(16)} ${size}`);
    return Uint8Array.from(Buffer.from(hex.slice(2), 'hex'));
  }

  /** `write ADDR SIZE 0xHEX`. */
  async write(addr: number | bigint, data: Uint8Array): Promise<void> {
    await this.command(`write 0x${addr.toString(16)} ${data.length} 0x${Buffer.from(data).toString('hex')}`);
  }

  async memset(addr: number | bigint, size: number, value: number): Promise<void> {
    await this.command(`memset 0x${addr.toString(16)} ${size} 0x${value.toString(16)}`);
  }

  // --- PCI configuration through CF8/CFC (type 1 cycles, bus 0 unless given) ----------------------

  private async selectConfig(devfn: number, offset: number, bus = 0): Promise<void> {
    await this.outl(PCI_CONFIG_ADDRESS, (0x8000_0000 | (bus << 16) | (devfn << 8) | (offset & 0xfc)) >>> 0);
  }
  async pciConfigReadl(devfn: number, offset: number, bus = 0): Promise<number> {
    await this.selectConfig(devfn, offset, bus);
    return this.inl(PCI_CONFIG_DATA);
  }
  async pciConfigReadw(devfn: number, offset: number, bus = 0): Promise<number> {
    await this.selectConfig(devfn, offset, bus);
    return this.inw(PCI_CONFIG_DATA + (offset & 2));
  }
  async pciConfigReadb(devfn: number, offset: number, bus = 0): Promise<number> {
    await this.selectConfig(devfn, offset, bus);
    return this.inb(PCI_CONFIG_DATA + (offset & 3));
  }
  async pciConfigWritel(devfn: number, offset: number, v: number, bus = 0): Promise<void> {
    await this.selectConfig(devfn, offset, bus);
    await this.outl(PCI_CONFIG_DATA, v);
  }
  async pciConfigWritew(devfn: number, offset: number, v: number, bus = 0): Promise<void> {
    await this.selectConfig(devfn, offset, bus);
    await this.outw(PCI_CONFIG_DATA + (offset & 2), v);
  }
  async pciConfigWriteb(devfn: number, offset: number, v: number, bus = 0): Promise<void> {
    await this.selectConfig(devfn, offset, bus);
    await this.outb(PCI_CONFIG_DATA + (offset & 3), v);
  }

  // --- Interrupts ---------------------------------------------------------------------------------

  /** Starts receiving IRQ/MSI events. */
  async irqIntercept(): Promise<void> {
    await this.command('irq_intercept_in ioapic');
  }

  async irqLevel(line: number): Promise<boolean> {
    return (await this.command(`irq_level ${line}`)) === '1';
  }

  async msiCount(): Promise<number> {
    return Number(await this.command('msi_count'));
  }

  /**
   * Resolves with the first event (already received and not yet consumed, or future) that `match`
   * accepts; the event is removed from `events`. Rejects after `timeoutMs`.
   */
  waitFor(match: (ev: InterruptEvent) => boolean, timeoutMs = 5000): Promise<InterruptEvent> {
    const i = this.events.findIndex(match);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        reject(new QtestClientError(`no matching interrupt within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (ev) => {
          clearTimeout(timer);
          const at = this.events.indexOf(ev);
          if (at >= 0) this.events.splice(at, 1);
          resolve(ev);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits for an MSI, optionally with a given data value (the vector number on x86). */
  async waitForMsi(data?: number, timeoutMs?: number): Promise<{ address: bigint; data: number }> {
    const ev = await this.waitFor((e) => e.kind === 'msi' && (data === undefined || e.data === data), timeoutMs);
    return ev as { address: bigint; data: number };
  }

  /** Waits for ISA line `line` to reach `level`. */
  async waitForIrq(line: number, level = true, timeoutMs?: number): Promise<void> {
    await this.waitFor((e) => e.kind === 'irq' && e.line === line && e.level === level, timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }
}
