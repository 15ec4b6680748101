// The qtest line protocol (QEMU's qtest, StratoVirt's -mod-test): parsing commands and formatting replies and events, no I/O.

import { TsvirtError } from '../errors.js';

/** Access sizes of the port and MMIO commands, by suffix. */
const SIZE_OF = { b: 1, w: 2, l: 4, q: 8 } as const;
export type AccessSize = 1 | 2 | 4 | 8;

/** Most bytes one `read`/`write`/`memset`/`b64*` command may move (keeps a line bounded). */
export const QTEST_MAX_TRANSFER = 16 * 1024 * 1024;
/** Longest line a session accepts: a maximal `write` in hex plus its words. */
export const QTEST_MAX_LINE = 2 * QTEST_MAX_TRANSFER + 256;

/** One parsed command. Addresses are bigint (guest-physical), ports and sizes number. */
export type QtestCommand =
  | { readonly kind: 'out'; readonly size: 1 | 2 | 4; readonly port: number; readonly value: number }
  | { readonly kind: 'in'; readonly size: 1 | 2 | 4; readonly port: number }
  | { readonly kind: 'mmio-write'; readonly size: AccessSize; readonly addr: bigint; readonly value: bigint }
  | { readonly kind: 'mmio-read'; readonly size: AccessSize; readonly addr: bigint }
  | { readonly kind: 'read'; readonly addr: bigint; readonly size: number; readonly base64: boolean }
  | { readonly kind: 'write'; readonly addr: bigint; readonly data: Uint8Array }
  | { readonly kind: 'memset'; readonly addr: bigint; readonly size: number; readonly value: number }
  /** Start (QEMU: irq_intercept_in/out QOM-PATH) sending `IRQ`/`MSI` lines as they happen; the path is ignored. */
  | { readonly kind: 'irq_intercept' }
  /** Current level of ISA line N: `OK 0` or `OK 1`. */
  | { readonly kind: 'irq_level'; readonly line: number }
  /** MSIs recorded since start: `OK N`. */
  | { readonly kind: 'msi_count' }
  /** The latest MSI: `OK 0xADDR 0xDATA`, or FAIL when none was recorded. */
  | { readonly kind: 'msi_last' }
  | { readonly kind: 'endianness' };

/** An interrupt the machine delivered, as the test mode records it. */
export type InterruptEvent =
  | { readonly kind: 'irq'; readonly line: number; readonly level: boolean }
  | { readonly kind: 'msi'; readonly address: bigint; readonly data: number };

/** A line that is not a valid command; the session answers `FAIL <message>`. */
export class QtestProtocolError extends TsvirtError {
  constructor(message: string) {
    super('ERR_QTEST', message);
  }
}

/** Parses an unsigned integer as QEMU's qtest does (strtoull base 0): 0x hex, 0-prefixed octal, decimal. */
export function parseUint(word: string | undefined, what: string): bigint {
  if (word === undefined) throw new QtestProtocolError(`missing ${what}`);
  if (/^0[xX][0-9a-fA-F]+$/.test(word)) return BigInt(word);
  if (/^0[0-7]+$/.test(word)) return BigInt('0o' + word.slice(1));
  if (/^(0|[1-9][0-9]*)$/.test(word)) return BigInt(word);
  throw new QtestProtocolError(`bad ${what} '${word}'`);
}

function fits(v: bigint, bytes: number): boolean {
  return v >= 0n && v < 1n << BigInt(bytes * 8);
}

function sizedUint(word: string | undefined, what: string, bytes: number): bigint {
  const v = parseUint(word, what);
  if (!fits(v, bytes)) throw new QtestProtocolError(`${what} ${word} does not fit in ${bytes} byte(s)`);
  return v;
}

function transferSize(word: string | undefined): number {
  const v = parseUint(word, 'size');
  if (v > BigInt(QTEST_MAX_TRANSFER)) throw new QtestProtocolError(`size ${word} is over the ${QTEST_MAX_TRANSFER}-byte limit`);
  return Number(v);
}

function arity(words: string[], min: number, max = min): void {
  const n = words.length - 1;
  if (n < min || n > max) {
    throw new QtestProtocolError(`${words[0]} takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${n}`);
  }
}

/** Decodes `write`'s data word: 0x then two hex digits per byte; fewer bytes than SIZE are zero-padded (as QEMU does). */
function hexData(word: string | undefined, size: number): Uint8Array {
  if (word === undefined || !/^0[xX]([0-9a-fA-F]{2})*$/.test(word)) throw new QtestProtocolError(`bad data '${word ?? ''}': want 0x and hex byte pairs`);
  const hex = word.slice(2);
  if (hex.length / 2 > size) throw new QtestProtocolError(`data has ${hex.length / 2} bytes, more than size ${size}`);
  const out = new Uint8Array(size);
  for (let i = 0; i < hex.length / 2; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function base64Data(word: string | undefined, size: number): Uint8Array {
  if (word === undefined || !/^[A-Za-z0-9+/]*={0,2}$/.test(word)) throw new QtestProtocolError(`bad base64 data '${word ?? ''}'`);
  const bytes = Buffer.from(word, 'base64');
  if (bytes.length > size) throw new QtestProtocolError(`data has ${bytes.length} bytes, more than size ${size}`);
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

/** Parses one line (without its newline). Returns undefined for a blank line. */
export function parseCommand(line: string): QtestCommand | undefined {
  const words = line.trim().split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) return undefined;
  const name = words[0];
  let m = /^(out|in)([bwl])$/.exec(name);
  if (m) {
    const size = SIZE_OF[m[2] as 'b' | 'w' | 'l'];
    if (m[1] === 'out') {
      arity(words, 2);
      return { kind: 'out', size, port: Number(sizedUint(words[1], 'port', 2)), value: Number(sizedUint(words[2], 'value', size)) };
    }
    arity(words, 1);
    return { kind: 'in', size, port: Number(sizedUint(words[1], 'port', 2)) };
  }
  m = /^(write|read)([bwlq])$/.exec(name);
  if (m) {
    const size = SIZE_OF[m[2] as 'b' | 'w' | 'l' | 'q'];
    if (m[1] === 'write') {
      arity(words, 2);
      return { kind: 'mmio-write', size, addr: sizedUint(words[1], 'address', 8), value: sizedUint(words[2], 'value', size) };
    }
    arity(words, 1);
    return { kind: 'mmio-read', size, addr: sizedUint(words[1], 'address', 8) };
  }
  switch (name) {
    case 'read':
    case 'b64read':
      arity(words, 2);
      return { kind: 'read', addr: sizedUint(words[1], 'address', 8), size: transferSize(words[2]), base64: name === 'b64read' };
    case 'write':
    case 'b64write': {
      arity(words, 3);
      const addr = sizedUint(words[1], 'address', 8);
      const size = transferSize(words[2]);
      return { kind: 'write', addr, data: name === 'write' ? hexData(words[3], size) : base64Data(words[3], size) };
    }
    case 'memset':
      arity(words, 3);
      return { kind: 'memset', addr: sizedUint(words[1], 'address', 8), size: transferSize(words[2]), value: Number(sizedUint(words[3], 'value', 1)) };
    case 'irq_intercept_in':
    case 'irq_intercept_out':
      arity(words, 0, 1);
      return { kind: 'irq_intercept' };
    case 'irq_level':
      arity(words, 1);
      return { kind: 'irq_level', line: Number(sizedUint(words[1], 'line', 1)) };
    case 'msi_count':
      arity(words, 0);
      return { kind: 'msi_count' };
    case 'msi_last':
      arity(words, 0);
      return { kind: 'msi_last' };
    case 'endianness':
      arity(words, 0);
      return { kind: 'endianness' };
    default:
      throw new QtestProtocolError(`Unknown command '${name}'`);
  }
}

const hex = (v: number | bigint, width: number) => '0x' + v.toString(16).padStart(width, '0');

/** Replies, as QEMU formats them (libqtest reads values with strtoull, so widths are cosmetic). */
export const reply = {
  ok: (): string => 'OK',
  /** in{b,w,l}: QEMU's "OK 0x%04x". */
  port: (v: number): string => `OK ${hex(v, 4)}`,
  /** read{b,w,l,q}: QEMU's "OK 0x%016" PRIx64. */
  mmio: (v: bigint): string => `OK ${hex(v, 16)}`,
  bytes: (data: Uint8Array): string => `OK 0x${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex')}`,
  base64: (data: Uint8Array): string => `OK ${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64')}`,
  value: (v: number | string): string => `OK ${v}`,
  msi: (address: bigint, data: number): string => `OK ${hex(address, 1)} ${hex(data, 1)}`,
  fail: (message: string): string => `FAIL ${message.replace(/[\r\n]+/g, ' ')}`,
};

/** An asynchronous line: `IRQ raise N`, `IRQ lower N` or `MSI 0xADDR 0xDATA`. */
export function formatEvent(ev: InterruptEvent): string {
  return ev.kind === 'irq' ? `IRQ ${ev.level ? 'raise' : 'lower'} ${ev.line}` : `MSI ${hex(ev.address, 1)} ${hex(ev.data, 1)}`;
}

/** Parses an asynchronous line; undefined when `line` is a reply (OK/FAIL). */
export function parseEvent(line: string): InterruptEvent | undefined {
  let m = /^IRQ (raise|lower) (\d+)$/.exec(line);
  if (m) return { kind: 'irq', line: Number(m[2]), level: m[1] === 'raise' };
  m = /^MSI (0x[0-9a-f]+) (0x[0-9a-f]+)$/.exec(line);
  if (m) return { kind: 'msi', address: BigInt(m[1]), data: Number(m[2]) };
  return undefined;
}

/** Little-endian bytes of an access of `size` bytes. */
export function valueToBytes(value: bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = value;
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function bytesToValue(data: Uint8Array): bigint {
  let v = 0n;
  for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]);
  return v;
}
