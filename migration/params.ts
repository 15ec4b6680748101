// Migration parameters and capabilities with QEMU's names, defaults and checks, set all-or-nothing.

import { MigrationParamError } from './errors.js';

/** Compression multifd channels may use, as QEMU's MultiFDCompression. */
export type MultifdCompression = 'none' | 'zlib' | 'zstd';

/** What happens when `x-migration-timeout` expires. */
export type TimeoutStrategy = 'cancel' | 'force-switchover';

/**
 * Migration parameters, keyed by their QMP names (`migrate-set-parameters`, `query-migrate-parameters`).
 * Members QEMU also has keep QEMU's meaning, units and defaults unless noted.
 */
export interface MigrationParameters {
  /** Most milliseconds the guest may be paused at switchover (QEMU: 300). */
  'downtime-limit': number;
  /**
   * Bytes per second the stream may use; 0 means unlimited, and is tsvirt's default. QEMU defaults to
   * 128 MiB/s, which a guest dirtying memory flat out (about 1 GB/s here) outruns forever; unlimited
   * converged in 1.7 s on the same guest. Operators sharing a link should set a cap.
   */
  'max-bandwidth': number;
  /**
   * Seconds a migration may take before `x-migration-timeout-strategy` applies; 0 means no limit (the
   * default, as QEMU, which has no timeout). Named after Cloud Hypervisor's `--migration-timeout`;
   * `x-` because QEMU has no such parameter.
   */
  'x-migration-timeout': number;
  /** `cancel` (default): the VM keeps running on the source. `force-switchover`: pause and finish regardless of downtime. */
  'x-migration-timeout-strategy': TimeoutStrategy;
  /** Milliseconds before the first self-announcement (gratuitous ARP / RARP) on the destination. */
  'announce-initial': number;
  /** Most milliseconds between announcements. */
  'announce-max': number;
  /** How many announcements to send. */
  'announce-rounds': number;
  /** Milliseconds added to the delay after each announcement. */
  'announce-step': number;
  /** Parallel connections for RAM when the multifd capability is on. */
  'multifd-channels': number;
  'multifd-compression': MultifdCompression;
  'max-postcopy-bandwidth': number;
  'multifd-zlib-level': number;
  'multifd-zstd-level': number;
  /** Bytes of page cache for XBZRLE; a power of two no smaller than a page. */
  'xbzrle-cache-size': number;
  /** Percent of CPU time taken from the guest when auto-converge first throttles. */
  'cpu-throttle-initial': number;
  /** Percent added each time auto-converge throttles harder. */
  'cpu-throttle-increment': number;
  /** Make the last increments smaller as the throttle nears what the dirty rate needs. */
  'cpu-throttle-tailslow': boolean;
  /** Most percent of CPU time auto-converge may take. */
  'max-cpu-throttle': number;
  /** Percent of bytes sent per sync period the guest may dirty before auto-converge counts the period as high. */
  'throttle-trigger-threshold': number;
}

/** Capabilities tsvirt knows, keyed by their QMP names (`migrate-set-capabilities`). */
export type MigrationCapability = 'events' | 'auto-converge' | 'multifd' | 'xbzrle' | 'x-ignore-shared' | 'zero-copy-send';

/** A capability's state as QMP reports it. */
export interface MigrationCapabilityStatus {
  capability: MigrationCapability;
  state: boolean;
}

interface IntSpec {
  kind: 'int';
  default: number;
  min: number;
  max: number;
  /** How the range is spelled in errors, after the numbers: `milliseconds`, `bytes/second`. */
  unit: string;
  powerOfTwo?: boolean;
}
interface EnumSpec<T extends string> {
  kind: 'enum';
  default: T;
  values: readonly T[];
}
interface BoolSpec {
  kind: 'bool';
  default: boolean;
}
// Brackets stop the conditional distributing over a union, so an enum's spec lists all its values.
type Spec<T> = [T] extends [number] ? IntSpec : [T] extends [boolean] ? BoolSpec : [T] extends [string] ? EnumSpec<T> : never;

/** QEMU's ceiling for downtime-limit: 2000 seconds. */
export const MAX_DOWNTIME_LIMIT_MS = 2_000_000;
/** A week: longer timeouts are almost certainly unit mistakes (milliseconds given as seconds). */
export const MAX_MIGRATION_TIMEOUT_S = 7 * 24 * 3600;

/** Every parameter's type, default and range: the one table validation, defaults and query read. */
export const PARAMETER_SPECS: { readonly [K in keyof MigrationParameters]: Spec<MigrationParameters[K]> } = {
  'downtime-limit': { kind: 'int', default: 300, min: 0, max: MAX_DOWNTIME_LIMIT_MS, unit: 'milliseconds' },
  'max-bandwidth': { kind: 'int', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, unit: 'bytes/second (0 = unlimited)' },
  'x-migration-timeout': { kind: 'int', default: 0, min: 0, max: MAX_MIGRATION_TIMEOUT_S, unit: 'seconds (0 = no limit)' },
  'x-migration-timeout-strategy': { kind: 'enum', default: 'cancel', values: ['cancel', 'force-switchover'] },
  'announce-initial': { kind: 'int', default: 50, min: 0, max: 100_000, unit: 'milliseconds' },
  'announce-max': { kind: 'int', default: 550, min: 0, max: 100_000, unit: 'milliseconds' },
  'announce-rounds': { kind: 'int', default: 5, min: 0, max: 1000, unit: 'rounds' },
  'announce-step': { kind: 'int', default: 100, min: 1, max: 10_000, unit: 'milliseconds' },
  // Stored for clients written for QEMU; tsvirt has no post-copy phase.
  'max-postcopy-bandwidth': { kind: 'int', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, unit: 'bytes/second' },
  'multifd-channels': { kind: 'int', default: 2, min: 1, max: 255, unit: 'channels' },
  'multifd-compression': { kind: 'enum', default: 'none', values: ['none', 'zlib', 'zstd'] },
  'multifd-zlib-level': { kind: 'int', default: 1, min: 0, max: 9, unit: '' },
  'multifd-zstd-level': { kind: 'int', default: 1, min: 0, max: 20, unit: '' },
  'xbzrle-cache-size': { kind: 'int', default: 64 * 1024 * 1024, min: 4096, max: Number.MAX_SAFE_INTEGER, unit: 'bytes', powerOfTwo: true },
  'cpu-throttle-initial': { kind: 'int', default: 20, min: 1, max: 99, unit: 'percent' },
  'cpu-throttle-increment': { kind: 'int', default: 10, min: 1, max: 99, unit: 'percent' },
  'cpu-throttle-tailslow': { kind: 'bool', default: false },
  'max-cpu-throttle': { kind: 'int', default: 99, min: 1, max: 99, unit: 'percent' },
  'throttle-trigger-threshold': { kind: 'int', default: 50, min: 1, max: 100, unit: 'percent' },
};

/** Capabilities in the order query-migrate-capabilities lists them; all default to off, as in QEMU. */
export const CAPABILITIES: readonly MigrationCapability[] = ['events', 'auto-converge', 'multifd', 'xbzrle', 'x-ignore-shared', 'zero-copy-send'];

/** The parameters' defaults, as a fresh object. */
export function defaultParameters(): MigrationParameters {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(PARAMETER_SPECS)) out[name] = spec.default;
  return out as unknown as MigrationParameters;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

function checkValue(name: string, spec: IntSpec | BoolSpec | EnumSpec<string>, value: unknown): void {
  switch (spec.kind) {
    case 'int': {
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        throw new MigrationParamError(name, `Invalid parameter type for '${name}', expected: integer`);
      }
      const unit = spec.unit ? ` ${spec.unit}` : '';
      if (spec.powerOfTwo && (value < spec.min || !isPowerOfTwo(value))) {
        throw new MigrationParamError(name, `Parameter '${name}' expects a power of two no less than ${spec.min}${unit}`);
      }
      if (value < spec.min || value > spec.max) {
        throw new MigrationParamError(name, `Parameter '${name}' expects an integer in the range of ${spec.min} to ${spec.max}${unit}`);
      }
      return;
    }
    case 'bool':
      if (typeof value !== 'boolean') throw new MigrationParamError(name, `Invalid parameter type for '${name}', expected: boolean`);
      return;
    case 'enum':
      if (typeof value !== 'string' || !spec.values.includes(value)) {
        throw new MigrationParamError(name, `Parameter '${name}' does not accept value '${String(value)}' (one of: ${spec.values.join(', ')})`);
      }
  }
}

/**
 * Rules between members: the same as QEMU's, checked on the combination a change would produce so that a
 * change that would break one is refused whole.
 */
function checkCombination(p: MigrationParameters, caps: ReadonlySet<MigrationCapability>): void {
  if (caps.has('zero-copy-send') && (!caps.has('multifd') || p['multifd-compression'] !== 'none')) {
    throw new MigrationParamError('zero-copy-send', 'Zero copy only available for non-compressed non-TLS multifd migration');
  }
  if (p['max-cpu-throttle'] < p['cpu-throttle-initial']) {
    throw new MigrationParamError('max-cpu-throttle', "Parameter 'max-cpu-throttle' expects an integer in the range of cpu-throttle-initial to 99");
  }
  if (caps.has('xbzrle') && caps.has('multifd')) {
    // Multifd channels carry whole pages; an XBZRLE delta needs the single ordered stream's page cache.
    throw new MigrationParamError('xbzrle', "Capability 'xbzrle' is not compatible with capability 'multifd'");
  }
}

/**
 * The migration parameters and capabilities of one VM. Changes are validated whole before any is applied,
 * so a refused `set` leaves everything as it was.
 */
export class MigrationSettings {
  private params: MigrationParameters = defaultParameters();
  private readonly caps = new Set<MigrationCapability>();

  /** The current parameters (a frozen copy: change them through `set`). */
  get parameters(): Readonly<MigrationParameters> {
    return Object.freeze({ ...this.params });
  }

  /** True when capability `name` is on. */
  capability(name: MigrationCapability): boolean {
    return this.caps.has(name);
  }

  /**
   * `migrate-set-parameters`: `changes` is the QMP arguments object. Unknown members, wrong types and values
   * out of range are refused with the member's name and its allowed range; nothing changes unless all pass.
   */
  set(changes: Readonly<Record<string, unknown>>): void {
    const next: Record<string, unknown> = { ...this.params };
    for (const [name, value] of Object.entries(changes)) {
      const spec = (PARAMETER_SPECS as Record<string, IntSpec | BoolSpec | EnumSpec<string>>)[name];
      if (!Object.hasOwn(PARAMETER_SPECS, name) || spec === undefined) {
        throw new MigrationParamError(name, `Parameter '${name}' is unexpected`);
      }
      checkValue(name, spec, value);
      next[name] = value;
    }
    const candidate = next as unknown as MigrationParameters;
    checkCombination(candidate, this.caps);
    this.params = candidate;
  }

  /**
   * `migrate-set-capabilities`: refused while a migration is in progress (QEMU's rule: the stream's shape
   * depends on them), for names tsvirt does not support, and for combinations QEMU refuses.
   */
  setCapabilities(list: readonly { capability: string; state: boolean }[], migrationInProgress = false): void {
    if (migrationInProgress) throw new MigrationParamError('capabilities', "There's a migration process in progress");
    const next = new Set(this.caps);
    for (const item of list) {
      const name = item.capability as MigrationCapability;
      if (!CAPABILITIES.includes(name)) {
        throw new MigrationParamError(String(item.capability), `Capability '${String(item.capability)}' is not supported by tsvirt (supported: ${CAPABILITIES.join(', ')})`);
      }
      if (typeof item.state !== 'boolean') {
        throw new MigrationParamError(name, `Invalid parameter type for 'state' of capability '${name}', expected: boolean`);
      }
      if (item.state) next.add(name);
      else next.delete(name);
    }
    checkCombination(this.params, next);
    this.caps.clear();
    for (const c of next) this.caps.add(c);
  }

  /** `query-migrate-parameters`: every member with its current value. */
  queryParameters(): MigrationParameters {
    return { ...this.params };
  }

  /** `query-migrate-capabilities`: `{capability, state}` for each capability tsvirt knows. */
  queryCapabilities(): MigrationCapabilityStatus[] {
    return CAPABILITIES.map((capability) => ({ capability, state: this.caps.has(capability) }));
  }
}
