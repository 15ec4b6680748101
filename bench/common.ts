// What every benchmark shares: medians and table formatting, per-thread CPU time from /proc, finding QEMU, and
// setting migration capabilities and parameters over QMP.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/** Median of the finite values; undefined when there are none. */
export function median(xs: readonly (number | undefined)[]): number | undefined {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

export function fmt(x: number | undefined, digits = 0): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

export function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? '-' : (a / b).toFixed(2);
}

/** ns on CPU per thread of a process, from /proc/PID/task/TID/schedstat, so sub-second intervals are measured too. */
export type CpuSnap = Map<string, { comm: string; ns: number }>;

export function cpuSnap(pid: number | undefined): CpuSnap {
  const threads: CpuSnap = new Map();
  if (pid === undefined) return threads;
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const ns = Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        threads.set(tid, { comm, ns });
      } catch {
        // Thread ended meanwhile.
      }
    }
  } catch {
    // Process gone.
  }
  return threads;
}

/** Adds a fresh snapshot into `acc`: threads that ended keep their last sampled time (QEMU's migration thread exits). */
export function cpuMerge(acc: CpuSnap, pid: number | undefined): void {
  for (const [tid, t] of cpuSnap(pid)) acc.set(tid, t);
}

/** CPU use between two snapshots: whole process and vCPU threads (100 = one core), and the busiest threads as text. */
export interface CpuUse {
  pct: number;
  vcpu: number;
  top: string;
}

export function cpuDelta(a: CpuSnap, b: CpuSnap, pid: number | undefined, vcpuTids: Set<string>, ms: number, opts = { minPct: 0.5, top: 4 }): CpuUse {
  const per: { name: string; pct: number }[] = [];
  let pct = 0;
  let vcpu = 0;
  for (const [tid, t] of b) {
    const p = ((t.ns - (a.get(tid)?.ns ?? 0)) / 1e6 / ms) * 100;
    pct += p;
    if (vcpuTids.has(tid)) vcpu += p;
    if (p >= opts.minPct) per.push({ name: tid === String(pid) ? 'main' : vcpuTids.has(tid) ? 'vcpu' : `${t.comm}/${tid}`, pct: p });
  }
  per.sort((x, y) => y.pct - x.pct);
  return { pct, vcpu, top: per.slice(0, opts.top).map((p) => `${p.name} ${p.pct.toFixed(0)}%`).join(', ') };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Path of qemu-system-x86_64, or '' when QEMU is not installed (the benchmarks then measure tsvirt alone). */
export function qemuBinaryPath(): string {
  return execFileSync('sh', ['-c', 'command -v qemu-system-x86_64 || true'], { encoding: 'utf8' }).trim();
}

/** Migration capabilities and parameters for one side of one VMM, as the benchmarks set them over QMP. */
export interface MigrationSettings {
  caps?: Record<string, boolean>;
  params?: Record<string, number | string>;
}

/** migrate-set-capabilities, then migrate-set-parameters (QEMU checks some parameters against the capabilities). */
export async function applyMigrationSettings(qmp: { run(command: string, args?: Record<string, unknown>): Promise<unknown> }, s: MigrationSettings | undefined): Promise<void> {
  const caps = Object.entries(s?.caps ?? {});
  if (caps.length) await qmp.run('migrate-set-capabilities', { capabilities: caps.map(([capability, state]) => ({ capability, state })) });
  if (s?.params && Object.keys(s.params).length) await qmp.run('migrate-set-parameters', s.params);
}

/** Runs `cleanup` on every way out of a benchmark: normal exit, and Ctrl-C / SIGTERM / SIGHUP (then exits 130). */
export function cleanupOnExit(cleanup: () => void): void {
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
}
