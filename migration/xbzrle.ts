// XBZRLE page deltas: a page re-dirtied by the guest is sent as the bytes that changed since the copy the source sent last.

import { MigrationStreamError } from './errors.js';
import type { RamBatch, RamRun } from './ram.js';

const PAGE_SIZE = 4096;
const PAGE_WORDS = PAGE_SIZE / 4;

function putLeb(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
  return at;
}

/**
 * Encodes page `cur` (4096 bytes) against `old` into `out` as pairs of LEB128 (unchanged count, changed count)
 * followed by the changed bytes; unchanged bytes after the last changed run are implied. Returns the encoded
 * length, 0 when nothing changed, or -1 when the delta would reach `limit` bytes (send the page whole then).
 * Compares 32-bit words, so runs start and end on 4-byte boundaries (written here by hand: no library does
 * this on typed arrays, and the loop runs once per re-dirtied page).
 */
export function encodeDelta(cur: Uint8Array, old: Uint8Array, out: Uint8Array, limit = out.length): number {
  const a = new Uint32Array(cur.buffer, cur.byteOffset, PAGE_WORDS);
  const b = new Uint32Array(old.buffer, old.byteOffset, PAGE_WORDS);
  let at = 0;
  let word = 0;
  let last = 0; // end of the previous changed run, in words
  while (word < PAGE_WORDS) {
    while (word < PAGE_WORDS && a[word] === b[word]) word++;
    if (word === PAGE_WORDS) break;
    const start = word;
    // Runs are not merged across unchanged words: one unchanged word costs 4 bytes, a new pair of counts only 2.
    while (word < PAGE_WORDS && a[word] !== b[word]) word++;
    const changed = (word - start) * 4;
    if (at + 6 + changed >= limit) return -1;
    at = putLeb(out, at, (start - last) * 4);
    at = putLeb(out, at, changed);
    out.set(cur.subarray(start * 4, word * 4), at);
    at += changed;
    last = word;
  }
  return at;
}

/**
 * Applies a delta from `encodeDelta` to `page` (the destination's copy, which must be the source's previous copy).
 * The delta is untrusted: a count running past the page or past the delta, or a zero-length changed run,
 * throws a `corrupt` MigrationStreamError naming `where` before any byte of that run is written.
 */
export function applyDelta(delta: Uint8Array, page: Uint8Array, where: string): void {
  let at = 0;
  let pos = 0;
  const leb = (): number => {
    let v = 0;
    for (let shift = 0; shift <= 14; shift += 7) {
      if (at >= delta.length) throw new MigrationStreamError('corrupt', where, `${where}: XBZRLE delta ends inside a count`);
      const byte = delta[at++];
      v |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return v;
    }
    throw new MigrationStreamError('corrupt', where, `${where}: XBZRLE count longer than 3 bytes`);
  };
  while (at < delta.length) {
    const skip = leb();
    const len = leb();
    if (len === 0) throw new MigrationStreamError('corrupt', where, `${where}: XBZRLE changed run of 0 bytes`);
    if (pos + skip + len > PAGE_SIZE) throw new MigrationStreamError('corrupt', where, `${where}: XBZRLE run ends at byte ${pos + skip + len} of a ${PAGE_SIZE}-byte page`);
    if (at + len > delta.length) throw new MigrationStreamError('corrupt', where, `${where}: XBZRLE run of ${len} bytes but ${delta.length - at} left in the delta`);
    pos += skip;
    page.set(delta.subarray(at, at + len), pos);
    at += len;
    pos += len;
  }
}

/** What the cache counted, in QEMU's `xbzrle-cache` terms. */
export interface XbzrleCounters {
  /** Pages sent as deltas. */
  pages: number;
  /** Bytes of the deltas. */
  bytes: number;
  /** Pages that were not in the cache (sent whole, then cached). */
  cacheMiss: number;
  /** Pages whose delta was too large (sent whole). */
  overflow: number;
}

/**
 * The source's copies of the pages it sent, direct-mapped by page number: what the destination holds for every
 * cached page. Pages that go out while the cache is in use are sent from the cache copy, never from live guest
 * memory, so a guest write racing the send cannot make the two copies differ.
 */
export class XbzrleCache {
  private readonly slots: number;
  private readonly data: Buffer;
  /** Global page number + 1 held by each slot (0 = empty). */
  private readonly tags: Float64Array;
  private readonly scratch = new Uint8Array(PAGE_SIZE);
  readonly counters: XbzrleCounters = { pages: 0, bytes: 0, cacheMiss: 0, overflow: 0 };

  constructor(readonly cacheSize: number) {
    this.slots = Math.max(1, Math.floor(cacheSize / PAGE_SIZE));
    this.data = Buffer.alloc(this.slots * PAGE_SIZE);
    this.tags = new Float64Array(this.slots);
  }

  /**
   * Prepares page `page` (global number), whose live bytes are `live`, for sending. Snapshots the page into `out`
   * (4096 bytes the caller owns until the socket has sent them) and returns how many bytes of `out` to send: the
   * delta against the cached copy when there is one and it is small, else the whole snapshot (`kind` says which).
   * The cache always ends up holding the snapshot, which is exactly what the destination will hold.
   */
  prepare(page: number, live: Uint8Array, out: Uint8Array): { kind: 'delta' | 'normal'; length: number } {
    const slot = page % this.slots;
    const copy = this.data.subarray(slot * PAGE_SIZE, (slot + 1) * PAGE_SIZE);
    out.set(live);
    if (this.tags[slot] !== page + 1) {
      this.counters.cacheMiss++;
      copy.set(out);
      this.tags[slot] = page + 1;
      return { kind: 'normal', length: PAGE_SIZE };
    }
    const n = encodeDelta(out, copy, this.scratch, PAGE_SIZE / 2);
    copy.set(out);
    if (n < 0) {
      this.counters.overflow++;
      return { kind: 'normal', length: PAGE_SIZE };
    }
    out.set(this.scratch.subarray(0, n));
    this.counters.pages++;
    this.counters.bytes += n;
    return { kind: 'delta', length: n };
  }

  /**
   * For the last pass, with the guest stopped: the delta of `live` against the cached copy written into `out`, or -1
   * when the page is not cached or the delta is too large. Nothing is copied and the cache is left as it is (nothing
   * is sent after this pass).
   */
  finalDelta(page: number, live: Uint8Array, out: Uint8Array): number {
    const slot = page % this.slots;
    if (this.tags[slot] !== page + 1) {
      this.counters.cacheMiss++;
      return -1;
    }
    const n = encodeDelta(live, this.data.subarray(slot * PAGE_SIZE, (slot + 1) * PAGE_SIZE), out, PAGE_SIZE / 2);
    if (n < 0) this.counters.overflow++;
    else {
      this.counters.pages++;
      this.counters.bytes += n;
    }
    return n;
  }

  /** The page was sent as ZERO: the destination's copy is zeros now, so drop ours. */
  forget(page: number): void {
    const slot = page % this.slots;
    if (this.tags[slot] === page + 1) this.tags[slot] = 0;
  }
}

/**
 * A batch's runs with XBZRLE applied: every NORMAL page is snapshotted (so what is sent and what is cached agree
 * even while the guest writes), then sent as a delta against the cached copy when that is small, else whole.
 * `firstPage` numbers the region's pages within the whole guest, for the cache.
 */
export function xbzrleRuns(cache: XbzrleCache, firstPage: number, bytes: Uint8Array, batch: RamBatch, guestStopped = false): RamRun[] {
  if (guestStopped) return finalRuns(cache, firstPage, bytes, batch);
  // One buffer per batch, owned by the socket until written: the cache's own copies may change before then.
  const arena = Buffer.allocUnsafeSlow(batch.normalPages * PAGE_SIZE);
  let at = 0;
  const out: RamRun[] = [];
  for (const run of batch.runs) {
    if (run.kind === 'zero') {
      for (let p = run.firstPage; p < run.firstPage + run.pageCount; p++) cache.forget(firstPage + p);
      out.push(run);
      continue;
    }
    for (let p = run.firstPage; p < run.firstPage + run.pageCount; p++) {
      const slot = arena.subarray(at, at + PAGE_SIZE);
      const r = cache.prepare(firstPage + p, bytes.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), slot);
      out.push({ firstPage: p, pageCount: 1, kind: r.kind === 'delta' ? 'xbzrle' : 'normal', data: slot.subarray(0, r.length) });
      at += (r.length + 3) & ~3; // keep the next snapshot 4-byte aligned for the word compare
    }
  }
  return out;
}

/**
 * The last pass's runs, with the guest stopped: live pages cannot change under the send, so cached pages go as deltas
 * straight from guest memory and the others as views of it, with no snapshot and no cache update.
 */
function finalRuns(cache: XbzrleCache, firstPage: number, bytes: Uint8Array, batch: RamBatch): RamRun[] {
  const arena = Buffer.allocUnsafeSlow(batch.normalPages * (PAGE_SIZE / 2));
  let at = 0;
  const out: RamRun[] = [];
  for (const run of batch.runs) {
    if (run.kind === 'zero') {
      out.push(run);
      continue;
    }
    for (let p = run.firstPage; p < run.firstPage + run.pageCount; p++) {
      const live = bytes.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
      const n = cache.finalDelta(firstPage + p, live, arena.subarray(at, at + PAGE_SIZE / 2));
      if (n < 0) {
        const last = out[out.length - 1];
        if (last?.kind === 'normal' && last.firstPage + last.pageCount === p) last.pageCount++;
        else out.push({ firstPage: p, pageCount: 1, kind: 'normal' });
        continue;
      }
      out.push({ firstPage: p, pageCount: 1, kind: 'xbzrle', data: arena.subarray(at, at + n) });
      at += n;
    }
  }
  return out;
}
