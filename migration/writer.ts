// Frames migration sections into chunks for socket.write: small headers are built, page data is passed on as views of guest RAM.

import { parseVmDescription, type VmDescription } from './description.js';
import { MigrationStreamError } from './errors.js';
import {
  BATCH_ZLIB,
  CHANNEL_MAGIC,
  CHANNEL_PREAMBLE_SIZE,
  DEFAULT_LIMITS,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  PAGE_SIZE,
  PageEncoding,
  RAM_BATCH_HEADER_SIZE,
  RAM_ENTRY_SIZE,
  SECTION_HEADER_SIZE,
  SECTION_VERSIONS,
  STREAM_ARCH,
  STREAM_HEADER_FIXED,
  STREAM_MAGIC,
  SESSION_BYTES,
  SectionOrder,
  SectionType,
  maxBodySize,
  maxZlibPayload,
  sectionName,
  type StreamSummary,
} from './format.js';
import type { RamRun } from './ram.js';
import {
  encodeBlobs,
  encodeChannelSync,
  encodeConfig,
  encodeDeviceEnvelope,
  encodeError,
  encodeJsonBody,
  encodePassEnd,
  encodeVcpuPrefix,
} from './sections.js';

/** Parts smaller than this are merged into one buffer, so a small section costs one write, not several. */
const COALESCE_BELOW = 64 * 1024;

function sectionHeader(type: SectionType, length: number): Uint8Array {
  const h = new Uint8Array(SECTION_HEADER_SIZE);
  const dv = new DataView(h.buffer);
  dv.setUint16(0, type, true);
  dv.setUint16(2, SECTION_VERSIONS[type].current, true);
  dv.setUint32(4, length, true);
  return h;
}

/** Merges runs of small parts; large parts (xsave areas, binary device state) are passed on untouched. */
function coalesce(parts: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let group: Uint8Array[] = [];
  let groupBytes = 0;
  const flush = () => {
    if (group.length === 1) out.push(group[0]);
    else if (group.length > 1) {
      const b = new Uint8Array(groupBytes);
      let at = 0;
      for (const g of group) {
        b.set(g, at);
        at += g.length;
      }
      out.push(b);
    }
    group = [];
    groupBytes = 0;
  };
  for (const p of parts) {
    if (p.length >= COALESCE_BELOW) {
      flush();
      out.push(p);
    } else {
      group.push(p);
      groupBytes += p.length;
    }
  }
  flush();
  return out;
}

/** Frames one section: checks order and size, prepends the header, merges small parts. */
function frame(order: SectionOrder, type: SectionType, body: readonly Uint8Array[], final = false): Uint8Array[] {
  const length = body.reduce((n, b) => n + b.length, 0);
  const max = maxBodySize(type, DEFAULT_LIMITS);
  if (length > max) throw new MigrationStreamError('limit', sectionName(type), `${sectionName(type)} of ${length} bytes exceeds the ${max}-byte limit readers enforce`);
  order.admit(type, final);
  return coalesce([sectionHeader(type, length), ...body]);
}

/** Total bytes of a chunk list (what one call adds to the stream). */
export function chunkBytes(chunks: readonly Uint8Array[]): number {
  return chunks.reduce((n, c) => n + c.length, 0);
}

/**
 * Frames one RAM_PAGES section (checked against the CONFIG's range sizes) as [header + entries, payload views...].
 * Shared by the main stream and the multifd channels.
 */
function encodeRamBatch(regionSizes: readonly number[], region: number, bytes: Uint8Array, runs: readonly RamRun[], zlib?: Uint8Array): { chunks: Uint8Array[]; pages: number; normal: number } {
  const where = sectionName(SectionType.RAM_PAGES);
  const size = regionSizes[region];
  if (size === undefined) throw new MigrationStreamError('corrupt', where, `RAM_PAGES: region ${region} is not in the CONFIG`);
  if (bytes.length !== size) throw new MigrationStreamError('corrupt', where, `RAM_PAGES: region ${region} is ${size} bytes in the CONFIG but its view is ${bytes.length}`);
  if (runs.length === 0 || runs.length > DEFAULT_LIMITS.batchEntries) {
    throw new MigrationStreamError('limit', where, `RAM_PAGES: ${runs.length} runs; 1 to ${DEFAULT_LIMITS.batchEntries} allowed`);
  }
  const head = new Uint8Array(SECTION_HEADER_SIZE + RAM_BATCH_HEADER_SIZE + runs.length * RAM_ENTRY_SIZE);
  const dv = new DataView(head.buffer);
  const chunks: Uint8Array[] = [head];
  let pages = 0;
  let normal = 0;
  let payload = 0;
  runs.forEach((r, i) => {
    if (!Number.isInteger(r.firstPage) || !Number.isInteger(r.pageCount) || r.pageCount < 1 || r.firstPage < 0 || (r.firstPage + r.pageCount) * PAGE_SIZE > size) {
      throw new MigrationStreamError('corrupt', where, `RAM_PAGES: run ${i} (pages ${r.firstPage}+${r.pageCount}) lies outside region ${region}`);
    }
    pages += r.pageCount;
    const at = SECTION_HEADER_SIZE + RAM_BATCH_HEADER_SIZE + i * RAM_ENTRY_SIZE;
    let data: Uint8Array | undefined;
    let encoding: number = PageEncoding.ZERO;
    if (r.kind === 'normal') {
      encoding = PageEncoding.NORMAL;
      data = r.data ?? bytes.subarray(r.firstPage * PAGE_SIZE, (r.firstPage + r.pageCount) * PAGE_SIZE);
      if (data.length !== r.pageCount * PAGE_SIZE) throw new MigrationStreamError('corrupt', where, `RAM_PAGES: run ${i} carries ${data.length} bytes for ${r.pageCount} pages`);
      normal += r.pageCount;
    } else if (r.kind === 'xbzrle') {
      if (zlib) throw new MigrationStreamError('corrupt', where, 'RAM_PAGES: XBZRLE runs cannot go in a zlib batch');
      if (r.pageCount !== 1 || !r.data || r.data.length > PAGE_SIZE) throw new MigrationStreamError('corrupt', where, `RAM_PAGES: XBZRLE run ${i} must be one page with a delta of at most ${PAGE_SIZE} bytes`);
      encoding = PageEncoding.XBZRLE;
      data = r.data;
      normal += 1;
    }
    dv.setUint32(at, r.firstPage, true);
    dv.setUint32(at + 4, r.pageCount, true);
    dv.setUint8(at + 8, encoding);
    dv.setUint32(at + 12, data?.length ?? 0, true);
    if (data) {
      payload += data.length;
      if (!zlib && data.length > 0) chunks.push(data);
    }
  });
  if (pages > DEFAULT_LIMITS.batchPages) throw new MigrationStreamError('limit', where, `RAM_PAGES: ${pages} pages exceed the ${DEFAULT_LIMITS.batchPages}-page batch limit`);
  if (zlib) {
    if (zlib.length === 0 || zlib.length > maxZlibPayload(payload)) throw new MigrationStreamError('corrupt', where, `RAM_PAGES: a zlib block of ${zlib.length} bytes for ${payload} bytes of pages`);
    chunks.push(zlib);
    payload = zlib.length;
  }
  dv.setUint16(0, SectionType.RAM_PAGES, true);
  dv.setUint16(2, SECTION_VERSIONS[SectionType.RAM_PAGES].current, true);
  dv.setUint32(4, head.length - SECTION_HEADER_SIZE + payload, true);
  dv.setUint16(SECTION_HEADER_SIZE, region, true);
  dv.setUint16(SECTION_HEADER_SIZE + 2, zlib ? BATCH_ZLIB : 0, true);
  dv.setUint32(SECTION_HEADER_SIZE + 4, runs.length, true);
  return { chunks, pages, normal };
}

/**
 * Builds one multifd data channel: its preamble, RAM_PAGES batches and CHANNEL_SYNC at each pass end (the final
 * one ends the channel). Pages always go to the same channel, so a channel's own order is all that matters.
 */
export class ChannelStreamWriter {
  private readonly order = new SectionOrder('channel');
  private readonly regionSizes: number[];
  bytesWritten = 0;

  constructor(description: VmDescription, private readonly version: { major: number; minor: number } = { major: FORMAT_MAJOR, minor: FORMAT_MINOR }) {
    this.regionSizes = description.memory.ranges.map((r) => r.size);
  }

  private out(chunks: Uint8Array[]): Uint8Array[] {
    this.bytesWritten += chunkBytes(chunks);
    return chunks;
  }

  /** The preamble: which channel of how many, of which session (16 raw bytes). */
  preamble(index: number, count: number, session: Uint8Array): Uint8Array[] {
    if (session.length !== SESSION_BYTES) throw new MigrationStreamError('corrupt', 'channel preamble', `a session id is ${SESSION_BYTES} bytes, not ${session.length}`);
    const b = new Uint8Array(CHANNEL_PREAMBLE_SIZE);
    b.set(CHANNEL_MAGIC);
    const dv = new DataView(b.buffer);
    dv.setUint16(8, this.version.major, true);
    dv.setUint16(10, this.version.minor, true);
    dv.setUint16(12, index, true);
    dv.setUint16(14, count, true);
    b.set(session, 16);
    return this.out([b]);
  }

  ramPages(region: number, bytes: Uint8Array, runs: readonly RamRun[], zlib?: Uint8Array): Uint8Array[] {
    const head = encodeRamBatch(this.regionSizes, region, bytes, runs, zlib);
    this.order.admit(SectionType.RAM_PAGES);
    return this.out(head.chunks);
  }

  /** CHANNEL_SYNC: this channel has sent its share of pass `pass`; `final` ends it. */
  sync(pass: number, final: boolean): Uint8Array[] {
    return this.out(frame(this.order, SectionType.CHANNEL_SYNC, [encodeChannelSync(pass, final)], final));
  }

}

/**
 * Builds the source's stream, section by section, as lists of chunks to write in order (cork the socket
 * around a list, or write them one by one with back-pressure). It refuses sections out of order and
 * counts what it sent, so `end()` carries a summary the destination checks.
 */
export class StreamWriter {
  private readonly order = new SectionOrder('stream');
  private headerSent = false;
  private regionSizes: number[] = [];
  private readonly counts: StreamSummary = { passes: 0, normalPages: 0, zeroPages: 0, vcpus: 0, devices: 0 };
  private written = 0;

  constructor(private readonly version: { major: number; minor: number } = { major: FORMAT_MAJOR, minor: FORMAT_MINOR }) {}

  /** What was sent so far (END carries it). */
  get summary(): StreamSummary {
    return { ...this.counts };
  }

  /** Bytes produced so far, for bandwidth accounting. */
  get bytesWritten(): number {
    return this.written;
  }

  private out(chunks: Uint8Array[]): Uint8Array[] {
    this.written += chunkBytes(chunks);
    return chunks;
  }

  private needHeader(type: SectionType): void {
    if (!this.headerSent) throw new MigrationStreamError('order', sectionName(type), `${sectionName(type)} before the stream header`);
  }

  /** The stream header: magic, format version, architecture and the host CPU's vendor string. */
  header(vendor: string, arch: string = STREAM_ARCH): Uint8Array[] {
    if (this.headerSent) throw new MigrationStreamError('order', 'stream header', 'the stream header was already written');
    for (const [what, s] of [['architecture', arch], ['CPU vendor', vendor]] as const) {
      if (!/^[\x20-\x7e]{1,255}$/.test(s)) throw new MigrationStreamError('corrupt', 'stream header', `${what} '${s}' must be 1-255 printable ASCII characters`);
    }
    const rest = 2 + arch.length + vendor.length;
    if (rest > DEFAULT_LIMITS.headerRest) throw new MigrationStreamError('limit', 'stream header', `architecture and CPU vendor take ${rest} header bytes; readers accept ${DEFAULT_LIMITS.headerRest}`);
    const b = new Uint8Array(STREAM_HEADER_FIXED + rest);
    b.set(STREAM_MAGIC);
    const dv = new DataView(b.buffer);
    dv.setUint16(8, this.version.major, true);
    dv.setUint16(10, this.version.minor, true);
    dv.setUint32(12, rest, true);
    let at = STREAM_HEADER_FIXED;
    for (const s of [arch, vendor]) {
      b[at++] = s.length;
      for (let i = 0; i < s.length; i++) b[at++] = s.charCodeAt(i);
    }
    this.headerSent = true;
    return this.out([b]);
  }

  /** CONFIG: checked as the destination will check it, so a bad description fails here, on the source. */
  config(description: VmDescription): Uint8Array[] {
    this.needHeader(SectionType.CONFIG);
    const checked = parseVmDescription(description);
    const chunks = frame(this.order, SectionType.CONFIG, [encodeConfig(checked)]);
    this.regionSizes = checked.memory.ranges.map((r) => r.size);
    return this.out(chunks);
  }

  /**
   * RAM_PAGES for `runs` of range `region`, whose bytes are `bytes`. The page data is not copied: the chunks
   * after the first are views of `bytes` (or of a run's own `data`: a cache copy or an XBZRLE delta), and a page
   * the guest changes before the socket sends it goes out changed (the dirty log has recorded that write, so the
   * next pass sends it again anyway). With `zlib`, the NORMAL runs' bytes go as that one raw-deflate block.
   */
  ramPages(region: number, bytes: Uint8Array, runs: readonly RamRun[], zlib?: Uint8Array): Uint8Array[] {
    this.needHeader(SectionType.RAM_PAGES);
    const head = encodeRamBatch(this.regionSizes, region, bytes, runs, zlib);
    this.order.admit(SectionType.RAM_PAGES);
    this.counts.normalPages += head.normal;
    this.counts.zeroPages += head.pages - head.normal;
    return this.out(head.chunks);
  }

  /** RAM_PASS_END for the next pass; `final` when it ran with the vCPUs stopped (state sections follow). */
  passEnd(dirtySyncs: number, final: boolean): Uint8Array[] {
    this.needHeader(SectionType.RAM_PASS_END);
    const chunks = frame(this.order, SectionType.RAM_PASS_END, [encodePassEnd(this.counts.passes + 1, dirtySyncs, final)], final);
    this.counts.passes++;
    return this.out(chunks);
  }

  /** VCPU_STATE: vCPU `index`'s KVM structures by name (see vcpu-state.ts for the names and the MSR list). */
  vcpu(index: number, blobs: ReadonlyMap<string, Uint8Array>): Uint8Array[] {
    this.needHeader(SectionType.VCPU_STATE);
    const chunks = frame(this.order, SectionType.VCPU_STATE, encodeBlobs(blobs, encodeVcpuPrefix(index)));
    this.counts.vcpus++;
    return this.out(chunks);
  }

  /** IRQCHIP: the in-kernel PICs and IOAPIC (`pic_master`, `pic_slave`, `ioapic`). */
  irqchip(blobs: ReadonlyMap<string, Uint8Array>): Uint8Array[] {
    this.needHeader(SectionType.IRQCHIP);
    return this.out(frame(this.order, SectionType.IRQCHIP, encodeBlobs(blobs)));
  }

  /** PIT: the in-kernel PIT (`pit2`). */
  pit(blobs: ReadonlyMap<string, Uint8Array>): Uint8Array[] {
    this.needHeader(SectionType.PIT);
    return this.out(frame(this.order, SectionType.PIT, encodeBlobs(blobs)));
  }

  /** CLOCK: kvmclock (`kvm_clock_data`). */
  clock(blobs: ReadonlyMap<string, Uint8Array>): Uint8Array[] {
    this.needHeader(SectionType.CLOCK);
    return this.out(frame(this.order, SectionType.CLOCK, encodeBlobs(blobs)));
  }

  /** DEVICE_STATE with a JSON body: a device's `saveState()` object. */
  deviceJson(id: string, version: number, state: unknown): Uint8Array[] {
    return this.device(id, version, 'json', encodeJsonBody(state));
  }

  /** DEVICE_STATE with a binary body (passed on without a copy when large). */
  deviceBinary(id: string, version: number, bytes: Uint8Array): Uint8Array[] {
    return this.device(id, version, 'binary', bytes);
  }

  private device(id: string, version: number, encoding: 'json' | 'binary', body: Uint8Array): Uint8Array[] {
    this.needHeader(SectionType.DEVICE_STATE);
    if (!Number.isInteger(version) || version < 0 || version > 0xffff) {
      throw new MigrationStreamError('corrupt', 'DEVICE_STATE', `DEVICE_STATE: version ${version} of '${id}' is not 0-65535`);
    }
    const chunks = frame(this.order, SectionType.DEVICE_STATE, [encodeDeviceEnvelope(id, version, encoding), body]);
    this.counts.devices++;
    return this.out(chunks);
  }

  /** END: the source has sent everything; the summary lets the destination check nothing was lost. */
  end(): Uint8Array[] {
    this.needHeader(SectionType.END);
    return this.out(frame(this.order, SectionType.END, [encodeJsonBody(this.summary)]));
  }

  /** RUN: the point of no return. Once this is written the source must never resume the guest. */
  run(): Uint8Array[] {
    this.needHeader(SectionType.RUN);
    return this.out(frame(this.order, SectionType.RUN, []));
  }

  /** ERROR from the source (a cancel or a failure): the destination discards what it loaded. */
  error(message: string, code?: string): Uint8Array[] {
    this.needHeader(SectionType.ERROR);
    return this.out(frame(this.order, SectionType.ERROR, [encodeError(message, code)]));
  }
}

/** Builds the destination's replies (no stream header): ACCEPT, READY, RUNNING, or ERROR at any point. */
export class ReplyWriter {
  private readonly order = new SectionOrder('replies');

  constructor(private readonly version: { major: number; minor: number } = { major: FORMAT_MAJOR, minor: FORMAT_MINOR }) {}

  /** ACCEPT: the CONFIG matched; the source may start sending RAM. */
  accept(): Uint8Array[] {
    return frame(this.order, SectionType.ACCEPT, [encodeJsonBody({ major: this.version.major, minor: this.version.minor })]);
  }

  /** READY: everything loaded and verified; `summary` is what the destination received. */
  ready(summary: StreamSummary): Uint8Array[] {
    return frame(this.order, SectionType.READY, [encodeJsonBody(summary)]);
  }

  /** PASS_ACK: every multifd channel's pages of pass `pass` are in guest memory. */
  passAck(pass: number): Uint8Array[] {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, pass, true);
    return frame(this.order, SectionType.PASS_ACK, [b]);
  }

  /** RUNNING: RUN arrived and the vCPUs run here now. */
  running(): Uint8Array[] {
    return frame(this.order, SectionType.RUNNING, []);
  }

  /** ERROR: the destination gives up; the guest must keep running on the source. */
  error(message: string, code?: string): Uint8Array[] {
    return frame(this.order, SectionType.ERROR, [encodeError(message, code)]);
  }
}
