// Pre-copy convergence math, pure and clock-injected: bandwidth per pass, expected downtime, switchover, rate limit, auto-converge.

import type { MigrationParameters, TimeoutStrategy } from './params.js';

/** Bytes per second for `bytes` sent in `ms` milliseconds; 0 when no time has passed (nothing is known yet). */
export function bandwidthOf(bytes: number, ms: number): number {
  return ms > 0 ? (bytes * 1000) / ms : 0;
}

/** Milliseconds the guest would be paused to send `remainingBytes` at `bytesPerSecond`; Infinity when the bandwidth is unknown. */
export function expectedDowntimeMs(remainingBytes: number, bytesPerSecond: number): number {
  if (remainingBytes <= 0) return 0;
  return bytesPerSecond > 0 ? (remainingBytes * 1000) / bytesPerSecond : Infinity;
}

/** What one finished pass measured. */
export interface PassReport {
  pass: number;
  bytes: number;
  ms: number;
  /** Bytes per second over the pass. */
  bandwidth: number;
  /** Dirty bytes waiting when the pass ended. */
  remainingBytes: number;
  expectedDowntimeMs: number;
}

/**
 * Measures each pre-copy pass: the bytes the source wrote and how long it took. The estimate is the last
 * pass's average, as QEMU's per-iteration figure: the most recent link and CPU conditions count, and
 * a pass is long enough (it sends all pages dirtied since the last) to smooth out single writes.
 */
export class PassMeter {
  private pass = 0;
  private start = 0;
  private bytes = 0;
  private last?: PassReport;

  constructor(private readonly now: () => number) {}

  /** Starts the next pass (numbered from 1). */
  beginPass(): number {
    this.pass++;
    this.start = this.now();
    this.bytes = 0;
    return this.pass;
  }

  /** Counts bytes handed to the transport during this pass. */
  addBytes(n: number): void {
    this.bytes += n;
  }

  /** Ends the pass; `remainingBytes` is the dirty memory the next dirty-log sync found. */
  endPass(remainingBytes: number): PassReport {
    const ms = this.now() - this.start;
    const bandwidth = bandwidthOf(this.bytes, ms);
    const report = { pass: this.pass, bytes: this.bytes, ms, bandwidth, remainingBytes, expectedDowntimeMs: expectedDowntimeMs(remainingBytes, bandwidth) };
    this.last = report;
    return report;
  }

  /** The last finished pass, if any. */
  get lastPass(): PassReport | undefined {
    return this.last;
  }
}

/** What the source does after a pass. */
export type SwitchoverAction = 'iterate' | 'switchover' | 'cancel';

/** Inputs of the switchover decision; `stateBytes` estimates the vCPU and device state sent while paused. */
export interface SwitchoverInput {
  remainingBytes: number;
  bytesPerSecond: number;
  downtimeLimitMs: number;
  elapsedMs: number;
  /** `x-migration-timeout` in seconds; 0 means no limit. */
  timeoutS: number;
  strategy: TimeoutStrategy;
  stateBytes?: number;
  /** Dirty bytes the pass before this one left (0 or absent for the first pass). */
  previousRemainingBytes?: number;
}

/**
 * A pass that cut the dirty set at least this many times over says the next one will cut it again: another pass then
 * buys a shorter pause, as long as the pause expected now is not already small (DOWNTIME_FLOOR of the limit).
 */
const FAST_SHRINK = 2;
const DOWNTIME_FLOOR = 0.1;

/** The decision, the downtime it expects, and a sentence for the log. */
export interface SwitchoverDecision {
  action: SwitchoverAction;
  expectedDowntimeMs: number;
  reason: string;
}

/**
 * Switch over when the remaining bytes fit in the downtime limit at the measured bandwidth (QEMU's
 * `pending <= bandwidth x downtime-limit`), unless the last pass shrank the dirty set fast enough that one more
 * pass promises a much shorter pause (XBZRLE and compression make passes cheap); when the timeout has passed,
 * cancel or force the switchover as the strategy says; otherwise run another pass.
 */
export function decideSwitchover(i: SwitchoverInput): SwitchoverDecision {
  const expected = expectedDowntimeMs(i.remainingBytes + (i.stateBytes ?? 0), i.bytesPerSecond);
  const fmt = (ms: number) => (Number.isFinite(ms) ? `${ms.toFixed(1)} ms` : 'unknown');
  const shrinking = i.previousRemainingBytes !== undefined && i.previousRemainingBytes > 0 && i.remainingBytes * FAST_SHRINK <= i.previousRemainingBytes;
  const pastTimeout = i.timeoutS > 0 && i.elapsedMs >= i.timeoutS * 1000;
  if (expected <= i.downtimeLimitMs && shrinking && !pastTimeout && expected > i.downtimeLimitMs * DOWNTIME_FLOOR) {
    return {
      action: 'iterate',
      expectedDowntimeMs: expected,
      reason: `expected downtime ${fmt(expected)} is within the ${i.downtimeLimitMs} ms limit, but the last pass cut the dirty set ${(i.previousRemainingBytes! / Math.max(1, i.remainingBytes)).toFixed(1)}x: one more pass`,
    };
  }
  if (expected <= i.downtimeLimitMs) {
    return { action: 'switchover', expectedDowntimeMs: expected, reason: `expected downtime ${fmt(expected)} is within the ${i.downtimeLimitMs} ms limit` };
  }
  if (pastTimeout) {
    const action = i.strategy === 'force-switchover' ? 'switchover' : 'cancel';
    return { action, expectedDowntimeMs: expected, reason: `the ${i.timeoutS} s migration timeout passed with expected downtime ${fmt(expected)} over the ${i.downtimeLimitMs} ms limit` };
  }
  return { action: 'iterate', expectedDowntimeMs: expected, reason: `expected downtime ${fmt(expected)} exceeds the ${i.downtimeLimitMs} ms limit` };
}

/** Bucket depth as a fraction of a second of rate: 40 ms. */
const BURST_SECONDS = 1 / 25;

/**
 * Token bucket for `max-bandwidth`. The bucket holds 40 ms of rate and a send may overdraw it by one
 * chunk, so over any one-second window at most rate + 2 x 40 ms of rate pass, 8 % over, as long as
 * chunks stay within `chunkLimit`. A rate of 0 means unlimited.
 */
export class RateLimiter {
  private rate = 0;
  private tokens = 0;
  private last: number;

  constructor(bytesPerSecond: number, private readonly now: () => number) {
    this.last = now();
    this.setRate(bytesPerSecond);
  }

  /** Changes the rate (max-bandwidth may change mid-migration); the bucket starts full at the new depth. */
  setRate(bytesPerSecond: number): void {
    // Called after every pass: an unchanged rate keeps the bucket (and any overdraft), else each pass boundary bursts.
    if (Math.max(0, bytesPerSecond) === this.rate) return;
    this.rate = Math.max(0, bytesPerSecond);
    this.tokens = this.capacity;
    this.last = this.now();
  }

  get bytesPerSecond(): number {
    return this.rate;
  }

  private get capacity(): number {
    return this.rate * BURST_SECONDS;
  }

  /** Largest chunk to send at once for the 10 % bound to hold: 40 ms of rate, at least a page. */
  get chunkLimit(): number {
    return this.rate === 0 ? Infinity : Math.max(4096, Math.floor(this.capacity));
  }

  /** Returns 0 and takes `bytes` if they may be sent now; otherwise the milliseconds to wait before asking again. */
  take(bytes: number): number {
    if (this.rate === 0) return 0;
    const t = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((t - this.last) * this.rate) / 1000);
    this.last = t;
    if (this.tokens < 0) return Math.ceil((-this.tokens * 1000) / this.rate);
    this.tokens -= bytes;
    return 0;
  }
}

/** The auto-converge parameters, by their QMP names. */
export type ThrottleParameters = Pick<MigrationParameters, 'cpu-throttle-initial' | 'cpu-throttle-increment' | 'cpu-throttle-tailslow' | 'max-cpu-throttle' | 'throttle-trigger-threshold'>;

/**
 * QEMU's auto-converge schedule. After each dirty-log sync period (QEMU: at least a second apart) the
 * source reports the bytes the guest dirtied and the bytes it sent in that period. A period is "high"
 * when dirtied > sent x threshold %; every second high period (not necessarily consecutive, as in QEMU; see the constructor)
 * starts the throttle at `cpu-throttle-initial` or raises it by `cpu-throttle-increment` up to
 * `max-cpu-throttle`. With tailslow, the increment shrinks to what would bring the dirty rate to the
 * threshold.
 */
export class AutoConverge {
  private pct = 0;
  private highPeriods = 0;

  /**
   * `highPeriodsPerStep`: high periods per throttle step, 2 as in QEMU, whose periods are pass ends at least a second
   * apart. A caller sampling more often (tsvirt's source: every 250 ms) may step on every high period.
   */
  constructor(private readonly params: ThrottleParameters, private readonly highPeriodsPerStep = 2) {}

  /** Percent of vCPU time taken from the guest now; 0 when not throttling. */
  get percent(): number {
    return this.pct;
  }

  /** Feeds one sync period; returns the throttle percent to apply from now on. */
  onPeriod(bytesDirtied: number, bytesTransferred: number): number {
    const threshold = (bytesTransferred * this.params['throttle-trigger-threshold']) / 100;
    if (bytesDirtied > threshold && ++this.highPeriods >= this.highPeriodsPerStep) {
      this.highPeriods = 0;
      this.throttleDown(bytesDirtied, threshold);
    }
    return this.pct;
  }

  /** Stops throttling (migration ended or was cancelled). */
  reset(): void {
    this.pct = 0;
    this.highPeriods = 0;
  }

  private throttleDown(dirtied: number, threshold: number): void {
    const p = this.params;
    if (this.pct === 0) {
      this.pct = Math.min(p['cpu-throttle-initial'], p['max-cpu-throttle']);
      return;
    }
    let inc = p['cpu-throttle-increment'];
    if (p['cpu-throttle-tailslow']) {
      const cpuNow = 100 - this.pct;
      const cpuIdeal = Math.floor(cpuNow * (threshold / dirtied));
      inc = Math.min(cpuNow - cpuIdeal, inc);
    }
    this.pct = Math.min(this.pct + inc, p['max-cpu-throttle']);
  }
}

/**
 * How long a throttled vCPU sleeps after each `timesliceMs` of running, as QEMU's cpu-throttle does:
 * at p % the vCPU runs (100 - p) % of the time, so it sleeps timeslice x p / (100 - p).
 */
export function throttleSleepMs(percent: number, timesliceMs = 10): number {
  if (percent <= 0) return 0;
  const p = Math.min(percent, 99);
  return (timesliceMs * p) / (100 - p);
}
