// Incremental parser of a migration stream or its replies: hostile input fails typed, RAM pages land straight in guest memory.

import { TsvirtError } from '../machine/errors.js';
import type { VmDescription } from './description.js';
import { MigrationStreamError, type StreamFailure } from './errors.js';
import {
  BATCH_FLAGS,
  BATCH_ZLIB,
  CHANNEL_MAGIC,
  CHANNEL_PREAMBLE_SIZE,
  DEFAULT_LIMITS,
  compareSummaries,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  PAGE_SIZE,
  PageEncoding,
  RAM_BATCH_HEADER_SIZE,
  RAM_ENTRY_SIZE,
  SECTION_HEADER_SIZE,
  SECTION_VERSIONS,
  STREAM_HEADER_FIXED,
  STREAM_MAGIC,
  SectionOrder,
  SectionType,
  isSectionType,
  maxBodySize,
  maxZlibPayload,
  sectionName,
  type StreamDirection,
  type StreamLimits,
  type StreamMessage,
  type StreamSummary,
} from './format.js';
import { decodeSection, printable } from './sections.js';
import { applyDelta } from './xbzrle.js';
import { inflateRawSync } from 'node:zlib';

/** Where RAM pages go. Both calls name whole pages inside one range of the CONFIG's memory layout. */
export interface RamSink {
  /**
   * A view of exactly `length` bytes of RAM range `region` starting `offset` bytes into it: the reader
   * copies (or lets the kernel read) the NORMAL pages' bytes straight into it.
   */
  target(region: number, offset: number, length: number): Uint8Array;
  /** The source's pages [offset, offset+length) of range `region` are all zero (a fresh destination may skip them). */
  zero(region: number, offset: number, length: number): void;
}

/** How a reader is set up. */
export interface ReaderOptions {
  /**
   * `stream`: the source's header and sections (needs `ram`); `replies`: the destination's answers; `channel`: a
   * multifd data channel (needs `ram` and `config`, the main stream's CONFIG).
   */
  direction: StreamDirection;
  config?: VmDescription;
  /** Receives every non-RAM message in stream order; an exception here fails the reader and is rethrown as is. */
  onMessage(message: StreamMessage): void;
  ram?: RamSink;
  limits?: Partial<StreamLimits>;
  /** The format version this reader implements; tests pretend to be another build. */
  version?: { major: number; minor: number };
}

/** A RAM_PAGES entry after validation; `payload` is its byte count in the stream. */
interface RamEntry {
  firstPage: number;
  pageCount: number;
  encoding: number;
  payload: number;
}

type State = 'fixed-header' | 'header-rest' | 'section-head' | 'body' | 'ram-head' | 'ram-entries' | 'ram-payload' | 'ram-zlib' | 'done';

/** Wraps an exception from the caller's callbacks so it is rethrown untouched, not mistaken for a parser bug. */
class CallbackFailure {
  constructor(readonly error: unknown) {}
}

const EMPTY = new Uint8Array(0);
/** Size of the buffer `readBuffer` lends when the next bytes are not page data. */
const SCRATCH_SIZE = 64 * 1024;

const ENCODING_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(PageEncoding).map(([k, v]) => [v, k]));

/**
 * Parses bytes as they arrive, in chunks of any size. Every length, count and index is checked against
 * `limits` and the CONFIG before anything is allocated; malformed input throws MigrationStreamError (the
 * reader then stays failed). Feed it with `push(chunk)`, or with `readBuffer()` + `commit(n)` from
 * `net.connect({ onread })` so page data is read by the kernel directly into guest RAM. Call `finish()`
 * at end of input: a stream that ended early throws a `truncated` error there.
 */
export class StreamReader {
  private readonly limits: StreamLimits;
  private readonly order: SectionOrder;
  private readonly version: { major: number; minor: number };
  private state: State;
  private acc: Uint8Array;
  private accFill = 0;
  private readonly small = new Uint8Array(STREAM_HEADER_FIXED);
  private scratch?: Uint8Array;
  private lent?: { direct: boolean; view: Uint8Array };
  private failure?: unknown;

  private sectionType: SectionType = SectionType.CONFIG;
  private sectionLength = 0;
  private lastSection = 'the stream header';
  private headerVersion = { major: 0, minor: 0 };

  private ramRegion = 0;
  private ramFlags = 0;
  private zlibBuffer = EMPTY;
  private readonly delta = new Uint8Array(PAGE_SIZE);
  private ramEntries: RamEntry[] = [];
  private entryIndex = 0;
  private entryStarted = false;
  private payloadPos = 0;
  private ramView: Uint8Array = EMPTY;
  private ramConsumed = 0;

  private config?: VmDescription;
  private readonly vcpusSeen = new Set<number>();
  private readonly devicesSeen = new Set<string>();
  private readonly chipsSeen = new Set<string>();
  private readonly counts: StreamSummary = { passes: 0, normalPages: 0, zeroPages: 0, vcpus: 0, devices: 0 };
  private received = 0;

  constructor(private readonly options: ReaderOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.order = new SectionOrder(options.direction);
    this.version = options.version ?? { major: FORMAT_MAJOR, minor: FORMAT_MINOR };
    if (options.direction === 'stream') {
      if (!options.ram) throw new TsvirtError('ERR_MIGRATION_READER', 'a stream reader needs a RAM sink');
      this.state = 'fixed-header';
      this.acc = this.small;
    } else if (options.direction === 'channel') {
      if (!options.ram || !options.config) throw new TsvirtError('ERR_MIGRATION_READER', 'a channel reader needs a RAM sink and the CONFIG');
      this.config = options.config;
      this.state = 'fixed-header';
      this.acc = new Uint8Array(CHANNEL_PREAMBLE_SIZE);
    } else {
      this.state = 'section-head';
      this.acc = this.small.subarray(0, SECTION_HEADER_SIZE);
    }
  }

  /** True once the last message of the direction (RUN, RUNNING or ERROR) was parsed without error. */
  get done(): boolean {
    return this.state === 'done' && this.failure === undefined;
  }

  /** The error that stopped the reader, if one did (it is rethrown by every later call). */
  get failed(): unknown {
    return this.failure;
  }

  /** What the stream has carried so far; the destination sends it back in READY. */
  get summary(): StreamSummary {
    return { ...this.counts };
  }

  /** Bytes consumed so far. */
  get bytesReceived(): number {
    return this.received;
  }

  /** The source's CONFIG once it has arrived. */
  get description(): VmDescription | undefined {
    return this.config;
  }

  /** What the reader waits for, for timeout and log messages. */
  get expecting(): string {
    if (this.state === 'fixed-header' || this.state === 'header-rest') return 'the stream header';
    if (this.state === 'section-head') return this.order.expecting;
    if (this.state === 'done') return 'nothing (the stream is complete)';
    return `the rest of ${sectionName(this.sectionType)}`;
  }

  /** Parses `chunk` (which may be reused by the caller afterwards: nothing keeps a view of it). */
  push(chunk: Uint8Array): void {
    this.lent = undefined;
    this.guard(() => this.consume(chunk));
  }

  /**
   * The buffer the next read should fill: a view of guest RAM when page data comes next, else a scratch
   * buffer. Pair every call with `commit(n)`.
   */
  readBuffer(): Uint8Array {
    if (this.failure !== undefined) throw this.failure;
    if (this.state === 'ram-payload') this.guard(() => this.feedPayload(EMPTY, 0));
    if (this.state === 'ram-payload' && this.entryStarted && this.ramEntries[this.entryIndex].encoding === PageEncoding.NORMAL) {
      const e = this.ramEntries[this.entryIndex];
      this.lent = { direct: true, view: this.ramView.subarray(this.payloadPos, e.payload) };
    } else {
      this.scratch ??= new Uint8Array(SCRATCH_SIZE);
      this.lent = { direct: false, view: this.scratch };
    }
    return this.lent.view;
  }

  /** `n` bytes were read into the buffer the last `readBuffer()` returned. */
  commit(n: number): void {
    const lent = this.lent;
    this.lent = undefined;
    if (lent === undefined) throw new TsvirtError('ERR_MIGRATION_READER', 'commit() without a preceding readBuffer()');
    if (!Number.isInteger(n) || n < 0 || n > lent.view.length) throw new TsvirtError('ERR_MIGRATION_READER', `commit(${n}) outside the lent buffer of ${lent.view.length} bytes`);
    if (!lent.direct) {
      this.guard(() => this.consume(lent.view.subarray(0, n)));
      return;
    }
    this.guard(() => {
      this.payloadPos += n;
      this.ramConsumed += n;
      this.received += n;
      this.feedPayload(EMPTY, 0);
    });
  }

  /** The input ended: throws a `truncated` error unless the direction's last message has arrived. */
  finish(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.state === 'done') return;
    const where = this.state === 'fixed-header' && this.options.direction === 'channel' ? 'channel preamble' : this.state === 'fixed-header' || this.state === 'header-rest' ? 'stream header' : this.state === 'section-head' ? 'section header' : sectionName(this.sectionType);
    let detail: string;
    if (this.state === 'fixed-header' && this.accFill === 0) detail = 'the input ended before any data';
    else if (this.state === 'fixed-header' || this.state === 'header-rest') detail = `received ${this.accFill} of ${this.acc.length} bytes`;
    else if (this.state === 'section-head' && this.accFill === 0) detail = `the input ended after ${this.lastSection}, expecting ${this.order.expecting}`;
    else if (this.state === 'section-head') detail = `received ${this.accFill} of ${SECTION_HEADER_SIZE} bytes after ${this.lastSection}`;
    else if (this.state === 'body') detail = `received ${this.accFill} of ${this.sectionLength} body bytes`;
    else if (this.state === 'ram-zlib') detail = `received ${this.sectionLength - this.acc.length + this.accFill} of ${this.sectionLength} body bytes`;
    else {
      const consumed = this.state === 'ram-head' ? this.accFill : this.state === 'ram-entries' ? RAM_BATCH_HEADER_SIZE + this.accFill : this.ramConsumed;
      detail = `received ${consumed} of ${this.sectionLength} body bytes`;
    }
    this.failure = new MigrationStreamError('truncated', where, `truncated stream in ${where}: ${detail}`);
    throw this.failure;
  }

  private guard(fn: () => void): void {
    if (this.failure !== undefined) throw this.failure;
    try {
      fn();
    } catch (e) {
      const where = this.state === 'section-head' ? 'section header' : sectionName(this.sectionType);
      this.failure = e instanceof CallbackFailure ? e.error
        : e instanceof TsvirtError ? e
        : new MigrationStreamError('corrupt', where, `${where}: internal parser error: ${String(e)}`);
      this.state = 'done';
      throw this.failure;
    }
  }

  private callback(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      throw new CallbackFailure(e);
    }
  }

  private fail(reason: StreamFailure, message: string, where = sectionName(this.sectionType)): never {
    throw new MigrationStreamError(reason, where, message);
  }

  private expect(n: number): void {
    this.acc = n <= this.small.length ? this.small.subarray(0, n) : new Uint8Array(n);
    this.accFill = 0;
  }

  private consume(chunk: Uint8Array): void {
    let off = 0;
    for (;;) {
      if (this.state === 'ram-payload') {
        off = this.feedPayload(chunk, off);
        if (this.state === 'ram-payload') return;
        continue;
      }
      if (this.state === 'done') {
        if (off < chunk.length) this.fail('order', `${chunk.length - off} bytes of data after the stream was complete`, 'after the stream');
        return;
      }
      const n = Math.min(this.acc.length - this.accFill, chunk.length - off);
      if (n > 0) {
        this.acc.set(chunk.subarray(off, off + n), this.accFill);
        this.accFill += n;
        off += n;
        this.received += n;
      }
      if (this.accFill < this.acc.length) return;
      this.complete();
    }
  }

  private complete(): void {
    const dv = new DataView(this.acc.buffer, this.acc.byteOffset, this.acc.byteLength);
    switch (this.state) {
      case 'fixed-header': return this.fixedHeader(dv);
      case 'header-rest': return this.headerRest();
      case 'section-head': return this.sectionHead(dv);
      case 'body': return this.body();
      case 'ram-head': return this.ramHead(dv);
      case 'ram-entries': return this.ramEntriesRead(dv);
      case 'ram-zlib': return this.ramZlib();
    }
  }

  private channelPreamble(dv: DataView): void {
    const where = 'channel preamble';
    for (let i = 0; i < CHANNEL_MAGIC.length; i++) {
      if (this.acc[i] !== CHANNEL_MAGIC[i]) this.fail('corrupt', 'channel preamble: bad magic (this is not a tsvirt multifd channel)', where);
    }
    const major = dv.getUint16(8, true);
    const minor = dv.getUint16(10, true);
    const ours = `${this.version.major}.${this.version.minor}`;
    if (major !== this.version.major || minor > this.version.minor) this.fail('version', `channel preamble: format ${major}.${minor} cannot be read by this tsvirt (format ${ours})`, where);
    const index = dv.getUint16(12, true);
    const count = dv.getUint16(14, true);
    if (count === 0 || index >= count) this.fail('corrupt', `channel preamble: channel ${index} of ${count}`, where);
    const session = Buffer.from(this.acc.subarray(16, 32)).toString('hex');
    this.headerVersion = { major, minor };
    this.lastSection = 'the channel preamble';
    this.state = 'section-head';
    this.expect(SECTION_HEADER_SIZE);
    this.emit({ type: 'channel', major, minor, index, count, session });
  }

  private fixedHeader(dv: DataView): void {
    if (this.options.direction === 'channel') return this.channelPreamble(dv);
    const where = 'stream header';
    for (let i = 0; i < STREAM_MAGIC.length; i++) {
      if (this.acc[i] !== STREAM_MAGIC[i]) this.fail('corrupt', 'stream header: bad magic (this is not a tsvirt migration stream)', where);
    }
    const major = dv.getUint16(8, true);
    const minor = dv.getUint16(10, true);
    const rest = dv.getUint32(12, true);
    const ours = `${this.version.major}.${this.version.minor}`;
    if (major !== this.version.major) this.fail('version', `stream header: format ${major}.${minor} cannot be read by this tsvirt (format ${ours}; the major version must match)`, where);
    if (minor > this.version.minor) this.fail('version', `stream header: format ${major}.${minor} is newer than this tsvirt reads (${ours}); upgrade the destination`, where);
    if (rest > this.limits.headerRest) this.fail('limit', `stream header: ${rest} header bytes exceed the ${this.limits.headerRest}-byte limit`, where);
    if (rest < 2) this.fail('corrupt', `stream header: ${rest} header bytes cannot hold the architecture and CPU vendor`, where);
    this.headerVersion = { major, minor };
    this.state = 'header-rest';
    this.expect(rest);
  }

  private headerRest(): void {
    const where = 'stream header';
    const b = this.acc;
    let pos = 0;
    const text = (what: string): string => {
      const len = b[pos++];
      if (len === undefined || len === 0 || pos + len > b.length) this.fail('corrupt', `stream header: ${what} does not fit the header`, where);
      const s = String.fromCharCode(...b.subarray(pos, pos + len));
      pos += len;
      if (!/^[\x20-\x7e]+$/.test(s)) this.fail('corrupt', `stream header: ${what} '${printable(s)}' is not printable ASCII`, where);
      return s;
    };
    const arch = text('the architecture');
    const vendor = text('the CPU vendor');
    // Bytes after the vendor belong to newer minor versions of the header: an older reader skips them.
    this.lastSection = 'the stream header';
    this.state = 'section-head';
    this.expect(SECTION_HEADER_SIZE);
    this.emit({ type: 'header', header: { ...this.headerVersion, arch, vendor } });
  }

  private sectionHead(dv: DataView): void {
    const type = dv.getUint16(0, true);
    const version = dv.getUint16(2, true);
    const length = dv.getUint32(4, true);
    const where = 'section header';
    if (!isSectionType(type)) this.fail('unsupported', `unknown ${sectionName(type)} after ${this.lastSection} (this tsvirt reads format ${this.version.major}.${this.version.minor})`, where);
    const name = sectionName(type);
    const v = SECTION_VERSIONS[type];
    if (version > v.current) this.fail('unsupported', `${name} version ${version} is newer than this tsvirt reads (${v.current})`, name);
    if (version < v.oldest) this.fail('unsupported', `${name} version ${version} is older than this tsvirt still reads (${v.oldest})`, name);
    const max = maxBodySize(type, this.limits);
    if (length > max) this.fail('limit', `${name} of ${length} bytes exceeds the ${max}-byte limit`, name);
    // RAM_PASS_END is admitted once its body says whether it ends the final pass; until then only checked.
    if (type === SectionType.RAM_PASS_END || type === SectionType.CHANNEL_SYNC) this.order.check(type);
    else this.order.admit(type);
    this.sectionType = type;
    this.sectionLength = length;
    if (type === SectionType.RAM_PAGES) {
      if (length < RAM_BATCH_HEADER_SIZE) this.fail('corrupt', `RAM_PAGES: body of ${length} bytes is shorter than its ${RAM_BATCH_HEADER_SIZE}-byte header`);
      this.ramConsumed = 0;
      this.state = 'ram-head';
      this.expect(RAM_BATCH_HEADER_SIZE);
      return;
    }
    this.state = 'body';
    this.expect(length);
  }

  private body(): void {
    const type = this.sectionType;
    const msg = decodeSection(type, this.acc, this.limits);
    this.expect(SECTION_HEADER_SIZE);
    this.lastSection = sectionName(type);
    this.state = 'section-head';
    this.check(msg);
    if (msg.type === 'run' || msg.type === 'running' || msg.type === 'error') this.state = 'done';
    this.emit(msg);
  }

  /** Checks that need what came before (the CONFIG, earlier sections); updates the counts. */
  private check(msg: StreamMessage): void {
    const where = sectionName(this.sectionType);
    switch (msg.type) {
      case 'config':
        this.config = msg.description;
        return;
      case 'pass-end':
        if (msg.pass !== this.counts.passes + 1) this.fail('order', `RAM_PASS_END: pass ${msg.pass} after pass ${this.counts.passes}`);
        this.order.admit(SectionType.RAM_PASS_END, msg.final);
        this.counts.passes = msg.pass;
        return;
      case 'channel-sync':
        if (msg.pass <= this.counts.passes) this.fail('order', `CHANNEL_SYNC: pass ${msg.pass} after pass ${this.counts.passes}`);
        this.order.admit(SectionType.CHANNEL_SYNC, msg.final);
        this.counts.passes = msg.pass;
        if (msg.final) this.state = 'done';
        return;
      case 'vcpu': {
        const n = this.config?.vcpus ?? 0;
        if (msg.index >= n) this.fail('corrupt', `VCPU_STATE: vCPU index ${msg.index} out of range (CONFIG has ${n} vCPUs)`);
        if (this.vcpusSeen.has(msg.index)) this.fail('corrupt', `VCPU_STATE: vCPU ${msg.index} sent twice`);
        this.vcpusSeen.add(msg.index);
        this.counts.vcpus++;
        return;
      }
      case 'irqchip':
      case 'pit':
      case 'clock':
        if (this.chipsSeen.has(msg.type)) this.fail('corrupt', `${where}: sent twice`);
        this.chipsSeen.add(msg.type);
        return;
      case 'device':
        if (this.devicesSeen.has(msg.id)) this.fail('corrupt', `DEVICE_STATE: device '${msg.id}' sent twice`);
        this.devicesSeen.add(msg.id);
        this.counts.devices++;
        return;
      case 'end':
        this.checkEnd(msg.summary);
        return;
      default:
        return;
    }
  }

  private checkEnd(sent: StreamSummary): void {
    const cfg = this.config!;
    const missingVcpus: number[] = [];
    for (let i = 0; i < cfg.vcpus; i++) if (!this.vcpusSeen.has(i)) missingVcpus.push(i);
    if (missingVcpus.length) this.fail('corrupt', `END: no VCPU_STATE for vCPU ${missingVcpus.join(', ')}`);
    const missingDevices = cfg.devices.filter((d) => !this.devicesSeen.has(d.id)).map((d) => `'${d.id}'`);
    if (missingDevices.length) this.fail('corrupt', `END: no DEVICE_STATE for device ${missingDevices.join(', ')}`);
    const missingChips = ['irqchip', 'pit', 'clock'].filter((c) => !this.chipsSeen.has(c)).map((c) => c.toUpperCase());
    if (missingChips.length) this.fail('corrupt', `END: no ${missingChips.join(', ')} section`);
    const diffs = compareSummaries(sent, this.counts);
    if (diffs.length) this.fail('corrupt', `END: the source's summary disagrees with the stream (${diffs.join('; ')})`);
  }

  private ramHead(dv: DataView): void {
    const region = dv.getUint16(0, true);
    const flags = dv.getUint16(2, true);
    const count = dv.getUint32(4, true);
    const ranges = this.config!.memory.ranges;
    if ((flags & ~BATCH_FLAGS) !== 0) this.fail('unsupported', `RAM_PAGES: unknown batch flags 0x${flags.toString(16)}`);
    if (flags !== 0 && this.headerVersion.minor < 1) this.fail('corrupt', `RAM_PAGES: batch flags 0x${flags.toString(16)} in a format ${this.headerVersion.major}.${this.headerVersion.minor} stream`);
    this.ramFlags = flags;
    if (region >= ranges.length) this.fail('corrupt', `RAM_PAGES: region ${region} out of range (CONFIG has ${ranges.length} memory ranges)`);
    if (count === 0) this.fail('corrupt', 'RAM_PAGES: batch has no entries');
    if (count > this.limits.batchEntries) this.fail('limit', `RAM_PAGES: ${count} entries exceed the limit of ${this.limits.batchEntries}`);
    if (RAM_BATCH_HEADER_SIZE + count * RAM_ENTRY_SIZE > this.sectionLength) {
      this.fail('corrupt', `RAM_PAGES: ${count} entries do not fit a body of ${this.sectionLength} bytes`);
    }
    this.ramRegion = region;
    this.ramConsumed = RAM_BATCH_HEADER_SIZE;
    this.state = 'ram-entries';
    this.expect(count * RAM_ENTRY_SIZE);
  }

  private ramEntriesRead(dv: DataView): void {
    const count = this.acc.length / RAM_ENTRY_SIZE;
    const regionPages = this.config!.memory.ranges[this.ramRegion].size / PAGE_SIZE;
    const entries: RamEntry[] = [];
    let pages = 0;
    let payloadTotal = 0;
    for (let i = 0; i < count; i++) {
      const at = i * RAM_ENTRY_SIZE;
      const firstPage = dv.getUint32(at, true);
      const pageCount = dv.getUint32(at + 4, true);
      const encoding = dv.getUint8(at + 8);
      const reserved = dv.getUint8(at + 9) | dv.getUint8(at + 10) | dv.getUint8(at + 11);
      const payload = dv.getUint32(at + 12, true);
      const what = `RAM_PAGES entry ${i}`;
      if (reserved !== 0) this.fail('corrupt', `${what}: reserved bytes are not zero`);
      if (pageCount === 0) this.fail('corrupt', `${what}: no pages`);
      if (firstPage + pageCount > regionPages) {
        this.fail('corrupt', `${what}: pages ${firstPage}..${firstPage + pageCount - 1} lie outside region ${this.ramRegion} (${regionPages} pages)`);
      }
      pages += pageCount;
      if (pages > this.limits.batchPages) this.fail('limit', `RAM_PAGES: more than ${this.limits.batchPages} pages in one batch`);
      if (encoding === PageEncoding.ZERO) {
        if (payload !== 0) this.fail('corrupt', `${what}: ZERO pages carry ${payload} payload bytes`);
      } else if (encoding === PageEncoding.NORMAL) {
        if (payload !== pageCount * PAGE_SIZE) this.fail('corrupt', `${what}: ${pageCount} NORMAL pages carry ${payload} bytes, not ${pageCount * PAGE_SIZE}`);
      } else if (encoding === PageEncoding.XBZRLE && this.headerVersion.minor >= 1) {
        if (pageCount !== 1) this.fail('corrupt', `${what}: an XBZRLE entry covers one page, not ${pageCount}`);
        if (payload > PAGE_SIZE) this.fail('corrupt', `${what}: XBZRLE delta of ${payload} bytes is larger than a page`);
        if (this.ramFlags & BATCH_ZLIB) this.fail('corrupt', `${what}: XBZRLE entry in a zlib batch`);
      } else if (ENCODING_NAMES[encoding] !== undefined) {
        this.fail('unsupported', `${what}: page encoding ${ENCODING_NAMES[encoding]} is not supported by this tsvirt`);
      } else {
        this.fail('unsupported', `${what}: unknown page encoding ${encoding}`);
      }
      payloadTotal += payload;
      entries.push({ firstPage, pageCount, encoding, payload });
    }
    const fixed = RAM_BATCH_HEADER_SIZE + count * RAM_ENTRY_SIZE;
    this.ramEntries = entries;
    if (this.ramFlags & BATCH_ZLIB) {
      const packed = this.sectionLength - fixed;
      if (packed <= 0 || packed > maxZlibPayload(payloadTotal)) this.fail('corrupt', `RAM_PAGES: a zlib block of ${packed} bytes cannot hold ${payloadTotal} bytes of pages`);
      this.ramConsumed += count * RAM_ENTRY_SIZE;
      this.state = 'ram-zlib';
      if (this.zlibBuffer.length < packed) this.zlibBuffer = new Uint8Array(Math.max(packed, 1 << 20));
      this.acc = this.zlibBuffer.subarray(0, packed);
      this.accFill = 0;
      return;
    }
    const expected = fixed + payloadTotal;
    if (expected !== this.sectionLength) this.fail('corrupt', `RAM_PAGES: entries describe ${expected} bytes but the section is ${this.sectionLength}`);
    this.entryIndex = 0;
    this.entryStarted = false;
    this.payloadPos = 0;
    this.ramConsumed += count * RAM_ENTRY_SIZE;
    this.state = 'ram-payload';
  }

  /** A zlib batch's block has arrived: inflate it and scatter its pages into guest RAM, entry by entry. */
  private ramZlib(): void {
    const sink = this.options.ram!;
    const raw = this.ramEntries.reduce((n, e) => n + e.payload, 0);
    let pages: Uint8Array;
    try {
      // One output chunk of the known size: the default 16 KiB chunks plus their concatenation halve inflate's speed.
      pages = inflateRawSync(this.acc, { maxOutputLength: Math.max(raw, 1), chunkSize: Math.max(raw, 64) });
    } catch (e) {
      this.fail('corrupt', `RAM_PAGES: the zlib block does not inflate: ${(e as Error).message}`);
    }
    if (pages.length !== raw) this.fail('corrupt', `RAM_PAGES: the zlib block holds ${pages.length} bytes, the entries ${raw}`);
    let at = 0;
    for (const e of this.ramEntries) {
      const offset = e.firstPage * PAGE_SIZE;
      if (e.encoding === PageEncoding.ZERO) {
        this.callback(() => sink.zero(this.ramRegion, offset, e.pageCount * PAGE_SIZE));
        this.counts.zeroPages += e.pageCount;
        continue;
      }
      let view: Uint8Array = EMPTY;
      this.callback(() => {
        view = sink.target(this.ramRegion, offset, e.payload);
      });
      if (!(view instanceof Uint8Array) || view.length !== e.payload) throw new CallbackFailure(new TsvirtError('ERR_MIGRATION_READER', `RAM sink returned a wrong view for a ${e.payload}-byte run`));
      view.set(pages.subarray(at, at + e.payload));
      at += e.payload;
      this.counts.normalPages += e.pageCount;
    }
    this.ramEntries = [];
    this.lastSection = 'RAM_PAGES';
    this.state = 'section-head';
    this.expect(SECTION_HEADER_SIZE);
  }

  /** Moves page data from `chunk` (from `off`) into guest RAM; returns where it stopped. */
  private feedPayload(chunk: Uint8Array, off: number): number {
    const sink = this.options.ram!;
    while (this.state === 'ram-payload') {
      const e = this.ramEntries[this.entryIndex];
      const offset = e.firstPage * PAGE_SIZE;
      if (!this.entryStarted) {
        this.entryStarted = true;
        this.payloadPos = 0;
        if (e.encoding === PageEncoding.ZERO) {
          this.callback(() => sink.zero(this.ramRegion, offset, e.pageCount * PAGE_SIZE));
        } else {
          const length = e.encoding === PageEncoding.XBZRLE ? PAGE_SIZE : e.payload;
          let view: Uint8Array = EMPTY;
          this.callback(() => {
            view = sink.target(this.ramRegion, offset, length);
          });
          if (!(view instanceof Uint8Array) || view.length !== length) {
            throw new CallbackFailure(new TsvirtError('ERR_MIGRATION_READER', `RAM sink returned ${view instanceof Uint8Array ? view.length : 'no'} bytes for a ${length}-byte run`));
          }
          this.ramView = view;
        }
      }
      const need = e.payload - this.payloadPos;
      if (need > 0) {
        if (off >= chunk.length) return off;
        const n = Math.min(need, chunk.length - off);
        (e.encoding === PageEncoding.XBZRLE ? this.delta : this.ramView).set(chunk.subarray(off, off + n), this.payloadPos);
        this.payloadPos += n;
        this.ramConsumed += n;
        this.received += n;
        off += n;
        if (n < need) return off;
      }
      if (e.encoding === PageEncoding.XBZRLE) applyDelta(this.delta.subarray(0, e.payload), this.ramView, `RAM_PAGES page ${e.firstPage} of region ${this.ramRegion}`);
      if (e.encoding === PageEncoding.ZERO) this.counts.zeroPages += e.pageCount;
      else this.counts.normalPages += e.pageCount;
      this.ramView = EMPTY;
      this.entryStarted = false;
      if (++this.entryIndex === this.ramEntries.length) {
        this.ramEntries = [];
        this.lastSection = 'RAM_PAGES';
        this.state = 'section-head';
        this.expect(SECTION_HEADER_SIZE);
      }
    }
    return off;
  }

  private emit(msg: StreamMessage): void {
    this.callback(() => this.options.onMessage(msg));
  }
}
