// The narrow interface QMP's migration commands drive; the migration engineer implements it.
import { QmpArgumentError } from './errors.js';
import type { QmpEventSource } from './events.js';

/** Migration status as QEMU's `MigrationStatus` spells it on the wire. */
export type MigrationStatus =
  | 'none'
  | 'setup'
  | 'cancelling'
  | 'cancelled'
  | 'active'
  | 'postcopy-active'
  | 'postcopy-paused'
  | 'postcopy-recover'
  | 'completed'
  | 'failed'
  | 'colo'
  | 'pre-switchover'
  | 'device'
  | 'wait-unplug';

/** Every capability QEMU 7.2's `migrate-set-capabilities` accepts, in QEMU's order. */
export const MIGRATION_CAPABILITIES = [
  'xbzrle',
  'rdma-pin-all',
  'auto-converge',
  'zero-blocks',
  'compress',
  'events',
  'postcopy-ram',
  'x-colo',
  'release-ram',
  'block',
  'return-path',
  'pause-before-switchover',
  'multifd',
  'dirty-bitmaps',
  'postcopy-blocktime',
  'late-block-activate',
  'x-ignore-shared',
  'validate-uuid',
  'background-snapshot',
  'zero-copy-send',
  'postcopy-preempt',
] as const;

/** One migration capability name (`MigrationCapability`). */
export type MigrationCapability = (typeof MIGRATION_CAPABILITIES)[number];

/** A capability and whether it is on (`MigrationCapabilityStatus`). */
export interface MigrationCapabilityState {
  capability: MigrationCapability;
  state: boolean;
}

/**
 * The migration parameters tsvirt supports, camelCase; on the wire they are QEMU's kebab-case names
 * (`downtimeLimit` is `downtime-limit`). Units follow QEMU: milliseconds, bytes, bytes per second, percent.
 */
export interface MigrationParameters {
  /** Longest tolerated pause at switchover, ms (QEMU default 300, range 0..2000000). */
  downtimeLimit: number;
  /** Bandwidth cap for pre-copy, bytes/s (QEMU default 128 MiB/s). */
  maxBandwidth: number;
  /** Bandwidth cap in post-copy, bytes/s; 0 means unlimited. */
  maxPostcopyBandwidth: number;
  /** Parallel channels when the `multifd` capability is on (1..255, default 2). */
  multifdChannels: number;
  /** XBZRLE page cache size, bytes; a power of two of at least one page (default 64 MiB). */
  xbzrleCacheSize: number;
  /** First throttle step of auto-converge, percent (1..99, default 20). */
  cpuThrottleInitial: number;
  /** Throttle increment of auto-converge, percent (1..99, default 10). */
  cpuThrottleIncrement: number;
  /** Scale the last throttle step down when nearly converged (default false). */
  cpuThrottleTailslow: boolean;
  /** Upper bound of auto-converge throttling, percent (1..99, default 99). */
  maxCpuThrottle: number;
  /** Dirty-rate share of bandwidth that triggers throttling, percent (1..100, default 50). */
  throttleTriggerThreshold: number;
  /** Seconds a migration may run before `xMigrationTimeoutStrategy` applies; 0 = no limit (tsvirt's own). */
  xMigrationTimeout?: number;
  /** What the timeout does: `cancel` (the VM stays on the source) or `force-switchover`. */
  xMigrationTimeoutStrategy?: 'cancel' | 'force-switchover';
  /** Compression of multifd channels. */
  multifdCompression?: 'none' | 'zlib' | 'zstd';
}

/** QEMU 7.2's defaults for the supported parameters (measured with `query-migrate-parameters`). */
export const DEFAULT_MIGRATION_PARAMETERS: Readonly<MigrationParameters> = Object.freeze({
  downtimeLimit: 300,
  maxBandwidth: 134217728,
  maxPostcopyBandwidth: 0,
  multifdChannels: 2,
  xbzrleCacheSize: 67108864,
  cpuThrottleInitial: 20,
  cpuThrottleIncrement: 10,
  cpuThrottleTailslow: false,
  maxCpuThrottle: 99,
  throttleTriggerThreshold: 50,
});

/** Guest page size on x86; XBZRLE's cache must hold at least one page. */
const TARGET_PAGE_SIZE = 4096;

/**
 * Cross-member checks the argument schema cannot express, with QEMU 7.2's wording (member names in wire spelling).
 * Implementations call it on the merged parameters before applying a patch; the stub does.
 */
export function checkMigrationParameters(p: MigrationParameters): void {
  const x = p.xbzrleCacheSize;
  const powerOfTwo = Number.isSafeInteger(x) && x > 0 && 2 ** Math.round(Math.log2(x)) === x;
  if (!powerOfTwo || x < TARGET_PAGE_SIZE) {
    throw new QmpArgumentError(
      'xbzrle-cache-size',
      "Parameter 'xbzrle-cache-size' expects a power of two no less than the target page size",
    );
  }
  if (p.maxCpuThrottle < p.cpuThrottleInitial) {
    throw new QmpArgumentError(
      'max-cpu-throttle',
      "Parameter 'max-cpu-throttle' expects an integer in the range of cpu-throttle-initial to 99",
    );
  }
}

/** RAM transfer statistics (`MigrationStats`), camelCase; on the wire kebab-case (`normalBytes` is `normal-bytes`). */
export interface MigrationRamStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  normal: number;
  normalBytes: number;
  dirtyPagesRate: number;
  mbps: number;
  dirtySyncCount: number;
  pageSize: number;
  pagesPerSecond?: number;
  precopyBytes?: number;
  downtimeBytes?: number;
  postcopyBytes?: number;
  multifdBytes?: number;
  postcopyRequests?: number;
}

/** What `query-migrate` reports (`MigrationInfo`), camelCase; converted member by member to kebab-case on the wire. */
export interface MigrationInfo {
  status?: MigrationStatus;
  ram?: MigrationRamStats;
  /** Milliseconds since the migration started (or its total, once finished). */
  totalTime?: number;
  expectedDowntime?: number;
  downtime?: number;
  setupTime?: number;
  cpuThrottlePercentage?: number;
  /** XBZRLE figures (QEMU's `xbzrle-cache`), present while the capability is on. */
  xbzrleCache?: XbzrleCacheInfo;
  errorDesc?: string;
}

/** QEMU's XBZRLECacheStats, camelCase. */
export interface XbzrleCacheInfo {
  cacheSize: number;
  bytes: number;
  pages: number;
  cacheMiss: number;
  cacheMissRate: number;
  encodingRate: number;
  overflow: number;
}

/** What query-dirty-rate reports (QEMU's DirtyRateInfo, camelCase; kebab-case on the wire). */
export interface DirtyRateInfo {
  status: 'unstarted' | 'measuring' | 'measured';
  /** Megabytes per second the guest dirtied during the measurement; present once measured. */
  dirtyRate?: number;
  /** When the measurement started, seconds since the epoch. */
  startTime: number;
  /** Seconds measured. */
  calcTime: number;
  mode: 'dirty-bitmap';
}

/** Arguments of `migrate` (QEMU 7.2's members; `blk`, `inc` and `resume` are accepted and passed on). */
export interface MigrateRequest {
  uri: string;
  blk?: boolean;
  inc?: boolean;
  detach?: boolean;
  resume?: boolean;
}

/**
 * What the QMP migration commands call. Every method may throw a TsvirtError (its `qmpClass` and message go to the
 * client) and may be async; arguments have already been validated against the command schemas (types, ranges, no
 * unknown members), so an implementation checks only what a schema cannot (a URI's scheme, power-of-two sizes,
 * "a migration is already running").
 */
export interface MigrationApi {
  /** Start an outgoing migration and return once it is under way (QEMU's `migrate` does not wait for completion). */
  migrate(request: MigrateRequest): void | Promise<void>;
  /** Start listening for the incoming migration of a VM started with `-incoming defer` (QEMU's migrate-incoming). */
  migrateIncoming(uri: string): void | Promise<void>;
  /** Cancel the running migration; a no-op when none runs (as in QEMU). */
  cancel(): void | Promise<void>;
  /** Current status; `{ status: 'none' }` before any migration has run (see docs/qmp.md). */
  info(): MigrationInfo;
  /** Apply the given parameters (only the members present change). */
  setParameters(patch: Partial<MigrationParameters>): void | Promise<void>;
  /** Every supported parameter with its current value. */
  parameters(): MigrationParameters;
  /** Apply capability changes, all or none. */
  setCapabilities(changes: readonly MigrationCapabilityState[]): void | Promise<void>;
  /** Every capability in MIGRATION_CAPABILITIES order with its state. */
  capabilities(): MigrationCapabilityState[];
  /** Starts measuring how fast the guest dirties memory for `seconds` (calc-dirty-rate). */
  calcDirtyRate?(seconds: number): void | Promise<void>;
  /** The last or running dirty-rate measurement (query-dirty-rate). */
  dirtyRate?(): DirtyRateInfo;
  /** MIGRATION and MIGRATION_PASS events, if the implementation does not route them through VmApi.events. */
  readonly events?: QmpEventSource;
}
