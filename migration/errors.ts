// The typed errors of live migration: state machine, parameters, stream, compatibility and peer failures.

import { TsvirtError } from '../machine/errors.js';

/** A migration status change the state table does not allow (e.g. a second migrate after completion). */
export class MigrationStateError extends TsvirtError {
  readonly from: string;
  readonly to: string;
  constructor(from: string, to: string, message: string) {
    super('ERR_MIGRATION_STATE', message);
    this.from = from;
    this.to = to;
  }
}

/** A migration parameter or capability value is refused; `member` is its QMP name. */
export class MigrationParamError extends TsvirtError {
  readonly member: string;
  constructor(member: string, message: string) {
    super('ERR_MIGRATION_PARAM', message);
    this.member = member;
  }
}

/** Why a migration stream was refused; each reason has its own stable `code`. */
export type StreamFailure = 'truncated' | 'corrupt' | 'unsupported' | 'version' | 'limit' | 'order';

const STREAM_CODES: Readonly<Record<StreamFailure, string>> = {
  truncated: 'ERR_MIGRATION_TRUNCATED',
  corrupt: 'ERR_MIGRATION_CORRUPT',
  unsupported: 'ERR_MIGRATION_UNSUPPORTED',
  version: 'ERR_MIGRATION_VERSION',
  limit: 'ERR_MIGRATION_LIMIT',
  order: 'ERR_MIGRATION_ORDER',
};

/**
 * The migration stream is malformed, too large, out of order, of an unknown version, or ended early.
 * `where` names the part being parsed (`stream header`, `RAM_PAGES`, ...), so logs say which phase broke.
 */
export class MigrationStreamError extends TsvirtError {
  readonly reason: StreamFailure;
  readonly where: string;
  constructor(reason: StreamFailure, where: string, message: string) {
    super(STREAM_CODES[reason], message);
    this.reason = reason;
    this.where = where;
  }
}

/** One way the source VM differs from the destination VM. */
export interface CompatMismatch {
  /** What differs, e.g. `memory size`, `device 'net0' mac`. */
  readonly field: string;
  readonly source: string;
  readonly destination: string;
  /** `<field> mismatch: source <a>, destination <b>` or a more specific sentence. */
  readonly message: string;
}

/** The destination refuses the source's VM: every mismatch found, not only the first. */
export class MigrationCompatError extends TsvirtError {
  readonly mismatches: readonly CompatMismatch[];
  constructor(mismatches: readonly CompatMismatch[]) {
    super('ERR_MIGRATION_COMPAT', `incompatible migration source: ${mismatches.map((m) => m.message).join('; ')}`);
    this.mismatches = mismatches;
  }
}

/** The other side sent ERROR: its message is kept verbatim so both hosts log the same words. */
export class MigrationPeerError extends TsvirtError {
  readonly peerCode?: string;
  constructor(side: 'source' | 'destination', message: string, peerCode?: string) {
    super('ERR_MIGRATION_PEER', `${side} reported: ${message}`);
    this.peerCode = peerCode;
  }
}
