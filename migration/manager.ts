// The migration side of QMP: migrate, migrate_cancel, query-migrate, parameters and capabilities, for source and destination.

import { TsvirtError } from '../machine/errors.js';
import { EventHub, MIGRATION_CAPABILITIES, type DirtyRateInfo, type MigrateRequest, type MigrationApi, type MigrationCapabilityState, type MigrationInfo, type MigrationParameters as QmpParameters } from '../qmp/index.js';
import { fromWire, toWire } from '../qmp/protocol.js';
import { constants as bufferConstants } from 'node:buffer';
import type { Server } from 'node:net';
import { listen, parseMigrationUri, type MigrationAddress } from './channel.js';
import { runDestination } from './destination.js';
import { MigrationSettings } from './params.js';
import { MigrationParamError } from './errors.js';
import { runSource } from './source.js';
import { runRestore, runSave } from './snapshot.js';
import { MigrationStats } from './stats.js';
import { countDirtyPages } from './ram.js';
import { MigrationStatus } from './status.js';
import type { MigratableVm } from './vm-port.js';

export interface ManagerOptions {
  readonly vm: MigratableVm;
  readonly log: (message: string) => void;
  /** Called when an incoming migration fails: the destination exits non-zero, never having run the guest. */
  readonly onIncomingFailed?: (message: string) => void;
  /** Called after a completed outgoing migration (StratoVirt's "source exits" option). */
  readonly onOutgoingCompleted?: () => void;
}

/**
 * Capabilities the parameter model knows but no code implements: refused rather than silently ignored. The send
 * path never copies page data in userspace already (the kernel copies from guest memory); MSG_ZEROCOPY, which
 * QEMU's zero-copy-send means, is not used.
 */
const NOT_YET: ReadonlySet<string> = new Set(['zero-copy-send']);

/** Owns the migration status, settings and the running session; what QMP's migration commands call. */
export class MigrationManager implements MigrationApi {
  readonly events = new EventHub();
  readonly settings = new MigrationSettings();
  private status: MigrationStatus;
  private stats: MigrationStats;
  private abort?: AbortController;
  private role: 'source' | 'destination' = 'source';

  constructor(private readonly opts: ManagerOptions) {
    this.status = this.newStatus('source');
    this.stats = new MigrationStats(this.totalRam());
  }

  private totalRam(): number {
    return this.opts.vm.ram.reduce((n, r) => n + r.size, 0);
  }

  private newStatus(role: 'source' | 'destination'): MigrationStatus {
    const s = new MigrationStatus(role, () => performance.now());
    s.onChange((c) => {
      if (this.settings.capability('events')) this.events.emit({ event: 'MIGRATION', data: { status: c.status } });
      this.opts.log(`migration ${c.previous} -> ${c.status}${c.errorDesc ? `: ${c.errorDesc}` : ''}`);
    });
    return s;
  }

  private deferred?: { startPaused: boolean };

  /** `-incoming defer`: the VM waits, in `inmigrate`, for migrate-incoming to say where to listen. */
  deferIncoming(startPaused: boolean): void {
    this.role = 'destination';
    this.deferred = { startPaused };
    this.opts.vm.setRunState('inmigrate');
  }

  /** Listens at once (so a busy port is this command's error, and the VM keeps waiting), then receives in the background. */
  async migrateIncoming(uri: string): Promise<void> {
    if (!this.deferred) {
      throw new TsvirtError('ERR_MIGRATION_STATE', this.role === 'destination' ? 'The incoming migration has already been started' : "'-incoming' was not specified on the command line");
    }
    const address = parseMigrationUri(uri);
    const deferred = this.deferred;
    // Taken before the await, so a second call meanwhile is refused rather than listening twice; given back on failure.
    this.deferred = undefined;
    let server: Server | undefined;
    try {
      server = address.kind === 'file' ? undefined : await listen(address);
    } catch (e) {
      this.deferred = deferred;
      throw e;
    }
    void this.incoming(address, deferred.startPaused, server).catch(() => {});
  }

  /** Starts waiting for an incoming migration (-incoming). */
  incoming(address: MigrationAddress, startPaused: boolean, listening?: Server): Promise<void> {
    this.role = 'destination';
    this.status = this.newStatus('destination');
    this.stats = new MigrationStats(this.totalRam());
    this.opts.vm.setRunState('inmigrate');
    const ctx = { vm: this.opts.vm, status: this.status, stats: this.stats, startPaused, log: this.opts.log };
    const done = address.kind === 'file' ? runRestore(ctx, address.path) : runDestination(ctx, address, listening);
    done.catch((e) => this.opts.onIncomingFailed?.((e as Error).message));
    return done;
  }

  migrate(request: MigrateRequest): void {
    if (this.role === 'destination') {
      // A guest that arrived here may move on; one still arriving may not.
      if (this.status.status !== 'completed') throw new TsvirtError('ERR_MIGRATION_STATE', 'This VM is waiting for an incoming migration; it cannot migrate out');
      this.role = 'source';
      this.status = this.newStatus('source');
    }
    if (this.status.status === 'completed') throw new TsvirtError('ERR_MIGRATION_STATE', 'The guest has already migrated away; it cannot migrate again');
    if (this.status.inProgress) throw new TsvirtError('ERR_MIGRATION_STATE', "There's a migration process in progress");
    if (this.dirtyRateInfo.status === 'measuring') throw new TsvirtError('ERR_MIGRATION_STATE', 'A dirty rate measurement is running; migrate after it');
    if (request.blk || request.inc) throw new TsvirtError('ERR_MIGRATION_BLOCK', 'Block migration is not supported: use shared storage');
    const address = parseMigrationUri(request.uri);
    if (this.settings.capability('x-ignore-shared') && address.kind !== 'unix') {
      throw new TsvirtError('ERR_MIGRATION_LOCAL', `Local migration (capability x-ignore-shared) hands memory over a unix socket on the same host; '${request.uri}' is not a unix: URI`);
    }
    // The transition is the last check (it refuses a retry after a commit-window failure): only then are the last
    // attempt's figures replaced.
    this.status.transition('setup');
    this.stats = new MigrationStats(this.totalRam());
    this.stats.startedAt = performance.now();
    this.abort = new AbortController();
    if (address.kind === 'file') {
      // A snapshot: stopped for the save, written in the background while QMP keeps answering.
      void runSave({ vm: this.opts.vm, status: this.status, stats: this.stats, log: this.opts.log }, address.path).catch((e) =>
        this.opts.log(`saving a snapshot failed: ${(e as Error).message}`),
      );
      return;
    }
    const events = this.events;
    void runSource(
      {
        vm: this.opts.vm,
        settings: this.settings,
        status: this.status,
        stats: this.stats,
        cancelled: this.abort.signal,
        onPass: (pass) => {
          if (this.settings.capability('events')) events.emit({ event: 'MIGRATION_PASS', data: { pass } });
        },
        log: this.opts.log,
      },
      address,
    ).then(
      () => this.opts.onOutgoingCompleted?.(),
      (e) => this.opts.log(`outgoing migration failed: ${(e as Error).message}`),
    );
  }

  cancel(): void {
    if (!this.status.inProgress || this.role === 'destination') return;
    if (!this.status.cancellable) return;
    this.status.transition('cancelling');
    this.abort?.abort();
  }

  info(): MigrationInfo {
    const s = this.status.status;
    if (s === 'none') return { status: 'none' };
    const st = this.stats;
    const end = st.finishedAt || performance.now();
    const ms = Math.max(1, end - st.startedAt);
    const info: MigrationInfo = {
      status: s,
      totalTime: Math.round(end - st.startedAt),
      setupTime: st.setupDoneAt ? Math.round(st.setupDoneAt - st.startedAt) : undefined,
      ram: {
        transferred: st.transferredBytes,
        remaining: st.remainingBytes,
        total: st.totalBytes,
        duplicate: st.zeroPages,
        normal: st.normalPages,
        normalBytes: st.normalPages * 4096,
        dirtyPagesRate: st.dirtyPagesRate,
        mbps: Math.round((st.bandwidth * 8) / 1e6 * 1000) / 1000,
        dirtySyncCount: st.dirtySyncCount,
        pageSize: 4096,
        pagesPerSecond: Math.round(((st.normalPages + st.zeroPages) * 1000) / ms),
      },
    };
    if (s === 'active' || s === 'setup') info.expectedDowntime = st.expectedDowntimeMs;
    if (st.downtimeMs !== undefined) info.downtime = st.downtimeMs;
    if (this.settings.capability('auto-converge')) info.cpuThrottlePercentage = st.cpuThrottlePercentage;
    if (st.multifdBytes) info.ram!.multifdBytes = st.multifdBytes;
    if (st.xbzrle) {
      const x = st.xbzrle;
      const looked = x.pages + x.cacheMiss + x.overflow;
      info.xbzrleCache = {
        cacheSize: this.settings.parameters['xbzrle-cache-size'],
        bytes: x.bytes,
        pages: x.pages,
        cacheMiss: x.cacheMiss,
        cacheMissRate: looked ? x.cacheMiss / looked : 0,
        encodingRate: x.bytes ? Math.round(((x.pages * 4096) / x.bytes) * 100) / 100 : 0,
        overflow: x.overflow,
      };
    }
    if (s === 'failed' && this.status.errorDesc) info.errorDesc = this.status.errorDesc;
    return info;
  }

  setParameters(patch: Partial<QmpParameters>): void {
    if (patch.multifdCompression === 'zstd') {
      // Node.js 20 ships zlib and brotli but no zstd, and no maintained npm zstd builds without a compiler download.
      throw new MigrationParamError('multifd-compression', "Parameter 'multifd-compression' value 'zstd' is not available in this tsvirt build (use 'zlib' or 'none')");
    }
    if (patch.xbzrleCacheSize !== undefined) {
      // The cache is one buffer: it can neither exceed what a buffer may hold nor, usefully, the guest's RAM (QEMU's rule).
      const most = Math.min(this.totalRam(), bufferConstants.MAX_LENGTH);
      if (patch.xbzrleCacheSize > most) {
        throw new MigrationParamError('xbzrle-cache-size', `Parameter 'xbzrle-cache-size' (${patch.xbzrleCacheSize}) exceeds ${most === this.totalRam() ? "the guest's RAM" : 'the largest buffer'} (${most} bytes)`);
      }
    }
    this.settings.set(toWire(patch) as Record<string, unknown>);
  }

  parameters(): QmpParameters {
    return fromWire(this.settings.queryParameters() as unknown as Record<string, unknown>) as unknown as QmpParameters;
  }

  setCapabilities(changes: readonly MigrationCapabilityState[]): void {
    for (const c of changes) {
      if (c.state && NOT_YET.has(c.capability)) {
        throw new TsvirtError('ERR_MIGRATION_CAPABILITY', `Capability '${c.capability}' is not implemented by this tsvirt yet`);
      }
    }
    this.settings.setCapabilities(changes, this.status.inProgress);
  }

  capabilities(): MigrationCapabilityState[] {
    const on = new Map(this.settings.queryCapabilities().map((c) => [c.capability as string, c.state]));
    return MIGRATION_CAPABILITIES.map((capability) => ({ capability, state: on.get(capability) ?? false }));
  }

  private dirtyRateInfo: DirtyRateInfo = { status: 'unstarted', startTime: 0, calcTime: 0, mode: 'dirty-bitmap' };

  /**
   * Counts the distinct pages the guest writes during `seconds` with KVM's dirty log (and the devices' writes),
   * so an operator can compare the rate with the link before migrating.
   */
  calcDirtyRate(seconds: number): void {
    if (this.dirtyRateInfo.status === 'measuring') throw new TsvirtError('ERR_DIRTY_RATE', 'A dirty rate measurement is already running');
    if (this.status.inProgress) throw new TsvirtError('ERR_DIRTY_RATE', 'A migration is running; its query-migrate reports dirty-pages-rate');
    const vm = this.opts.vm;
    const started = performance.now();
    this.dirtyRateInfo = { status: 'measuring', startTime: Math.floor(Date.now() / 1000), calcTime: seconds, mode: 'dirty-bitmap' };
    vm.startDirtyLog();
    vm.ram.forEach((_, r) => vm.takeDirtyPages(r));
    setTimeout(() => {
      let pages = 0;
      vm.ram.forEach((_, r) => (pages += countDirtyPages(vm.takeDirtyPages(r))));
      if (!this.status.inProgress) vm.stopDirtyLog();
      const secondsMeasured = (performance.now() - started) / 1000;
      this.dirtyRateInfo = { ...this.dirtyRateInfo, status: 'measured', dirtyRate: Math.round((pages * 4096) / 1e6 / secondsMeasured) };
    }, seconds * 1000).unref();
  }

  dirtyRate(): DirtyRateInfo {
    return this.dirtyRateInfo;
  }

  /** True once an outgoing migration completed (the guest has left). */
  get completed(): boolean {
    return this.status.status === 'completed';
  }
}
