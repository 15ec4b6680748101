// CPU throttling for auto-converge: the vCPUs run only part of every short cycle, so the guest dirties memory more slowly.

import type { Machine } from './machine.js';

/**
 * Each cycle the vCPUs run (100 - p) % of CYCLE_MS and are parked for the rest. QEMU sleeps after every 10 ms of
 * running, which at 99 % means a 990 ms stall; a 100 ms cycle keeps the longest stall under 100 ms at any setting.
 */
const CYCLE_MS = 100;

/** Duty-cycles a machine's vCPUs without changing its run state or emitting STOP/RESUME. */
export class VcpuThrottle {
  private pct = 0;
  /** The one duty-cycle loop, while it runs (a second loop could resume vCPUs under the first one's pause). */
  private loop?: Promise<void>;
  private wake?: () => void;

  constructor(private readonly machine: Machine) {}

  get percent(): number {
    return this.pct;
  }

  /** Sets the share of time taken from the guest (0 stops throttling; at most 99). */
  set(percent: number): void {
    this.pct = Math.max(0, Math.min(99, Math.round(percent)));
    if (this.pct > 0 && !this.loop) this.loop = this.run().finally(() => (this.loop = undefined));
    if (this.pct === 0) this.wake?.();
  }

  /** Stops throttling; resolves once the vCPUs run freely again (or stay parked by someone else). */
  async stop(): Promise<void> {
    this.set(0);
    await this.loop;
  }

  /** Sleeps `ms`, or less when `stop` wakes it. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wake = undefined; resolve(); }, ms);
      this.wake = () => { clearTimeout(t); this.wake = undefined; resolve(); };
    });
  }

  private async run(): Promise<void> {
    while (this.pct > 0) {
      const runMs = (CYCLE_MS * (100 - this.pct)) / 100;
      await this.sleep(runMs);
      if (this.pct === 0) break;
      if (this.machine.state !== 'running') continue;
      await this.machine.pauseVcpus();
      await this.sleep(CYCLE_MS - runMs);
      // Resume only while nobody else (QMP stop, the migration switch-over) has taken the vCPUs meanwhile.
      if (this.machine.state === 'running') this.machine.resumeVcpus();
    }
  }
}
