// The migration stream's constants, layouts, limits and message types, and the one table of section order.

import { MigrationStreamError } from './errors.js';
import type { VmDescription } from './description.js';

/** First bytes of every stream: a high byte so 7-bit channels and text files are caught, then "TSVMIG\n". */
export const STREAM_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x54, 0x53, 0x56, 0x4d, 0x49, 0x47, 0x0a);

/**
 * Format version this build writes and reads. A destination reads a stream with the same major and a
 * minor no newer than its own: minors only add things an older stream never contains.
 */
export const FORMAT_MAJOR = 1;
/**
 * See FORMAT_MAJOR. 1.1 added multifd data channels (CHANNEL preamble, CHANNEL_SYNC, the PASS_ACK reply),
 * zlib-compressed RAM_PAGES batches (batch flag BATCH_ZLIB) and XBZRLE page deltas.
 */
export const FORMAT_MINOR = 1;


/** The only architecture tsvirt runs; sent so a future port refuses streams it cannot load. */
export const STREAM_ARCH = 'x86_64';

/** Fixed part of the stream header: magic (8), major (u16), minor (u16), length of the rest (u32). */
export const STREAM_HEADER_FIXED = 16;
/** Every section starts with type (u16), version (u16) and body length (u32). */
export const SECTION_HEADER_SIZE = 8;
/** RAM_PAGES body start: region (u16), reserved (u16), entry count (u32). */
export const RAM_BATCH_HEADER_SIZE = 8;
/** One RAM_PAGES entry: first page (u32), page count (u32), encoding (u8), 3 reserved, payload length (u32). */
export const RAM_ENTRY_SIZE = 16;
/** Guest page size the stream counts in. */
export const PAGE_SIZE = 4096;

/** Section type codes. Codes from 0x20 flow from the destination back to the source; ERROR flows both ways. */
export const SectionType = {
  CONFIG: 0x01,
  RAM_PAGES: 0x02,
  RAM_PASS_END: 0x03,
  VCPU_STATE: 0x04,
  IRQCHIP: 0x05,
  PIT: 0x06,
  CLOCK: 0x07,
  DEVICE_STATE: 0x08,
  /** Ends a multifd channel's share of one pass (body: u32 pass, u32 flags); the final one ends the channel. */
  CHANNEL_SYNC: 0x09,
  END: 0x0f,
  RUN: 0x10,
  ACCEPT: 0x20,
  READY: 0x21,
  RUNNING: 0x22,
  /** Multifd: every channel's pages of pass N (body: u32 N) are in guest memory here; the source judges the next pass by it. */
  PASS_ACK: 0x23,
  ERROR: 0x7f,
} as const;
/** A section type code. */
export type SectionType = (typeof SectionType)[keyof typeof SectionType];

const NAMES = new Map<number, string>(Object.entries(SectionType).map(([name, code]) => [code, name]));

/** `RAM_PAGES` for a known code, `section type 0x1234` otherwise (so messages can always name it). */
export function sectionName(type: number): string {
  return NAMES.get(type) ?? `section type 0x${type.toString(16).padStart(2, '0')}`;
}

/** True for codes this build understands. */
export function isSectionType(type: number): type is SectionType {
  return NAMES.has(type);
}

/**
 * Body layout version of each section type this build writes and the oldest it still reads. A layout
 * change bumps the version and keeps a decoder for the old one, so older sources stay readable.
 */
export const SECTION_VERSIONS: Readonly<Record<SectionType, { readonly current: number; readonly oldest: number }>> = {
  [SectionType.CONFIG]: { current: 1, oldest: 1 },
  [SectionType.RAM_PAGES]: { current: 1, oldest: 1 },
  [SectionType.RAM_PASS_END]: { current: 1, oldest: 1 },
  [SectionType.VCPU_STATE]: { current: 1, oldest: 1 },
  [SectionType.IRQCHIP]: { current: 1, oldest: 1 },
  [SectionType.PIT]: { current: 1, oldest: 1 },
  [SectionType.CLOCK]: { current: 1, oldest: 1 },
  [SectionType.DEVICE_STATE]: { current: 1, oldest: 1 },
  [SectionType.CHANNEL_SYNC]: { current: 1, oldest: 1 },
  [SectionType.END]: { current: 1, oldest: 1 },
  [SectionType.RUN]: { current: 1, oldest: 1 },
  [SectionType.ACCEPT]: { current: 1, oldest: 1 },
  [SectionType.READY]: { current: 1, oldest: 1 },
  [SectionType.RUNNING]: { current: 1, oldest: 1 },
  [SectionType.PASS_ACK]: { current: 1, oldest: 1 },
  [SectionType.ERROR]: { current: 1, oldest: 1 },
};

/** How the pages of one RAM_PAGES entry are carried. Codes without a decoder here are refused by name. */
export const PageEncoding = {
  /** All bytes zero: no payload. */
  ZERO: 0,
  /** The pages' bytes as they are: payload = pages x 4096. */
  NORMAL: 1,
  /**
   * One page as a delta against the copy the source sent before (QEMU's XBZRLE idea; see xbzrle.ts): pairs of
   * (unchanged byte count, changed byte count, changed bytes), counts as LEB128. Payload: the delta.
   */
  XBZRLE: 2,
  /** Reserved: the pages zlib-compressed as one block. */
  ZLIB: 3,
  /** Reserved: the pages zstd-compressed as one block. */
  ZSTD: 4,
} as const;
/** A page encoding code. */
export type PageEncoding = (typeof PageEncoding)[keyof typeof PageEncoding];

/** RAM_PAGES batch flag (in the header's former reserved u16): the NORMAL payload follows as one raw-deflate block. */
export const BATCH_ZLIB = 1;
/** Largest zlib block a batch may carry for `raw` bytes of pages (deflate's worst case plus slack). */
export function maxZlibPayload(raw: number): number {
  return raw + Math.ceil(raw / 1000) + 1024;
}
/** Every batch flag this build understands. */
export const BATCH_FLAGS = BATCH_ZLIB;

/** First bytes of a multifd data channel: "\x89TSVCHN\n". */
export const CHANNEL_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x54, 0x53, 0x56, 0x43, 0x48, 0x4e, 0x0a);
/** Channel preamble: magic (8), major (u16), minor (u16), channel index (u16), channel count (u16), session (16 bytes). */
export const CHANNEL_PREAMBLE_SIZE = 32;
/** Length of the session id that ties data channels to their main stream (hex in CONFIG, raw in the preamble). */
export const SESSION_BYTES = 16;

/** RAM_PASS_END flag: this pass ran with the vCPUs stopped; device and vCPU state follow. */
export const PASS_FINAL = 1;

/** DEVICE_STATE body encodings. */
export const DeviceEncoding = { JSON: 0, BINARY: 1 } as const;

/** Caps the reader enforces before it allocates anything; a stream that exceeds one is refused. */
export interface StreamLimits {
  /** Bytes after the fixed stream header (architecture, vendor and later additions). */
  readonly headerRest: number;
  /** CONFIG JSON. */
  readonly configBytes: number;
  /** Pages one RAM_PAGES section may carry (its payload is at most this x 4096). */
  readonly batchPages: number;
  /** Entries one RAM_PAGES section may list. */
  readonly batchEntries: number;
  /** One VCPU_STATE body. */
  readonly vcpuBytes: number;
  /** Named blobs in one VCPU_STATE, IRQCHIP, PIT or CLOCK body. */
  readonly blobs: number;
  /** One IRQCHIP, PIT or CLOCK body. */
  readonly chipBytes: number;
  /** One DEVICE_STATE body (and one device's JSON). */
  readonly deviceBytes: number;
  /** END, RUN and the control messages. */
  readonly controlBytes: number;
}

/** Defaults: generous for the machine tsvirt builds, small enough that a hostile stream cannot exhaust memory. */
export const DEFAULT_LIMITS: StreamLimits = {
  headerRest: 256,
  configBytes: 1024 * 1024,
  batchPages: 4096,
  batchEntries: 4096,
  vcpuBytes: 1024 * 1024,
  blobs: 32,
  chipBytes: 64 * 1024,
  deviceBytes: 4 * 1024 * 1024,
  controlBytes: 64 * 1024,
};

/** Largest body a section of `type` may declare under `limits`. */
export function maxBodySize(type: SectionType, limits: StreamLimits): number {
  switch (type) {
    case SectionType.CONFIG: return limits.configBytes;
    case SectionType.RAM_PAGES: return RAM_BATCH_HEADER_SIZE + limits.batchEntries * RAM_ENTRY_SIZE + limits.batchPages * PAGE_SIZE;
    case SectionType.RAM_PASS_END: return 12;
    case SectionType.CHANNEL_SYNC: return 8;
    case SectionType.PASS_ACK: return 4;
    case SectionType.VCPU_STATE: return limits.vcpuBytes;
    case SectionType.IRQCHIP:
    case SectionType.PIT:
    case SectionType.CLOCK: return limits.chipBytes;
    case SectionType.DEVICE_STATE: return limits.deviceBytes;
    case SectionType.RUN:
    case SectionType.RUNNING: return 0;
    default: return limits.controlBytes;
  }
}

/** What a stream carried, counted by both ends; END carries the source's, READY the destination's. */
export interface StreamSummary {
  passes: number;
  normalPages: number;
  zeroPages: number;
  vcpus: number;
  devices: number;
}

/** Differences between two summaries, as `member: sent X, received Y` (empty when they agree). */
export function compareSummaries(sent: StreamSummary, received: StreamSummary): string[] {
  const out: string[] = [];
  for (const key of ['passes', 'normalPages', 'zeroPages', 'vcpus', 'devices'] as const) {
    if (sent[key] !== received[key]) out.push(`${key}: sent ${sent[key]}, received ${received[key]}`);
  }
  return out;
}

/** The stream header as read. */
export interface StreamHeader {
  major: number;
  minor: number;
  arch: string;
  vendor: string;
}

/** Named raw blobs (KVM structures) of one vCPU, irqchip, PIT or clock. */
export type Blobs = Map<string, Uint8Array>;

/** Everything except RAM pages, in stream order (RAM goes straight to the sink's views). */
export type StreamMessage =
  | { type: 'header'; header: StreamHeader }
  | { type: 'config'; description: VmDescription }
  | { type: 'pass-end'; pass: number; dirtySyncs: number; final: boolean }
  | { type: 'channel-sync'; pass: number; final: boolean }
  | { type: 'channel'; major: number; minor: number; index: number; count: number; session: string }
  | { type: 'vcpu'; index: number; blobs: Blobs }
  | { type: 'irqchip' | 'pit' | 'clock'; blobs: Blobs }
  | { type: 'device'; id: string; version: number; encoding: 'json'; state: unknown }
  | { type: 'device'; id: string; version: number; encoding: 'binary'; bytes: Uint8Array }
  | { type: 'end'; summary: StreamSummary }
  | { type: 'run' }
  | { type: 'accept'; major: number; minor: number }
  | { type: 'ready'; summary: StreamSummary }
  | { type: 'running' }
  | { type: 'pass-ack'; pass: number }
  | { type: 'error'; message: string; code?: string };

/** Which direction a reader or writer handles: the source's stream, or the destination's replies. */
export type StreamDirection = 'stream' | 'replies' | 'channel';

type Phase = 'config' | 'ram' | 'state' | 'end' | 'accept' | 'ready' | 'running' | 'channel' | 'done';

/** Per phase, the sections allowed and the phase each leads to (ERROR is allowed in every phase but done). */
const ORDER: Readonly<Record<Phase, ReadonlyMap<SectionType, Phase>>> = {
  config: new Map([[SectionType.CONFIG, 'ram']]),
  ram: new Map<SectionType, Phase>([[SectionType.RAM_PAGES, 'ram'], [SectionType.RAM_PASS_END, 'ram']]),
  state: new Map<SectionType, Phase>([
    [SectionType.VCPU_STATE, 'state'], [SectionType.IRQCHIP, 'state'], [SectionType.PIT, 'state'],
    [SectionType.CLOCK, 'state'], [SectionType.DEVICE_STATE, 'state'], [SectionType.END, 'end'],
  ]),
  end: new Map([[SectionType.RUN, 'done']]),
  accept: new Map([[SectionType.ACCEPT, 'ready']]),
  ready: new Map<SectionType, Phase>([[SectionType.READY, 'running'], [SectionType.PASS_ACK, 'ready']]),
  running: new Map([[SectionType.RUNNING, 'done']]),
  channel: new Map<SectionType, Phase>([[SectionType.RAM_PAGES, 'channel'], [SectionType.CHANNEL_SYNC, 'channel']]),
  done: new Map(),
};

const EXPECTING: Readonly<Record<Phase, string>> = {
  config: 'CONFIG',
  ram: 'RAM_PAGES or RAM_PASS_END',
  state: 'VCPU_STATE, IRQCHIP, PIT, CLOCK, DEVICE_STATE or END',
  end: 'RUN',
  accept: 'ACCEPT',
  ready: 'READY or PASS_ACK',
  running: 'RUNNING',
  channel: 'RAM_PAGES or CHANNEL_SYNC',
  done: 'nothing (the stream is complete)',
};

/**
 * The order sections may come in, shared by reader and writer so both refuse the same streams:
 * header, CONFIG, RAM passes, a final pass (RAM_PASS_END with PASS_FINAL), state sections, END, then RUN;
 * replies are ACCEPT, READY, RUNNING. ERROR may end either direction at any point.
 */
export class SectionOrder {
  private phase: Phase;

  constructor(readonly direction: StreamDirection) {
    this.phase = direction === 'stream' ? 'config' : direction === 'channel' ? 'channel' : 'accept';
  }

  /** True once the direction's last section (RUN, RUNNING or an ERROR) has passed. */
  get complete(): boolean {
    return this.phase === 'done';
  }

  /** What may come next, for messages. */
  get expecting(): string {
    return this.phase === 'done' ? EXPECTING.done : `${EXPECTING[this.phase]} (or ERROR)`;
  }

  /** Throws an `order` MigrationStreamError unless `type` may come next; changes nothing. */
  check(type: SectionType): void {
    if (this.phase === 'done') {
      throw new MigrationStreamError('order', sectionName(type), `unexpected ${sectionName(type)} after the stream was complete`);
    }
    if (type !== SectionType.ERROR && !ORDER[this.phase].has(type)) {
      throw new MigrationStreamError('order', sectionName(type), `unexpected ${sectionName(type)}: expecting ${this.expecting}`);
    }
  }

  /** Accepts `type` and moves on, or throws as `check` does; `final` marks the RAM_PASS_END of the last pass. */
  admit(type: SectionType, final = false): void {
    this.check(type);
    if (type === SectionType.ERROR) this.phase = 'done';
    else if (final && type === SectionType.RAM_PASS_END) this.phase = 'state';
    else if (final && type === SectionType.CHANNEL_SYNC) this.phase = 'done';
    else this.phase = ORDER[this.phase].get(type)!;
  }
}
