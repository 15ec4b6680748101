// A small AML (ACPI Machine Language) encoder: the terms and resource descriptors tsvirt's DSDT uses, nothing more.

import { concatBytes } from './bytes.js';

/** Encoded AML bytes. */
export type Aml = Uint8Array;

const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const STRING_PREFIX = 0x0d;
const QWORD_PREFIX = 0x0e;
const SCOPE_OP = 0x10;
const BUFFER_OP = 0x11;
const PACKAGE_OP = 0x12;
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82;
const DUAL_NAME_PREFIX = 0x2e;
const MULTI_NAME_PREFIX = 0x2f;
const ROOT_CHAR = 0x5c;
const PARENT_PREFIX_CHAR = 0x5e;

/**
 * PkgLength for `contentLength` bytes that follow it: the encoded length counts its own bytes, so the form
 * depends on the total. One byte holds up to 63; longer forms put the low nibble in the lead byte.
 */
export function pkgLength(contentLength: number): Uint8Array {
  for (let extra = 0; extra <= 3; extra++) {
    const total = contentLength + extra + 1;
    if (extra === 0 && total < 0x40) return Uint8Array.of(total);
    if (extra > 0 && total < 1 << (4 + 8 * extra)) {
      const out = new Uint8Array(extra + 1);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = (total >> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML package of ${contentLength} bytes is too long to encode`);
}

function nameSeg(seg: string): number[] {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) throw new RangeError(`invalid AML name segment "${seg}"`);
  return [...seg.padEnd(4, '_')].map((c) => c.charCodeAt(0));
}

/** A NameString: "\\_SB.PCI0", "^FOO", "_HID". */
export function nameString(path: string): Uint8Array {
  const prefix: number[] = [];
  let rest = path;
  if (rest.startsWith('\\')) {
    prefix.push(ROOT_CHAR);
    rest = rest.slice(1);
  }
  while (rest.startsWith('^')) {
    prefix.push(PARENT_PREFIX_CHAR);
    rest = rest.slice(1);
  }
  const segs = rest === '' ? [] : rest.split('.').map(nameSeg);
  if (segs.length === 0) return Uint8Array.from([...prefix, 0x00]);
  if (segs.length === 1) return Uint8Array.from([...prefix, ...segs[0]]);
  if (segs.length === 2) return Uint8Array.from([...prefix, DUAL_NAME_PREFIX, ...segs.flat()]);
  return Uint8Array.from([...prefix, MULTI_NAME_PREFIX, segs.length, ...segs.flat()]);
}

function littleEndian(value: bigint, bytes: number): number[] {
  return Array.from({ length: bytes }, (_, i) => Number((value >> BigInt(8 * i)) & 0xffn));
}

/** An Integer in its shortest encoding. */
export function integer(value: number | bigint): Aml {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`AML integer ${value} out of range`);
  if (v === 0n) return Uint8Array.of(ZERO_OP);
  if (v === 1n) return Uint8Array.of(ONE_OP);
  if (v <= 0xffn) return Uint8Array.of(BYTE_PREFIX, Number(v));
  if (v <= 0xffffn) return Uint8Array.of(WORD_PREFIX, ...littleEndian(v, 2));
  if (v <= 0xffff_ffffn) return Uint8Array.of(DWORD_PREFIX, ...littleEndian(v, 4));
  return Uint8Array.of(QWORD_PREFIX, ...littleEndian(v, 8));
}

/** EISAID("PNP0A08"): three letters in 5 bits each and four hex digits, stored big-endian in a DWord. */
export function eisaId(id: string): Aml {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`invalid EISA id "${id}"`);
  const letters = [0, 1, 2].map((i) => id.charCodeAt(i) - 0x40);
  const value = ((letters[0] << 26) | (letters[1] << 21) | (letters[2] << 16) | parseInt(id.slice(3), 16)) >>> 0;
  return Uint8Array.of(DWORD_PREFIX, (value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff);
}

/** A String constant. */
export function string(text: string): Aml {
  if (!/^[\x01-\x7f]*$/.test(text)) throw new RangeError('AML strings are ASCII without NUL');
  return Uint8Array.from([STRING_PREFIX, ...[...text].map((c) => c.charCodeAt(0)), 0]);
}

/** Name(path, value). */
export function name(path: string, value: Aml): Aml {
  return concatBytes([Uint8Array.of(NAME_OP), nameString(path), value]);
}

function withPkgLength(op: number[], body: Uint8Array): Aml {
  return concatBytes([Uint8Array.from(op), pkgLength(body.length), body]);
}

/** Scope(path) { terms }. */
export function scope(path: string, terms: Aml[]): Aml {
  return withPkgLength([SCOPE_OP], concatBytes([nameString(path), ...terms]));
}

/** Device(path) { terms }. */
export function device(path: string, terms: Aml[]): Aml {
  return withPkgLength([EXT_OP_PREFIX, DEVICE_OP], concatBytes([nameString(path), ...terms]));
}

/** Package() { elements } (at most 255 elements, the short form). */
export function pkg(elements: Aml[]): Aml {
  if (elements.length > 0xff) throw new RangeError('AML package has more than 255 elements');
  return withPkgLength([PACKAGE_OP], concatBytes([Uint8Array.of(elements.length), ...elements]));
}

/** Buffer() { bytes }. */
export function buffer(data: Uint8Array): Aml {
  return withPkgLength([BUFFER_OP], concatBytes([integer(data.length), data]));
}

// --- Resource descriptors (ACPI spec section 6.4), for _CRS ------------------------------------------

const END_TAG = 0x79;

/** ResourceTemplate() { descriptors }: a buffer closed by an end tag whose zero checksum means "not checked". */
export function resourceTemplate(descriptors: Uint8Array[]): Aml {
  return buffer(concatBytes([...descriptors, Uint8Array.of(END_TAG, 0)]));
}

function u16(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff];
}

function u32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** IO(Decode16, base, base, 1, length): a fixed range of I/O ports. */
export function ioPorts(base: number, length: number): Uint8Array {
  return Uint8Array.of(0x47, 0x01, ...u16(base), ...u16(base), 0x01, length);
}

/** IRQNoFlags() { irq }: an edge-triggered, active-high ISA interrupt. */
export function irqNoFlags(irq: number): Uint8Array {
  return Uint8Array.of(0x22, ...u16(1 << irq));
}

/** Memory32Fixed(ReadWrite, base, length). */
export function memory32Fixed(base: number, length: number): Uint8Array {
  return Uint8Array.of(0x86, ...u16(9), 0x01, ...u32(base), ...u32(length));
}

/** Address space descriptors: resource type, and the general flags MinFixed|MaxFixed|PosDecode|ResourceProducer. */
const ADDRESS_SPACE_MEMORY = 0;
const ADDRESS_SPACE_IO = 1;
const ADDRESS_SPACE_BUS = 2;
const MIN_MAX_FIXED = 0x0c;
/** WordIO: _RNG = EntireRange (ISA and non-ISA ports). */
const IO_ENTIRE_RANGE = 0x03;
/** DWordMemory: ReadWrite, NonCacheable, AddressRangeMemory. */
const MEMORY_RW_NONCACHEABLE = 0x01;

function wordAddressSpace(type: number, typeFlags: number, min: number, max: number): Uint8Array {
  return Uint8Array.of(0x88, ...u16(13), type, MIN_MAX_FIXED, typeFlags, ...u16(0), ...u16(min), ...u16(max), ...u16(0), ...u16(max - min + 1));
}

/** WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, count). */
export function wordBusNumber(min: number, max: number): Uint8Array {
  return wordAddressSpace(ADDRESS_SPACE_BUS, 0, min, max);
}

/** WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, length). */
export function wordIo(min: number, max: number): Uint8Array {
  return wordAddressSpace(ADDRESS_SPACE_IO, IO_ENTIRE_RANGE, min, max);
}

/** DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, length). */
export function dwordMemory(min: number, max: number): Uint8Array {
  return Uint8Array.of(
    0x87, ...u16(23), ADDRESS_SPACE_MEMORY, MIN_MAX_FIXED, MEMORY_RW_NONCACHEABLE,
    ...u32(0), ...u32(min), ...u32(max), ...u32(0), ...u32(max - min + 1),
  );
}
