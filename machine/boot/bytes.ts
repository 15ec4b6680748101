// Little-endian structure filling and 8-bit checksums for the boot structures and firmware tables tsvirt writes.

/** A fixed-size little-endian structure being filled in at the offsets its specification gives. */
export class Struct {
  readonly bytes: Uint8Array;
  private readonly view: DataView;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  u8(offset: number, value: number): this {
    this.view.setUint8(offset, value);
    return this;
  }

  u16(offset: number, value: number): this {
    this.view.setUint16(offset, value, true);
    return this;
  }

  u32(offset: number, value: number): this {
    this.view.setUint32(offset, value >>> 0, true);
    return this;
  }

  u64(offset: number, value: number | bigint): this {
    this.view.setBigUint64(offset, BigInt(value), true);
    return this;
  }

  /** Writes `text` as ASCII, padded with `pad` to `width` bytes (specifications pad OEM ids with spaces). */
  ascii(offset: number, text: string, width = text.length, pad = ' '): this {
    const padded = text.padEnd(width, pad);
    if (padded.length !== width) throw new RangeError(`"${text}" does not fit in ${width} bytes`);
    for (let i = 0; i < width; i++) this.view.setUint8(offset + i, padded.charCodeAt(i) & 0x7f);
    return this;
  }

  set(offset: number, data: Uint8Array): this {
    this.bytes.set(data, offset);
    return this;
  }
}

/** Sum of `bytes` modulo 256: zero for a structure whose checksum is right. */
export function byteSum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum;
}

/** Stores at `offset` the byte that makes `bytes` sum to zero (the checksum byte must be zero beforehand). */
export function fixChecksum(bytes: Uint8Array, offset: number): void {
  bytes[offset] = 0;
  bytes[offset] = (0x100 - byteSum(bytes)) & 0xff;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Formats a byte count in MiB for error messages: "64", "1.5". */
export function mib(bytes: number): string {
  return String(Math.round((bytes / (1024 * 1024)) * 10) / 10);
}

/** Formats a guest address for error messages. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}
