// Convergence math: bandwidth per pass, expected downtime, the switchover decision, the rate limiter's bound, auto-converge.

import { expect } from 'chai';
import {
  AutoConverge,
  PassMeter,
  RateLimiter,
  bandwidthOf,
  decideSwitchover,
  expectedDowntimeMs,
  throttleSleepMs,
  type SwitchoverInput,
} from '../../../migration/convergence.js';
import { defaultParameters } from '../../../migration/params.js';
import { rng } from './fixtures.js';

const MB = 1_000_000;

describe('migration convergence', () => {
  describe('bandwidth and expected downtime', () => {
    it('computes bytes per second and the pause needed for the remaining bytes', () => {
      expect(bandwidthOf(250 * MB, 500)).to.equal(500 * MB);
      expect(bandwidthOf(1, 0)).to.equal(0);
      expect(expectedDowntimeMs(50 * MB, 500 * MB)).to.equal(100);
      expect(expectedDowntimeMs(0, 0)).to.equal(0);
      expect(expectedDowntimeMs(1, 0)).to.equal(Infinity);
    });

    it('measures each pass from the injected clock', () => {
      let t = 0;
      const m = new PassMeter(() => t);
      expect(m.beginPass()).to.equal(1);
      m.addBytes(100 * MB);
      m.addBytes(100 * MB);
      t = 400;
      expect(m.endPass(25 * MB)).to.deep.equal({ pass: 1, bytes: 200 * MB, ms: 400, bandwidth: 500 * MB, remainingBytes: 25 * MB, expectedDowntimeMs: 50 });
      m.beginPass();
      t = 500;
      expect(m.endPass(0)).to.deep.include({ pass: 2, bytes: 0, bandwidth: 0, expectedDowntimeMs: 0 });
      expect(m.lastPass?.pass).to.equal(2);
    });
  });

  describe('switchover decision', () => {
    const base: SwitchoverInput = { remainingBytes: 30 * MB, bytesPerSecond: 100 * MB, downtimeLimitMs: 300, elapsedMs: 1000, timeoutS: 0, strategy: 'cancel' };

    it('switches over when the expected downtime is within the limit', () => {
      expect(decideSwitchover(base)).to.deep.include({ action: 'switchover', expectedDowntimeMs: 300 });
    });

    it('iterates when the expected downtime exceeds the limit, saying by how much', () => {
      const d = decideSwitchover({ ...base, remainingBytes: 31 * MB });
      expect(d.action).to.equal('iterate');
      expect(d.reason).to.equal('expected downtime 310.0 ms exceeds the 300 ms limit');
    });

    it('runs one more pass when the last one cut the dirty set at least in half and the pause would not be short', () => {
      const d = decideSwitchover({ ...base, previousRemainingBytes: 60 * MB });
      expect(d.action).to.equal('iterate');
      expect(d.reason).to.equal('expected downtime 300.0 ms is within the 300 ms limit, but the last pass cut the dirty set 2.0x: one more pass');
      expect(decideSwitchover({ ...base, previousRemainingBytes: 59 * MB }).action).to.equal('switchover');
      expect(decideSwitchover({ ...base, remainingBytes: 3 * MB, previousRemainingBytes: 60 * MB }).action).to.equal('switchover');
      expect(decideSwitchover({ ...base, previousRemainingBytes: 60 * MB, timeoutS: 1, elapsedMs: 1000 }).action).to.equal('switchover');
    });

    it('counts the device state sent while paused', () => {
      expect(decideSwitchover({ ...base, stateBytes: 1 * MB }).action).to.equal('iterate');
    });

    it('switches over with nothing left even before any bandwidth is known, and iterates with something left', () => {
      expect(decideSwitchover({ ...base, remainingBytes: 0, bytesPerSecond: 0 }).action).to.equal('switchover');
      expect(decideSwitchover({ ...base, bytesPerSecond: 0 }).reason).to.equal('expected downtime unknown exceeds the 300 ms limit');
    });

    it('cancels or forces the switchover after the timeout, as the strategy says', () => {
      const late = { ...base, remainingBytes: 500 * MB, timeoutS: 10, elapsedMs: 10_000 };
      expect(decideSwitchover(late).action).to.equal('cancel');
      expect(decideSwitchover({ ...late, strategy: 'force-switchover' }).action).to.equal('switchover');
      expect(decideSwitchover({ ...late, elapsedMs: 9_999 }).action).to.equal('iterate');
      expect(decideSwitchover({ ...late, timeoutS: 0, elapsedMs: 1e9 }).action).to.equal('iterate');
    });
  });

  describe('rate limiter', () => {
    /** Sends as fast as the limiter allows for 10 simulated seconds; returns the send times and sizes. */
    function simulate(rate: number, size: (limit: number) => number, idle?: (t: number) => number): [number, number][] {
      let t = 0;
      const lim = new RateLimiter(rate, () => t);
      const sends: [number, number][] = [];
      while (t < 10_000) {
        const n = size(lim.chunkLimit);
        const wait = lim.take(n);
        if (wait === 0) {
          sends.push([t, n]);
          t += idle?.(t) ?? 0;
        } else {
          t += wait;
        }
      }
      return sends;
    }

    function worstSecond(sends: [number, number][]): number {
      let worst = 0;
      let j = 0;
      let sum = 0;
      for (let i = 0; i < sends.length; i++) {
        while (j < sends.length && sends[j][0] < sends[i][0] + 1000) sum += sends[j++][1];
        worst = Math.max(worst, sum);
        sum -= sends[i][1];
      }
      return worst;
    }

    for (const rate of [1 * MB, 125 * MB, 1000 * MB]) {
      it(`holds ${rate / MB} MB/s within 10 % over any second and delivers at least 90 % of it`, () => {
        const sends = simulate(rate, (limit) => limit);
        expect(worstSecond(sends)).to.be.at.most(rate * 1.1);
        const total = sends.reduce((n, s) => n + s[1], 0);
        expect(total / 10).to.be.at.least(rate * 0.9).and.at.most(rate * 1.1);
      });
    }

    it('holds the bound with irregular chunks and a bursty sender', () => {
      const next = rng(1);
      const rate = 50 * MB;
      const sends = simulate(rate, (limit) => 1 + Math.floor(next() * limit), () => (next() < 0.05 ? next() * 300 : 0));
      expect(worstSecond(sends)).to.be.at.most(rate * 1.1);
    });

    it('never waits when unlimited', () => {
      const lim = new RateLimiter(0, () => 0);
      expect(lim.take(1e12)).to.equal(0);
      expect(lim.chunkLimit).to.equal(Infinity);
    });

    it('takes a new rate mid-migration', () => {
      const lim = new RateLimiter(1 * MB, () => 0);
      lim.take(lim.chunkLimit);
      expect(lim.take(1)).to.equal(0);
      expect(lim.take(1)).to.be.greaterThan(0);
      lim.setRate(0);
      expect(lim.take(1e9)).to.equal(0);
      expect(lim.bytesPerSecond).to.equal(0);
    });
  });

  describe('auto-converge', () => {
    it("throttles on every second high period, from the initial value by the increment up to the maximum, as QEMU's schedule", () => {
      const ac = new AutoConverge(defaultParameters());
      const seen: number[] = [];
      for (let i = 0; i < 22; i++) seen.push(ac.onPeriod(100, 100));
      expect(seen).to.deep.equal([0, 20, 20, 30, 30, 40, 40, 50, 50, 60, 60, 70, 70, 80, 80, 90, 90, 99, 99, 99, 99, 99]);
    });

    it('steps on every high period when told its periods are short', () => {
      const ac = new AutoConverge(defaultParameters(), 1);
      const seen: number[] = [];
      for (let i = 0; i < 11; i++) seen.push(ac.onPeriod(100, 100));
      expect(seen).to.deep.equal([20, 30, 40, 50, 60, 70, 80, 90, 99, 99, 99]);
      expect(ac.onPeriod(10, 100)).to.equal(99);
    });

    it('does not count a period whose dirtied bytes stay within the threshold share of sent bytes', () => {
      const ac = new AutoConverge(defaultParameters());
      expect(ac.onPeriod(50, 100)).to.equal(0);
      expect(ac.onPeriod(51, 100)).to.equal(0);
      expect(ac.onPeriod(50, 100)).to.equal(0);
      expect(ac.onPeriod(51, 100)).to.equal(20);
    });

    it('with tailslow, raises only as far as the dirty rate needs', () => {
      const ac = new AutoConverge({ ...defaultParameters(), 'cpu-throttle-tailslow': true });
      ac.onPeriod(200, 100);
      ac.onPeriod(200, 100);
      expect(ac.percent).to.equal(20);
      ac.onPeriod(52, 100);
      // cpu now 80 %, ideal 80 x 50/52 = 76 %: raise by 4, not 10.
      expect(ac.onPeriod(52, 100)).to.equal(24);
      ac.reset();
      expect(ac.percent).to.equal(0);
    });

    it('honours a lower maximum and a custom start', () => {
      const ac = new AutoConverge({ ...defaultParameters(), 'cpu-throttle-initial': 60, 'max-cpu-throttle': 50 });
      ac.onPeriod(1, 0);
      expect(ac.onPeriod(1, 0)).to.equal(50);
    });

    it("converts a throttle percentage into QEMU's sleep per 10 ms timeslice", () => {
      expect(throttleSleepMs(0)).to.equal(0);
      expect(throttleSleepMs(50)).to.equal(10);
      expect(throttleSleepMs(20)).to.equal(2.5);
      expect(throttleSleepMs(99)).to.equal(990);
    });
  });
});
