// The source's multifd data channels: RAM striped over several connections in fixed 4 MiB blocks, optionally zlib-compressed.

import type * as net from 'node:net';
import { promisify } from 'node:util';
import { deflateRaw } from 'node:zlib';
import { ChannelWriter, connect, type MigrationAddress } from './channel.js';
import type { MultifdDescription, VmDescription } from './description.js';
import { PAGE_SIZE } from './format.js';
import { planRamBatches, type RamBatch } from './ram.js';
import type { RamRegionPort } from './vm-port.js';
import { ChannelStreamWriter } from './writer.js';

const deflateRawAsync = promisify(deflateRaw);

/**
 * Pages per block. Block b of the guest's RAM (counted across regions) always travels on channel b mod N, so a
 * page resent in a later pass follows its earlier copy on the same connection and no cross-channel ordering is
 * needed; 4 MiB keeps the first pass's writes large and still spreads a dirty working set over the channels.
 */
export const BLOCK_PAGES = 1024;

/** Writes `chunks` on channel `index` (rate limit, accounting and back-pressure are the caller's). */
export type ChannelSend = (writer: ChannelWriter, chunks: Uint8Array[]) => Promise<void>;

/** Counts a batch into the migration's figures. */
export type BatchCounter = (batch: RamBatch) => void;

export interface MultifdOptions {
  readonly description: MultifdDescription;
  readonly zlibLevel: number;
  readonly batchPages: number;
  /** Ends a write waiting on a full socket when the migration is cancelled. */
  readonly stop?: { signal: AbortSignal; error: () => Error };
}

/** The N data connections of one outgoing migration. */
export class MultifdSender {
  /** Bytes put on the channels, for query-migrate's multifd-bytes. */
  sentBytes = 0;

  private constructor(
    private readonly sockets: net.Socket[],
    private readonly writers: ChannelWriter[],
    private readonly streams: ChannelStreamWriter[],
    private readonly opts: MultifdOptions,
  ) {}

  /** Opens every channel to `address` and sends its preamble; on any failure closes those already open. */
  static async open(address: MigrationAddress, vm: VmDescription, opts: MultifdOptions, send: ChannelSend): Promise<MultifdSender> {
    const { channels, session } = opts.description;
    const sessionBytes = Buffer.from(session, 'hex');
    const settled = await Promise.allSettled(Array.from({ length: channels }, () => connect(address)));
    const sockets = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      for (const s of sockets) s.destroy();
      throw failed.reason;
    }
    const writers = sockets.map((s) => new ChannelWriter(s, opts.stop));
    const streams = sockets.map(() => new ChannelStreamWriter(vm));
    const sender = new MultifdSender(sockets, writers, streams, opts);
    try {
      await Promise.all(streams.map((w, i) => send(writers[i], w.preamble(i, channels, sessionBytes))));
    } catch (e) {
      sender.destroy();
      throw e;
    }
    return sender;
  }

  get channels(): number {
    return this.sockets.length;
  }

  /**
   * Sends the pages of `bitmaps` (null: every page of the region) over all channels at once, each channel its own
   * blocks in address order. With zlib, the next batch is compressed (on libuv's thread pool) while the previous
   * one is written, so compression runs on other cores than this thread.
   */
  async sendPages(ram: readonly RamRegionPort[], bitmaps: readonly (Uint32Array | null)[], send: ChannelSend, count: BatchCounter, checkCancel: () => void): Promise<void> {
    const n = this.channels;
    const firstBlock: number[] = [];
    let blocks = 0;
    for (const r of ram) {
      firstBlock.push(blocks);
      blocks += Math.ceil(r.size / PAGE_SIZE / BLOCK_PAGES);
    }
    const zlib = this.opts.description.compression === 'zlib';
    // The first channel to fail (or see the cancel) stops the others: they check this after every wait, and their
    // sockets are torn down so a blocked write ends too. sendPages returns only once every loop has ended, so nothing
    // keeps sending, counting or sampling the dirty log after the caller has started cleaning up.
    let failure: { error: unknown } | undefined;
    const guard = () => {
      if (failure) throw failure.error;
      checkCancel();
    };
    const channelLoop = async (c: number): Promise<void> => {
      let inFlight: Promise<Uint8Array[]> | undefined;
      for (let r = 0; r < ram.length; r++) {
        const bitmap = bitmaps[r];
        const regionBlocks = Math.ceil(ram[r].size / PAGE_SIZE / BLOCK_PAGES);
        // The first block of this region that is ours: (firstBlock[r] + b) % n === c.
        for (let b = (((c - firstBlock[r]) % n) + n) % n; b < regionBlocks; b += n) {
          if (bitmap && blockClean(bitmap, b)) continue;
          for (const batch of planRamBatches(ram[r].bytes, bitmap, this.opts.batchPages, b * BLOCK_PAGES, (b + 1) * BLOCK_PAGES)) {
            guard();
            count(batch);
            const next = zlib ? this.compressed(c, r, ram[r].bytes, batch) : Promise.resolve(this.plain(c, r, ram[r].bytes, batch));
            next.catch(() => {}); // if this loop stops before awaiting it, its failure must not go unhandled
            const ready = inFlight ? await inFlight : undefined;
            guard();
            if (ready) await send(this.writers[c], ready);
            inFlight = next;
          }
        }
      }
      if (inFlight) {
        const ready = await inFlight;
        guard();
        await send(this.writers[c], ready);
      }
    };
    const loops = Array.from({ length: n }, (_, c) =>
      channelLoop(c).catch((error: unknown) => {
        if (!failure) {
          failure = { error };
          this.destroy();
        }
      }),
    );
    await Promise.all(loops);
    if (failure) throw failure.error;
  }

  private plain(c: number, region: number, bytes: Uint8Array, batch: RamBatch): Uint8Array[] {
    const chunks = this.streams[c].ramPages(region, bytes, batch.runs);
    this.sentBytes += chunks.reduce((s, x) => s + x.length, 0);
    return chunks;
  }

  /** The batch with its NORMAL pages deflated as one block; sent plain when deflate does not make it smaller. */
  private async compressed(c: number, region: number, bytes: Uint8Array, batch: RamBatch): Promise<Uint8Array[]> {
    if (batch.normalPages === 0) return this.plain(c, region, bytes, batch);
    const views = batch.runs.filter((r) => r.kind === 'normal').map((r) => bytes.subarray(r.firstPage * PAGE_SIZE, (r.firstPage + r.pageCount) * PAGE_SIZE));
    const input = views.length === 1 ? views[0] : Buffer.concat(views);
    const packed = await deflateRawAsync(input, { level: this.opts.zlibLevel });
    const raw = batch.normalPages * PAGE_SIZE;
    if (packed.length >= raw) return this.plain(c, region, bytes, batch);
    const chunks = this.streams[c].ramPages(region, bytes, batch.runs, packed);
    this.sentBytes += chunks.reduce((s, x) => s + x.length, 0);
    return chunks;
  }

  /** CHANNEL_SYNC on every channel: each has sent its share of pass `pass`; `final` ends the channels. */
  async sync(pass: number, final: boolean, send: ChannelSend): Promise<void> {
    await Promise.all(this.streams.map((w, i) => send(this.writers[i], w.sync(pass, final))));
  }


  /** Closes the channels after a completed migration (the destination has everything). */
  end(): void {
    for (const s of this.sockets) s.end();
  }

  /** Tears the channels down (failure or cancel): the destination sees them cut and fails. */
  destroy(): void {
    for (const s of this.sockets) s.destroy();
  }
}

/** True when no page of block `b` is dirty. */
function blockClean(bitmap: Uint32Array, b: number): boolean {
  const from = (b * BLOCK_PAGES) >>> 5;
  const to = Math.min(bitmap.length, ((b + 1) * BLOCK_PAGES) >>> 5);
  for (let i = from; i < to; i++) if (bitmap[i] !== 0) return false;
  return true;
}
