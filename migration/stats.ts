// Running figures of one migration, in the shape query-migrate reports them.

import type { XbzrleCounters } from './xbzrle.js';

/** What query-migrate reports about RAM and timing; updated by the source or destination session. */
export class MigrationStats {
  startedAt = 0;
  setupDoneAt = 0;
  finishedAt = 0;
  downtimeMs?: number;
  expectedDowntimeMs = 0;
  transferredBytes = 0;
  normalPages = 0;
  zeroPages = 0;
  remainingBytes = 0;
  dirtySyncCount = 0;
  /** Pages the guest dirtied per second, measured over the last pass. */
  dirtyPagesRate = 0;
  /** Bytes per second of the last pass. */
  bandwidth = 0;
  passes = 0;
  cpuThrottlePercentage = 0;
  /** Bytes sent over multifd data channels. */
  multifdBytes = 0;
  /** XBZRLE cache figures while the capability is on. */
  xbzrle?: XbzrleCounters;

  constructor(readonly totalBytes: number) {}
}
