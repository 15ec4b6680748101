// Body codecs of every section except RAM_PAGES (which is streamed): each layout's encoder beside its decoder.

import { MigrationStreamError } from './errors.js';
import { parseVmDescription, type VmDescription } from './description.js';
import {
  DEFAULT_LIMITS,
  DeviceEncoding,
  PASS_FINAL,
  SectionType,
  sectionName,
  type Blobs,
  type StreamLimits,
  type StreamMessage,
  type StreamSummary,
} from './format.js';

const BLOB_NAME = /^[a-z][a-z0-9_]{0,31}$/;
/** Device ids as QEMU allows them, plus ':' so derived ids like `pci-00:03.0` fit. */
const DEVICE_ID = /^[A-Za-z][A-Za-z0-9_.:-]{0,127}$/;
const MAX_ERROR_MESSAGE = 4096;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Bounds-checked little-endian reads over one fully received body; every overrun is a `corrupt` error. */
class Cursor {
  private pos = 0;
  private readonly dv: DataView;
  constructor(private readonly bytes: Uint8Array, private readonly where: string) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (n > this.remaining) {
      throw new MigrationStreamError('corrupt', this.where, `${this.where}: body ends inside ${what} (needs ${n} bytes, ${this.remaining} left)`);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.dv.getUint8(this.pos++);
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.dv.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  take(n: number, what: string): Uint8Array {
    this.need(n, what);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  ascii(n: number, what: string, pattern: RegExp): string {
    const raw = this.take(n, what);
    const s = String.fromCharCode(...raw);
    if (!pattern.test(s)) throw new MigrationStreamError('corrupt', this.where, `${this.where}: ${what} '${printable(s)}' is not allowed`);
    return s;
  }

  rest(): Uint8Array {
    return this.take(this.remaining, 'the body');
  }

  done(): void {
    if (this.remaining !== 0) throw new MigrationStreamError('corrupt', this.where, `${this.where}: ${this.remaining} unexpected bytes after the body`);
  }
}

/** A hostile string shown in a message: control and non-ASCII characters escaped, at most 40 characters. */
export function printable(s: string): string {
  const cut = s.length > 40 ? s.slice(0, 40) + '...' : s;
  return cut.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function json(body: Uint8Array, where: string): unknown {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new MigrationStreamError('corrupt', where, `${where}: body is not valid UTF-8`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MigrationStreamError('corrupt', where, `${where}: body is not valid JSON (${(e as Error).message})`);
  }
}

function jsonBytes(value: unknown): Uint8Array {
  return utf8Encoder.encode(JSON.stringify(value));
}

function summary(v: unknown, where: string): StreamSummary {
  if (typeof v !== 'object' || v === null) throw new MigrationStreamError('corrupt', where, `${where}: body must be a JSON object`);
  const o = v as Record<string, unknown>;
  const count = (k: keyof StreamSummary): number => {
    const n = o[k];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new MigrationStreamError('corrupt', where, `${where}: ${k} must be a non-negative integer`);
    return n;
  };
  return { passes: count('passes'), normalPages: count('normalPages'), zeroPages: count('zeroPages'), vcpus: count('vcpus'), devices: count('devices') };
}

// --- Encoders (bodies only; the writer frames them) -----------------------------------------------

/** CONFIG body: the description as UTF-8 JSON. */
export function encodeConfig(d: VmDescription): Uint8Array {
  return jsonBytes(d);
}

/** RAM_PASS_END body: u32 pass, u32 dirty-sync count, u32 flags (PASS_FINAL). */
export function encodePassEnd(pass: number, dirtySyncs: number, final: boolean): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, pass, true);
  dv.setUint32(4, dirtySyncs, true);
  dv.setUint32(8, final ? PASS_FINAL : 0, true);
  return b;
}

/** CHANNEL_SYNC body: u32 pass, u32 flags (PASS_FINAL: the channel carries nothing more). */
export function encodeChannelSync(pass: number, final: boolean): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, pass, true);
  dv.setUint32(4, final ? PASS_FINAL : 0, true);
  return b;
}

/** Blob list: u16 count, then per blob u8 name length, name, u32 length, bytes. Returns [table, blob, table, blob...]. */
export function encodeBlobs(blobs: ReadonlyMap<string, Uint8Array>, prefix: Uint8Array = new Uint8Array(0)): Uint8Array[] {
  if (blobs.size > DEFAULT_LIMITS.blobs) throw new MigrationStreamError('limit', 'writer', `${blobs.size} blobs; readers accept ${DEFAULT_LIMITS.blobs}`);
  const out: Uint8Array[] = [];
  const head = new Uint8Array(prefix.length + 2);
  head.set(prefix);
  new DataView(head.buffer).setUint16(prefix.length, blobs.size, true);
  out.push(head);
  for (const [name, bytes] of blobs) {
    if (!BLOB_NAME.test(name)) throw new MigrationStreamError('corrupt', 'writer', `blob name '${printable(name)}' is not allowed`);
    const h = new Uint8Array(1 + name.length + 4);
    h[0] = name.length;
    for (let i = 0; i < name.length; i++) h[1 + i] = name.charCodeAt(i);
    new DataView(h.buffer).setUint32(1 + name.length, bytes.length, true);
    out.push(h, bytes);
  }
  return out;
}

/** VCPU_STATE body start: u32 vCPU index (the blob list follows). */
export function encodeVcpuPrefix(index: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, index, true);
  return b;
}

/** DEVICE_STATE envelope: u8 id length, id, u16 version, u8 encoding, u8 reserved; the state follows. */
export function encodeDeviceEnvelope(id: string, version: number, encoding: 'json' | 'binary'): Uint8Array {
  if (!DEVICE_ID.test(id)) throw new MigrationStreamError('corrupt', 'writer', `device id '${printable(id)}' is not allowed`);
  const b = new Uint8Array(1 + id.length + 4);
  b[0] = id.length;
  for (let i = 0; i < id.length; i++) b[1 + i] = id.charCodeAt(i);
  const dv = new DataView(b.buffer);
  dv.setUint16(1 + id.length, version, true);
  dv.setUint8(3 + id.length, encoding === 'json' ? DeviceEncoding.JSON : DeviceEncoding.BINARY);
  return b;
}

/** A JSON body (END, ACCEPT, READY, a device's JSON state). */
export function encodeJsonBody(value: unknown): Uint8Array {
  return jsonBytes(value);
}

/** ERROR body: {message, code?}, the message cut to 4096 characters. */
export function encodeError(message: string, code?: string): Uint8Array {
  return jsonBytes(code === undefined ? { message: message.slice(0, MAX_ERROR_MESSAGE) } : { message: message.slice(0, MAX_ERROR_MESSAGE), code: code.slice(0, 64) });
}

// --- Decoders -------------------------------------------------------------------------------------

function decodeBlobs(c: Cursor, where: string, limits: StreamLimits): Blobs {
  const count = c.u16('the blob count');
  if (count > limits.blobs) throw new MigrationStreamError('limit', where, `${where}: ${count} blobs, at most ${limits.blobs} allowed`);
  const blobs: Blobs = new Map();
  for (let i = 0; i < count; i++) {
    const nameLen = c.u8(`blob ${i}'s name length`);
    const name = c.ascii(nameLen, `blob ${i}'s name`, BLOB_NAME);
    if (blobs.has(name)) throw new MigrationStreamError('corrupt', where, `${where}: blob '${name}' appears twice`);
    const len = c.u32(`blob '${name}''s length`);
    blobs.set(name, c.take(len, `blob '${name}'`));
  }
  c.done();
  return blobs;
}

/**
 * Decodes the body of a fully received section other than RAM_PAGES. `body` must be owned by the caller
 * (not a reused read buffer): blobs and binary device state are views of it.
 */
export function decodeSection(type: SectionType, body: Uint8Array, limits: StreamLimits): StreamMessage {
  const where = sectionName(type);
  const c = new Cursor(body, where);
  switch (type) {
    case SectionType.CONFIG:
      return { type: 'config', description: parseVmDescription(json(body, where)) };
    case SectionType.RAM_PASS_END: {
      const pass = c.u32('the pass number');
      const dirtySyncs = c.u32('the dirty-sync count');
      const flags = c.u32('the flags');
      c.done();
      if ((flags & ~PASS_FINAL) !== 0) throw new MigrationStreamError('unsupported', where, `${where}: unknown flags 0x${flags.toString(16)}`);
      return { type: 'pass-end', pass, dirtySyncs, final: (flags & PASS_FINAL) !== 0 };
    }
    case SectionType.CHANNEL_SYNC: {
      const pass = c.u32('the pass number');
      const flags = c.u32('the flags');
      c.done();
      if ((flags & ~PASS_FINAL) !== 0) throw new MigrationStreamError('unsupported', where, `${where}: unknown flags 0x${flags.toString(16)}`);
      return { type: 'channel-sync', pass, final: (flags & PASS_FINAL) !== 0 };
    }
    case SectionType.VCPU_STATE: {
      const index = c.u32('the vCPU index');
      return { type: 'vcpu', index, blobs: decodeBlobs(c, where, limits) };
    }
    case SectionType.IRQCHIP:
      return { type: 'irqchip', blobs: decodeBlobs(c, where, limits) };
    case SectionType.PIT:
      return { type: 'pit', blobs: decodeBlobs(c, where, limits) };
    case SectionType.CLOCK:
      return { type: 'clock', blobs: decodeBlobs(c, where, limits) };
    case SectionType.DEVICE_STATE: {
      const id = c.ascii(c.u8('the device id length'), 'the device id', DEVICE_ID);
      const version = c.u16('the device state version');
      const encoding = c.u8('the encoding');
      if (c.u8('the reserved byte') !== 0) throw new MigrationStreamError('corrupt', where, `${where}: reserved byte of device '${id}' is not zero`);
      const state = c.rest();
      if (encoding === DeviceEncoding.BINARY) return { type: 'device', id, version, encoding: 'binary', bytes: state };
      if (encoding !== DeviceEncoding.JSON) throw new MigrationStreamError('unsupported', where, `${where}: device '${id}' uses unknown state encoding ${encoding}`);
      return { type: 'device', id, version, encoding: 'json', state: json(state, `${where} '${id}'`) };
    }
    case SectionType.END:
      return { type: 'end', summary: summary(json(body, where), where) };
    case SectionType.READY:
      return { type: 'ready', summary: summary(json(body, where), where) };
    case SectionType.RUN:
      c.done();
      return { type: 'run' };
    case SectionType.RUNNING:
      c.done();
      return { type: 'running' };
    case SectionType.PASS_ACK: {
      const pass = c.u32('the pass number');
      c.done();
      return { type: 'pass-ack', pass };
    }
    case SectionType.ACCEPT: {
      const v = json(body, where) as Record<string, unknown> | null;
      const major = v?.major;
      const minor = v?.minor;
      if (typeof major !== 'number' || typeof minor !== 'number' || !Number.isInteger(major) || !Number.isInteger(minor)) {
        throw new MigrationStreamError('corrupt', where, `${where}: body must be {"major": n, "minor": n}`);
      }
      return { type: 'accept', major, minor };
    }
    case SectionType.ERROR: {
      const v = json(body, where) as Record<string, unknown> | null;
      if (typeof v?.message !== 'string') throw new MigrationStreamError('corrupt', where, `${where}: body must carry a message string`);
      const message = v.message.slice(0, MAX_ERROR_MESSAGE);
      return typeof v.code === 'string' ? { type: 'error', message, code: v.code.slice(0, 64) } : { type: 'error', message };
    }
    case SectionType.RAM_PAGES:
      throw new MigrationStreamError('corrupt', where, 'RAM_PAGES is streamed, not decoded whole');
  }
}
