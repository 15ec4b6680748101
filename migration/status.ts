// The migration status machine, spelled as QEMU's MigrationStatus: one table of allowed transitions for both sides.

import { MigrationStateError } from './errors.js';

/** Migration status as QEMU spells it in `query-migrate` and the `MIGRATION` event. */
export type MigrationState = 'none' | 'setup' | 'active' | 'completed' | 'failed' | 'cancelling' | 'cancelled';

/** Every status, in the order a successful migration visits them first. */
export const MIGRATION_STATES: readonly MigrationState[] = ['none', 'setup', 'active', 'completed', 'failed', 'cancelling', 'cancelled'];

/** Which end of a migration a status machine belongs to: the sender or the `-incoming` receiver. */
export type MigrationRole = 'source' | 'destination';

/** One allowed transition, the roles it applies to, and the event that takes it. */
export interface MigrationEdge {
  readonly from: MigrationState;
  readonly to: MigrationState;
  readonly roles: readonly MigrationRole[];
  readonly when: string;
}

const BOTH: readonly MigrationRole[] = ['source', 'destination'];
const SOURCE: readonly MigrationRole[] = ['source'];

/**
 * The only table of allowed transitions. The destination has no cancel (QEMU's has none in pre-copy either)
 * and no retry: once it has loaded part of a stream its RAM and devices are no longer a clean slate, so a
 * failed incoming migration ends with the process, as QEMU's does.
 */
export const MIGRATION_TRANSITIONS: readonly MigrationEdge[] = [
  { from: 'none', to: 'setup', roles: BOTH, when: 'migrate is accepted, or an incoming connection arrives' },
  { from: 'setup', to: 'active', roles: BOTH, when: 'the destination accepted CONFIG; RAM starts to flow' },
  { from: 'setup', to: 'failed', roles: BOTH, when: 'connecting, the stream header or the compatibility check failed' },
  { from: 'setup', to: 'cancelling', roles: SOURCE, when: 'migrate_cancel before any RAM was sent' },
  { from: 'active', to: 'completed', roles: BOTH, when: 'source: RUNNING arrived; destination: RUN arrived and the vCPUs run' },
  { from: 'active', to: 'failed', roles: BOTH, when: 'the transfer, the state load or the handshake failed' },
  { from: 'active', to: 'cancelling', roles: SOURCE, when: 'migrate_cancel before RUN was sent' },
  { from: 'cancelling', to: 'cancelled', roles: SOURCE, when: 'the source stopped sending and its vCPUs run again' },
  { from: 'cancelling', to: 'failed', roles: SOURCE, when: 'the migration failed while it was being cancelled' },
  { from: 'failed', to: 'setup', roles: SOURCE, when: 'a new migrate after a failure (the guest never left)' },
  { from: 'cancelled', to: 'setup', roles: SOURCE, when: 'a new migrate after a cancel' },
];

/** True when `role` may go from `from` to `to` according to MIGRATION_TRANSITIONS. */
export function isAllowedTransition(role: MigrationRole, from: MigrationState, to: MigrationState): boolean {
  return MIGRATION_TRANSITIONS.some((e) => e.from === from && e.to === to && e.roles.includes(role));
}

/** What a status listener receives; the QMP layer sends `MIGRATION {"status": status}` for each. */
export interface MigrationStatusChange {
  readonly role: MigrationRole;
  readonly status: MigrationState;
  readonly previous: MigrationState;
  /** Set when `status` is `failed`: QEMU's `error-desc`. */
  readonly errorDesc?: string;
}

/** Called after each status change. */
export type MigrationStatusListener = (change: MigrationStatusChange) => void;

/**
 * One side's migration status. Besides the table it guards the point of no return: once the source has
 * sent RUN (`commit()`), the guest may be running on the destination, so neither a cancel nor a new
 * migrate is allowed from that attempt, even if it later fails.
 */
export class MigrationStatus {
  readonly role: MigrationRole;
  private current: MigrationState = 'none';
  private readonly listeners: MigrationStatusListener[] = [];
  private readonly entered = new Map<MigrationState, number>();
  private committedAttempt = false;
  private error?: string;

  constructor(role: MigrationRole, private readonly now: () => number = Date.now) {
    this.role = role;
    this.entered.set('none', now());
  }

  get status(): MigrationState {
    return this.current;
  }

  /** QEMU's `error-desc`: why the last attempt failed (cleared when a new one starts). */
  get errorDesc(): string | undefined {
    return this.error;
  }

  /** True once the source has sent RUN in the current attempt. */
  get committed(): boolean {
    return this.committedAttempt;
  }

  /** When the machine last entered `state` (the injected clock's units), for query-migrate's times. */
  enteredAt(state: MigrationState): number | undefined {
    return this.entered.get(state);
  }

  /** True when `transition(to)` would succeed now. */
  can(to: MigrationState): boolean {
    return this.refusal(to) === undefined;
  }

  /** True while a migrate_cancel would be honoured. */
  get cancellable(): boolean {
    return this.can('cancelling');
  }

  /** True from setup until the attempt ends (QEMU refuses a second migrate then). */
  get inProgress(): boolean {
    return this.current === 'setup' || this.current === 'active' || this.current === 'cancelling';
  }

  /** Registers a listener for every status change; returns a function that removes it. */
  onChange(listener: MigrationStatusListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Moves to `to`, or throws MigrationStateError naming both ends. `errorDesc` is recorded for `failed`.
   * Every listener runs even if one throws; the first exception is rethrown after the change is complete.
   */
  transition(to: MigrationState, errorDesc?: string): void {
    const why = this.refusal(to);
    if (why !== undefined) throw new MigrationStateError(this.current, to, why);
    const previous = this.current;
    this.current = to;
    this.entered.set(to, this.now());
    if (to === 'setup') {
      this.committedAttempt = false;
      this.error = undefined;
    }
    if (to === 'failed') this.error = errorDesc ?? 'migration failed';
    const change: MigrationStatusChange = { role: this.role, status: to, previous, ...(to === 'failed' ? { errorDesc: this.error } : {}) };
    let first: unknown;
    let threw = false;
    for (const l of [...this.listeners]) {
      try {
        l(change);
      } catch (e) {
        if (!threw) first = e;
        threw = true;
      }
    }
    if (threw) throw first;
  }

  /** Shorthand for `transition('failed', message)`. */
  fail(message: string): void {
    this.transition('failed', message);
  }

  /**
   * The source is about to send RUN: from here on the guest belongs to the destination. Only legal while
   * active; afterwards `cancelling` and a retry from `failed` are refused.
   */
  commit(): void {
    if (this.role !== 'source') throw new MigrationStateError(this.current, this.current, 'only the source commits a migration');
    if (this.current !== 'active') {
      throw new MigrationStateError(this.current, this.current, `migration cannot commit from status ${this.current}; it must be active`);
    }
    this.committedAttempt = true;
  }

  private refusal(to: MigrationState): string | undefined {
    const from = this.current;
    if (this.committedAttempt && to === 'cancelling') {
      return 'migration is past the point of no return (RUN was sent to the destination); it cannot be cancelled';
    }
    if (this.committedAttempt && from === 'failed' && to === 'setup') {
      return 'the guest may be running on the destination (RUN was sent before the migration failed); a new migration from here is refused';
    }
    if (isAllowedTransition(this.role, from, to)) return undefined;
    if (from === 'completed') return `the guest has left: migration already completed, status cannot change from completed to ${to}`;
    if (to === 'setup' && this.inProgress) return `There's a migration process in progress (status ${from})`;
    if (this.role === 'destination' && from === 'failed') {
      return `the incoming migration failed; restart tsvirt with -incoming to receive another (status cannot change from failed to ${to})`;
    }
    return `migration status cannot change from ${from} to ${to}${this.role === 'destination' ? ' on the destination' : ''}`;
  }
}
