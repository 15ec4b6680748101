// The outgoing side of a live migration, as a script of named phases: connect, handshake, pre-copy passes, switch-over, commit.

import type * as net from 'node:net';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { TsvirtError } from '../machine/errors.js';
import { ChannelWriter, connect, describeAddress, socketFd, type MigrationAddress } from './channel.js';
import { AutoConverge, decideSwitchover, PassMeter, RateLimiter } from './convergence.js';
import type { StreamMessage } from './format.js';
import type { MigrationSettings } from './params.js';
import { countDirtyPages, planRamBatches, type RamBatch } from './ram.js';
import { MultifdSender } from './multifd-source.js';
import { XbzrleCache, xbzrleRuns } from './xbzrle.js';
import { randomBytes } from 'node:crypto';
import { StreamReader } from './reader.js';
import type { MigrationStats } from './stats.js';
import type { MigrationStatus } from './status.js';
import type { MigratableVm } from './vm-port.js';
import { StreamWriter } from './writer.js';
import { sendFds } from '../machine/host/fd-passing.js';

const PAGE_SIZE = 4096;
const REPLY_TIMEOUT_MS = 30000;
/** What a zero page counts as when judging a pass's throughput: found and sent at memcmp speed, so almost nothing. */
const ZERO_PAGE_COST = 64;
/** Let QMP and other I/O run at least this often while pages stream out. */
const YIELD_EVERY_BYTES = 32 * 1024 * 1024;
/**
 * Auto-converge judges the dirty rate over periods of this length, sampled from the dirty log in the middle of a
 * pass (QEMU only looks at pass ends, at least a second apart, so a long pass delays every throttle step).
 */
const THROTTLE_PERIOD_MS = 250;

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** The user cancelled (migrate_cancel). */
export class MigrationCancelled extends TsvirtError {
  constructor() {
    super('ERR_MIGRATION_CANCELLED', 'migration cancelled');
  }
}

/** Everything a source session works with. */
export interface SourceContext {
  readonly vm: MigratableVm;
  readonly settings: MigrationSettings;
  readonly status: MigrationStatus;
  readonly stats: MigrationStats;
  readonly cancelled: AbortSignal;
  /** A dirty pass began (MIGRATION_PASS). */
  onPass(pass: number): void;
  log(message: string): void;
}

/** The destination's replies, awaited one at a time. */
class Replies {
  private queue: StreamMessage[] = [];
  private waiter?: () => void;
  private closed?: Error;
  /** The last pass the destination acknowledged (PASS_ACK, multifd only). */
  private acked = 0;
  private readonly reader = new StreamReader({
    direction: 'replies',
    onMessage: (m) => {
      if (m.type === 'pass-ack') this.acked = Math.max(this.acked, m.pass);
      else this.queue.push(m);
    },
  });

  constructor(socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      try {
        this.reader.push(d);
      } catch (e) {
        this.closed ??= e as Error;
      }
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed ??= new Error('the destination closed the connection');
      this.waiter?.();
    });
    socket.on('error', (e) => {
      this.closed ??= new Error(`connection error: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
      this.waiter?.();
    });
  }

  /** Resolves once the destination has acknowledged pass `pass` (multifd); fails as `next` does. */
  async ack(pass: number, signal: AbortSignal | null, timeoutMs = REPLY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.acked < pass) {
      const error = this.queue.find((m) => m.type === 'error');
      if (error?.type === 'error') throw new TsvirtError('ERR_MIGRATION_PEER_REFUSED', `destination reported: ${error.message}`);
      await this.wait(`PASS_ACK ${pass}`, signal, deadline, timeoutMs);
    }
  }

  /** The next reply; fails on timeout, on a closed connection, or when cancelled. */
  async next(what: string, signal: AbortSignal | null, timeoutMs = REPLY_TIMEOUT_MS): Promise<StreamMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.queue.shift();
      if (m) {
        // An explicit ERROR is a promise from the destination that it does not run the guest.
        if (m.type === 'error') throw new TsvirtError('ERR_MIGRATION_PEER_REFUSED', `destination reported: ${m.message}`);
        return m;
      }
      await this.wait(what, signal, deadline, timeoutMs);
    }
  }

  /** Waits for more replies (up to 200 ms at a time); throws if the connection closed, on cancel, or past `deadline`. */
  private async wait(what: string, signal: AbortSignal | null, deadline: number, timeoutMs: number): Promise<void> {
    if (this.closed) throw new TsvirtError('ERR_MIGRATION_PEER', `waiting for ${what}: ${this.closed.message}`);
    if (signal?.aborted) throw new MigrationCancelled();
    const left = deadline - Date.now();
    if (left <= 0) throw new TsvirtError('ERR_MIGRATION_TIMEOUT', `no ${what} from the destination within ${timeoutMs / 1000} s`);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.min(left, 200));
      this.waiter = () => { clearTimeout(t); this.waiter = undefined; resolve(); };
    });
  }
}

/** Runs one outgoing migration to `address`. Resolves when completed; throws (after cleaning up) when it fails. */
export async function runSource(ctx: SourceContext, address: MigrationAddress): Promise<void> {
  const { vm, status, stats, settings } = ctx;
  const params = settings.parameters;
  const wasRunning = vm.isRunning();
  const meter = new PassMeter(() => performance.now());
  const limiter = new RateLimiter(params['max-bandwidth'], () => performance.now());
  const w = new StreamWriter();
  let socket: net.Socket | undefined;
  let multifd: MultifdSender | undefined;
  let committed = false;
  let paused = false;
  let dirtyLogging = false;
  let phase = 'connect';
  // Sampled every THROTTLE_PERIOD_MS, so one high period is a step: QEMU's two per step span two pass ends, at least
  // 2 s of evidence; four of our periods would be 1 s. On the flat-out benchmark this took 22 s down to 12 s.
  const autoConverge = settings.capability('auto-converge') ? new AutoConverge(params, 1) : undefined;
  let period = { start: performance.now(), sent: 0 };
  /** Pages found dirty so far in this pass (the dirty log is read mid-pass for auto-converge and merged here). */
  let pending = vm.ram.map((r) => new Uint32Array(Math.ceil(r.size / PAGE_SIZE / 32)));
  /** Reads the dirty log into `pending`; returns how many pages were newly dirtied. */
  const collectDirty = (): number => {
    let fresh = 0;
    for (let r = 0; r < vm.ram.length; r++) {
      const got = vm.takeDirtyPages(r);
      const acc = pending[r];
      for (let i = 0; i < got.length; i++) {
        const add = got[i] & ~acc[i];
        if (add) {
          fresh += popcount(add);
          acc[i] |= add;
        }
      }
    }
    return fresh;
  };
  /** Feeds auto-converge once a period has passed: the guest's new dirty pages against what went out meanwhile. */
  const maybeThrottle = async (): Promise<void> => {
    if (!autoConverge || performance.now() - period.start < THROTTLE_PERIOD_MS) return;
    const dirtied = collectDirty() * PAGE_SIZE;
    const pct = autoConverge.onPeriod(dirtied, period.sent);
    period = { start: performance.now(), sent: 0 };
    if (pct !== stats.cpuThrottlePercentage) {
      stats.cpuThrottlePercentage = pct;
      await vm.setThrottle(pct);
    }
  };

  const checkCancel = () => {
    if (ctx.cancelled.aborted) throw new MigrationCancelled();
  };

  try {
    // Phase: connect.
    socket = await connect(address);
    const stop = { signal: ctx.cancelled, error: () => new MigrationCancelled() };
    const channel = new ChannelWriter(socket, stop);
    const replies = new Replies(socket);
    let sinceYield = 0;
    /** Writes on one connection (the main stream or a multifd channel) under the shared rate limit. */
    const sendOn = async (writer: ChannelWriter, chunks: Uint8Array[]) => {
      const n = chunks.reduce((s, c) => s + c.length, 0);
      for (let wait = limiter.take(n); wait > 0; wait = limiter.take(n)) await new Promise((r) => setTimeout(r, wait));
      await writer.write(chunks);
      stats.transferredBytes += n;
      period.sent += n;
      await maybeThrottle();
      sinceYield += n;
      if (sinceYield >= YIELD_EVERY_BYTES) {
        sinceYield = 0;
        await yieldToLoop();
        checkCancel();
      }
    };
    const send = (chunks: Uint8Array[]) => sendOn(channel, chunks);
    /**
     * Marks the end of a pre-copy pass on every connection. With multifd, also waits until the destination has every
     * page of the pass in memory (PASS_ACK): its channels decompress and copy on their own, and a pass only counts
     * as done, for the throughput that decides the switch-over, once the destination has caught up with it.
     */
    const endPass = async () => {
      const n = w.summary.passes + 1;
      await multifd?.sync(n, false, sendOn);
      await send(w.passEnd(stats.dirtySyncCount, false));
      if (multifd) {
        // Up to a socket buffer or so per channel may still be on its way; on a slow link that takes longer than the
        // usual 30 s reply timeout, so allow for it at the rate the link has shown (at least 1 MB/s).
        const inFlight = multifd.channels * 8 * 1024 * 1024;
        const rate = Math.max(1e6, limiter.bytesPerSecond || stats.bandwidth);
        await replies.ack(n, ctx.cancelled, REPLY_TIMEOUT_MS + (inFlight / rate) * 1000);
      }
    };
    const countBatch = (batch: RamBatch) => {
      stats.normalPages += batch.normalPages;
      stats.zeroPages += batch.zeroPages;
      // Convergence is judged in guest bytes moved per second, not wire bytes: with zlib or XBZRLE a page costs less
      // on the wire than the 4 KiB the remaining dirty bytes count it as.
      meter.addBytes(batch.normalPages * PAGE_SIZE + batch.zeroPages * ZERO_PAGE_COST);
    };
    const xbzrle = settings.capability('xbzrle') ? new XbzrleCache(params['xbzrle-cache-size']) : undefined;
    stats.xbzrle = xbzrle?.counters;
    const regionFirstPage: number[] = [];
    vm.ram.reduce((n, r) => (regionFirstPage.push(n), n + r.size / PAGE_SIZE), 0);

    /** Sends the pages of `dirty` (or every populated page) of each region. */
    const sendPages = async (bitmaps: (Uint32Array | null)[], guestStopped = false) => {
      if (multifd) {
        const before = multifd.sentBytes;
        await multifd.sendPages(vm.ram, bitmaps, sendOn, countBatch, checkCancel);
        stats.multifdBytes += multifd.sentBytes - before;
        return;
      }
      const batchPages = Math.max(16, Math.min(1024, Math.floor(limiter.chunkLimit / PAGE_SIZE) || 1024));
      for (let r = 0; r < vm.ram.length; r++) {
        const bitmap = bitmaps[r];
        if (bitmap && countDirtyPages(bitmap) === 0) continue;
        for (const batch of planRamBatches(vm.ram[r].bytes, bitmap, batchPages)) {
          checkCancel();
          countBatch(batch);
          await send(w.ramPages(r, vm.ram[r].bytes, xbzrle ? xbzrleRuns(xbzrle, regionFirstPage[r], vm.ram[r].bytes, batch, guestStopped) : batch.runs));
        }
      }
    };

    // Phase: handshake. The destination checks the configuration before any RAM moves.
    phase = 'handshake';
    const local = settings.capability('x-ignore-shared');
    const description = vm.description();
    const multifdPlan = !local && settings.capability('multifd')
      ? { channels: params['multifd-channels'], compression: params['multifd-compression'] === 'zlib' ? 'zlib' as const : 'none' as const, session: randomBytes(16).toString('hex') }
      : undefined;
    await send([...w.header(vm.cpuVendor()), ...w.config({ ...description, ...(local ? { memoryHandover: true } : {}), ...(multifdPlan ? { multifd: multifdPlan } : {}) })]);
    const accepted = await replies.next('ACCEPT', ctx.cancelled);
    if (accepted.type !== 'accept') throw new TsvirtError('ERR_MIGRATION_PEER', `expected ACCEPT, got ${accepted.type}`);
    if (multifdPlan) {
      phase = 'opening multifd channels';
      multifd = await MultifdSender.open(address, description, { description: multifdPlan, zlibLevel: params['multifd-zlib-level'], batchPages: 1024, stop }, sendOn);
      ctx.log(`multifd: ${multifdPlan.channels} channels, compression ${multifdPlan.compression}`);
    }
    stats.setupDoneAt = performance.now();
    status.transition('active');

    let pass = 0;
    let previousRemainingBytes: number | undefined;
    /** stats.transferredBytes when the current pass began. */
    let passWire = 0;
    if (local) {
      // Phase: memory hand-over. Both processes now map the same memfds: no page is copied, and nothing is dirty.
      phase = 'memory hand-over';
      await channel.drain();
      sendFds(socketFd(socket)!, vm.memoryFds());
      stats.remainingBytes = 0;
    } else {
      // Phase: first pass, every page that holds data.
      phase = 'pass 1';
      vm.startDirtyLog();
      dirtyLogging = true;
      pass = meter.beginPass();
      passWire = stats.transferredBytes;
      stats.passes = pass;
      ctx.onPass(pass);
      await sendPages(vm.ram.map((_, r) => vm.populatedPages(r)));
      await endPass();
    }

    // Phase: dirty passes until the expected downtime fits the limit (or the timeout decides).
    for (;;) {
      checkCancel();
      if (!local) collectDirty();
      const dirty = pending;
      pending = vm.ram.map((r) => new Uint32Array(Math.ceil(r.size / PAGE_SIZE / 32)));
      stats.dirtySyncCount++;
      const dirtyBytes = dirty.reduce((n, b) => n + countDirtyPages(b), 0) * PAGE_SIZE;
      const report = meter.endPass(dirtyBytes);
      stats.remainingBytes = dirtyBytes;
      // query-migrate's mbps is what went on the wire (QEMU's meaning), not the guest bytes the decision uses.
      stats.bandwidth = report.ms > 0 ? (stats.transferredBytes - passWire) / (report.ms / 1000) : 0;
      stats.dirtyPagesRate = report.ms > 0 ? Math.round(dirtyBytes / PAGE_SIZE / (report.ms / 1000)) : 0;
      const p = settings.parameters;
      const decision = local ? { action: 'switchover' as const, expectedDowntimeMs: 0, reason: 'memory was handed over' } : decideSwitchover({
        remainingBytes: dirtyBytes,
        bytesPerSecond: report.bandwidth,
        downtimeLimitMs: p['downtime-limit'],
        elapsedMs: performance.now() - stats.startedAt,
        timeoutS: p['x-migration-timeout'],
        strategy: p['x-migration-timeout-strategy'],
        previousRemainingBytes,
      });
      previousRemainingBytes = dirtyBytes;
      stats.expectedDowntimeMs = Number.isFinite(decision.expectedDowntimeMs) ? Math.round(decision.expectedDowntimeMs) : 0;
      limiter.setRate(p['max-bandwidth']);

      if (!local) ctx.log(`pass ${report.pass}: ${report.bytes} bytes in ${report.ms.toFixed(0)} ms, ${dirtyBytes} dirty; ${decision.reason}`);
      if (decision.action === 'cancel') throw new TsvirtError('ERR_MIGRATION_TIMEOUT', `migration did not converge: ${decision.reason}`);
      if (decision.action === 'switchover') {
        // Phase: switch-over. From the pause on, the guest is down until the destination runs it.
        phase = 'switch-over';
        await vm.setThrottle(0);
        const downtimeStart = performance.now();
        vm.setRunState('finish-migrate');
        await vm.pauseVcpus();
        paused = true;
        vm.quiesceDevices();
        // max-bandwidth paces pre-copy only; with the guest stopped, the last pages and state go at full speed (as QEMU).
        limiter.setRate(0);
        await vm.drainDevices();
        if (!local) collectDirty();
        const last = pending;
        for (let r = 0; r < last.length; r++) for (let i = 0; i < last[r].length; i++) last[r][i] |= dirty[r][i];
        stats.dirtySyncCount++;
        pass = meter.beginPass();
        passWire = stats.transferredBytes;
        stats.passes = pass;
        ctx.onPass(pass);
        if (!local) await sendPages(last, true);
        await multifd?.sync(w.summary.passes + 1, true, sendOn);
        await send(w.passEnd(stats.dirtySyncCount, true));
        for (let i = 0; i < vm.vcpuCount; i++) await send(w.vcpu(i, vm.saveVcpu(i)));
        await send([...w.irqchip(vm.saveIrqchip()), ...w.pit(vm.savePit())]);
        for (const d of vm.saveDevices()) await send(w.deviceJson(d.id, d.version, d.state));
        // The clock goes last, read as late as possible: the destination advances it by the time in flight.
        await send([...w.clock(vm.saveClock()), ...w.end()]);
        phase = 'awaiting READY';
        const ready = await replies.next('READY', ctx.cancelled);
        if (ready.type !== 'ready') throw new TsvirtError('ERR_MIGRATION_PEER', `expected READY, got ${ready.type}`);

        // Phase: commit. After RUN the guest belongs to the destination: never resume it here.
        phase = 'commit';
        status.commit();
        committed = true;
        await channel.write(w.run());
        await replies.next('RUNNING', null);
        stats.downtimeMs = Math.round(performance.now() - downtimeStart);
        stats.remainingBytes = 0;
        stats.cpuThrottlePercentage = 0;
        vm.stopDirtyLog();
        vm.setRunState('postmigrate');
        stats.finishedAt = performance.now();
        status.transition('completed');
        socket.end();
        multifd?.end();
        return;
      }
      // Another dirty pass.
      phase = `pass ${report.pass + 1}`;
      pass = meter.beginPass();
      passWire = stats.transferredBytes;
      stats.passes = pass;
      ctx.onPass(pass);
      await sendPages(dirty);
      await endPass();
    }
  } catch (e) {
    stats.finishedAt = performance.now();
    const cancelled = e instanceof MigrationCancelled;
    const message = cancelled ? 'migration cancelled' : `${phase}: ${(e as Error).message}`;
    await vm.setThrottle(0);
    stats.cpuThrottlePercentage = 0;
    if (dirtyLogging) vm.stopDirtyLog();
    if (socket && !socket.destroyed) {
      try {
        socket.write(Buffer.concat(w.error(message)));
      } catch {
        // The connection is already gone; the destination fails on its own.
      }
      socket.destroy();
    }
    multifd?.destroy();
    const refused = e instanceof TsvirtError && e.code === 'ERR_MIGRATION_PEER_REFUSED';
    if (committed && !refused) {
      // The destination may be running the guest: stay paused so the guest never runs twice.
      vm.setRunState('postmigrate');
      status.fail(`${message}; RUN was sent, so the guest may be running on the destination: the source stays paused`);
      throw e;
    }
    if (paused) vm.unquiesceDevices();
    // Resume what the migration paused; a guest the operator stopped meanwhile (QMP stop) stays stopped.
    if (wasRunning && (paused || vm.isRunning())) {
      vm.resumeVcpus();
      vm.setRunState('running');
    } else if (paused) {
      vm.setRunState('paused');
    }
    if (cancelled) status.transition('cancelled');
    else status.fail(message);
    throw e;
  }
}

export { describeAddress };
