// Live migration benchmark: the test guest migrated by tsvirt and by QEMU 7.2 in the same run, same memory, same workload,
// loopback tcp; medians of total time, reported downtime, the guest's heartbeat gaps and throughput, with tsvirt/QEMU ratios.
//
//   node dist/bench/migration.js [--set all|quick|classic|features] [scenario...]   (no names and no --set: all)
//   BENCH_RUNS=N (default 3), BENCH_QUICK=1 (one run), BENCH_CAP_S=S (default 30; a scenario may allow more),
//   BENCH_TSVIRT_LOG=1 (run the tsvirt source with TSVIRT_LOG=info and print its per-pass lines),
//   BENCH_HB_MS=N (guest heartbeat period, default the guest's 100 ms: smaller resolves short guest-seen downtimes better),
//   BENCH_PLOT=FILE.svg (per-pass chart of BENCH_PLOT_SCENARIO, default dirty-100mibps-125mbps, which must be in the run)

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../tests/harness/migration.js';
import { testGuest } from '../tests/harness/guest.js';
import { QmpClient } from '../tests/harness/qmp-client.js';
import { VmmProcess } from '../tests/harness/tsvirt-process.js';
import { applyMigrationSettings, cleanupOnExit, cpuDelta, cpuMerge, cpuSnap, fmt, median, type MigrationSettings, qemuBinaryPath, ratio, sleep } from './common.js';
import { passChartSvg, type ChartLine, type PassPoint } from './svg-chart.js';

const RUNS = process.env.BENCH_QUICK === '1' ? 1 : Number(process.env.BENCH_RUNS ?? 3);
/** How long one migration may take before it counts as "did not converge" and is cancelled. */
const CAP_MS = Number(process.env.BENCH_CAP_S ?? 30) * 1000;
const MiB = 1024 * 1024;

type VmmKind = 'tsvirt' | 'qemu';
const VMM_NAME: Record<VmmKind, string> = { tsvirt: 'tsvirt', qemu: 'QEMU 7.2' };

type Settings = MigrationSettings;
type PerVmm<T> = Partial<Record<VmmKind, T>>;

interface Scenario {
  name: string;
  memMiB: number;
  /** Guest command line (dirtier settings). */
  append: string;
  /** Source capabilities and parameters per VMM, set before `migrate`; absent = that VMM's defaults. */
  src?: PerVmm<Settings>;
  /**
   * Destination settings per VMM. QEMU's destination then starts with `-incoming defer` and gets `migrate-incoming`
   * after them (QEMU needs multifd on both sides); tsvirt's destination learns multifd from the stream and needs none.
   */
  dst?: PerVmm<Settings>;
  /** Seconds one migration may take before it counts as "did not converge", when more than BENCH_CAP_S. */
  capS?: number;
  dirty: boolean;
  what: string;
}

const both = (x: Settings): PerVmm<Settings> => ({ tsvirt: x, qemu: x });
function merge(...xs: Settings[]): Settings {
  return { caps: Object.assign({}, ...xs.map((x) => x.caps)), params: Object.assign({}, ...xs.map((x) => x.params)) };
}
const UNCAPPED: Settings = { params: { 'max-bandwidth': 10737418240 } };
const LIMITED: Settings = { params: { 'max-bandwidth': 125000000, 'downtime-limit': 300 } };
const multifd = (channels: number, compression: 'none' | 'zlib' = 'none'): Settings => ({
  caps: { multifd: true },
  params: { 'multifd-channels': channels, 'multifd-compression': compression },
});
const FLAT_OUT = 'console=ttyS0 dirty_mib=256 dirty_rate=0';

const SCENARIOS: Scenario[] = [
  { name: 'idle-1g', memMiB: 1024, append: 'console=ttyS0', dirty: false, what: 'idle guest (heartbeats only), 1 GiB, defaults' },
  { name: 'idle-4g', memMiB: 4096, append: 'console=ttyS0', dirty: false, what: 'idle guest, 4 GiB, defaults' },
  {
    name: 'dirty-256m-full', memMiB: 1024, append: FLAT_OUT, dirty: true,
    what: '1 GiB, 256 MiB written flat out; each VMM with its DEFAULT parameters (tsvirt: unlimited bandwidth; QEMU: 128 MiB/s)',
  },
  {
    name: 'dirty-256m-full-uncapped', memMiB: 1024, append: FLAT_OUT, dirty: true, src: both(UNCAPPED),
    what: 'same workload, max-bandwidth 10737418240 on both (tsvirt\'s default is already unlimited)',
  },
  {
    name: 'dirty-100mibps-125mbps', memMiB: 1024, append: 'console=ttyS0 dirty_mib=256 dirty_rate=100', dirty: true, src: both(LIMITED),
    what: '1 GiB, 256 MiB written at 100 MiB/s; max-bandwidth 125000000 B/s, downtime-limit 300 ms on both',
  },
  {
    name: 'dirty-256m-full-autoconverge', memMiB: 1024, append: FLAT_OUT, dirty: true, capS: 120,
    src: both({ caps: { 'auto-converge': true }, params: { 'max-bandwidth': 134217728 } }),
    what: '1 GiB, 256 MiB written flat out; capability auto-converge and max-bandwidth 134217728 (QEMU\'s default 128 MiB/s) on both, throttle parameters at their defaults; cap 120 s',
  },
  {
    name: 'dirty-100mibps-125mbps-xbzrle', memMiB: 1024, append: 'console=ttyS0 dirty_mib=256 dirty_rate=100', dirty: true,
    src: both(merge(LIMITED, { caps: { xbzrle: true }, params: { 'xbzrle-cache-size': 536870912 } })),
    what: 'as dirty-100mibps-125mbps, plus capability xbzrle with xbzrle-cache-size 536870912 (512 MiB) on both '
      + "(per-run lines: QEMU's xbzrle-cache cache-miss-rate and encoding-rate cover its last rate period, tsvirt's the whole migration)",
  },
  {
    name: 'idle-4g-multifd-2', memMiB: 4096, append: 'console=ttyS0', dirty: false, src: both(multifd(2)), dst: { qemu: multifd(2) },
    what: 'idle guest, 4 GiB, capability multifd with 2 channels (QEMU: on both sides, destination deferred)',
  },
  {
    name: 'idle-4g-multifd-4', memMiB: 4096, append: 'console=ttyS0', dirty: false, src: both(multifd(4)), dst: { qemu: multifd(4) },
    what: 'idle guest, 4 GiB, multifd with 4 channels',
  },
  {
    name: 'dirty-256m-full-uncapped-multifd-2', memMiB: 1024, append: FLAT_OUT, dirty: true,
    src: both(merge(UNCAPPED, multifd(2))), dst: { qemu: multifd(2) },
    what: 'as dirty-256m-full-uncapped, with multifd 2 channels, no compression',
  },
  {
    name: 'dirty-256m-full-uncapped-multifd-2-zlib', memMiB: 1024, append: FLAT_OUT, dirty: true,
    src: both(merge(UNCAPPED, multifd(2, 'zlib'))), dst: { qemu: multifd(2, 'zlib') },
    what: 'as dirty-256m-full-uncapped, with multifd 2 channels, multifd-compression zlib (multifd-zlib-level 1, the default of both). '
      + 'Sent and throughput mean different things here: QEMU 7.2 counts multifd pages uncompressed in ram.transferred (pages x 4 KiB '
      + 'plus packet headers), tsvirt counts the compressed bytes it writes',
  },
];

/** Named groups for `--set`: `classic` is the set of the first published figures, `quick` takes a few seconds per run. */
const SETS: Record<string, string[]> = {
  all: SCENARIOS.map((s) => s.name),
  classic: ['idle-1g', 'idle-4g', 'dirty-256m-full', 'dirty-256m-full-uncapped', 'dirty-100mibps-125mbps'],
  features: ['dirty-256m-full-autoconverge', 'dirty-100mibps-125mbps-xbzrle', 'idle-4g-multifd-2', 'idle-4g-multifd-4',
    'dirty-256m-full-uncapped-multifd-2', 'dirty-256m-full-uncapped-multifd-2-zlib'],
  quick: ['idle-1g', 'idle-4g', 'dirty-256m-full-uncapped', 'idle-4g-multifd-2', 'dirty-256m-full-uncapped-multifd-2'],
};

const PLOT_PATH = process.env.BENCH_PLOT;
const PLOT_SCENARIO = process.env.BENCH_PLOT_SCENARIO ?? 'dirty-100mibps-125mbps';
/** query-migrate period: every 100 ms, every 20 ms for the plotted scenario (to catch each dirty sync early). */
const POLL_MS = 100;
const PLOT_POLL_MS = 20;

// ---------------------------------------------------------------------------------------------------------------
// Processes

const live = new Set<VmmProcess>();
const TSVIRT_LOG = process.env.BENCH_TSVIRT_LOG === '1';
const HB_MS = process.env.BENCH_HB_MS ? Number(process.env.BENCH_HB_MS) : undefined;
const guestCmdline = (s: Scenario) => (HB_MS ? `${s.append} hb_ms=${HB_MS}` : s.append);

/** Heartbeat with its host arrival time (performance.now()). */
interface Beat {
  seq: number;
  /** Guest time, ns. */
  t: number;
  sweeps?: number;
  at: number;
}

interface Vm {
  kind: VmmKind;
  proc: VmmProcess;
  qmp?: QmpClient;
  beats: Beat[];
  /** When the console's first line end arrived (for a heartbeat split across the two consoles at switch-over). */
  firstLineAt?: number;
}

function collectBeats(proc: VmmProcess, vm: { firstLineAt?: number }): Beat[] {
  const beats: Beat[] = [];
  let partial = '';
  proc.child.stdout!.on('data', (d: Buffer) => {
    const at = performance.now();
    if (vm.firstLineAt === undefined && d.includes(10)) vm.firstLineAt = at;
    partial += d.toString('latin1');
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // Anchored: the half of a line split across the two consoles at switch-over must not count as a beat.
      const m = line.match(/^HB seq=(\d+) t=(\d+)(?: sweeps=(\d+))?/);
      if (m) beats.push({ seq: Number(m[1]), t: Number(m[2]), sweeps: m[3] === undefined ? undefined : Number(m[3]), at });
    }
  });
  return beats;
}

let qemuBinary = '';

async function startVm(kind: VmmKind, dir: string, s: Scenario, incoming?: string): Promise<Vm> {
  const qmpPath = path.join(dir, `${kind}-${incoming ? 'dst' : 'src'}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const extra = incoming ? ['-incoming', incoming] : [];
  const proc = kind === 'tsvirt'
    ? VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', String(s.memMiB), '-smp', '1', '-append', guestCmdline(s),
      '-qmp', `unix:${qmpPath},server,nowait`, '-serial', 'stdio', ...extra], TSVIRT_LOG ? { TSVIRT_LOG: 'info' } : {})
    : new VmmProcess(qemuBinary, ['-machine', 'q35,accel=kvm', '-m', String(s.memMiB), '-smp', '1', '-nographic', '-nodefaults',
      '-serial', 'stdio', '-kernel', testGuest(), '-append', guestCmdline(s), '-qmp', `unix:${qmpPath},server,nowait`, ...extra]);
  live.add(proc);
  const vm: Vm = { kind, proc, beats: [] };
  vm.beats = collectBeats(proc, vm);
  try {
    vm.qmp = await QmpClient.connect(qmpPath, 20000);
    await vm.qmp.run('qmp_capabilities');
  } catch (e) {
    await stopVm(vm);
    throw e;
  }
  return vm;
}

/** Both sides' settings of a scenario as text, for the scenario list. */
function describeSettings(s: Scenario, kind: VmmKind): string {
  const one = (x?: Settings) => [...Object.entries(x?.caps ?? {}).map(([c, on]) => `${c}=${on ? 'on' : 'off'}`), ...Object.entries(x?.params ?? {}).map(([k, v]) => `${k}=${v}`)].join(' ');
  const src = one(s.src?.[kind]);
  const dst = s.dst?.[kind] ? `; destination${kind === 'qemu' ? ' (-incoming defer, then migrate-incoming)' : ''}: ${one(s.dst[kind])}` : '';
  return `${VMM_NAME[kind]}: ${src || 'defaults'}${dst}`;
}

async function stopVm(vm: Vm | undefined): Promise<void> {
  if (!vm) return;
  vm.qmp?.close();
  await vm.proc.kill();
  live.delete(vm.proc);
}

/** The run's socket directory, removed on every way out. */
let tmpDir: string | undefined;

function killEverything(): void {
  for (const p of live) if (p.running) p.child.kill('SIGKILL');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
}
cleanupOnExit(killEverything);

// ---------------------------------------------------------------------------------------------------------------
// Guest and host measurements

async function vcpuThreads(vm: Vm): Promise<Set<string>> {
  try {
    const cpus = (await vm.qmp!.run('query-cpus-fast')) as { 'thread-id': number }[];
    return new Set(cpus.map((c) => String(c['thread-id'])));
  } catch {
    return new Set();
  }
}

/** MiB/s the dirtier wrote between two beats carrying sweeps (whole sweeps only, so short windows are coarse). */
function dirtyRate(beats: Beat[], mib: number): { mibs: number; sweeps: number; ms: number } | undefined {
  const w = beats.filter((b) => b.sweeps !== undefined);
  if (w.length < 2) return undefined;
  const a = w[0];
  const b = w[w.length - 1];
  const dt = (b.t - a.t) / 1e9;
  return dt > 0 ? { mibs: ((b.sweeps! - a.sweeps!) * mib) / dt, sweeps: b.sweeps! - a.sweeps!, ms: dt * 1000 } : undefined;
}

/** Gaps between consecutive heartbeat arrivals, ms. */
function gaps(beats: Beat[]): number[] {
  return beats.slice(1).map((b, i) => b.at - beats[i].at);
}

/** Largest gap between consecutive arrivals; undefined with fewer than two beats (nothing to measure). */
/**
 * The highest transfer rate over any window of at least one second between two polls of pre-copy: how well
 * max-bandwidth holds "over any second" (MB/s, 10^6 bytes). Undefined when pre-copy lasted under a second.
 */
function maxSecondRate(samples: readonly [number, number][]): number | undefined {
  let best: number | undefined;
  let j = 0;
  for (let i = 0; i < samples.length; i++) {
    while (j < samples.length && samples[j][0] - samples[i][0] < 1000) j++;
    if (j === samples.length) break;
    const rate = (samples[j][1] - samples[i][1]) / ((samples[j][0] - samples[i][0]) / 1000) / 1e6;
    best = Math.max(best ?? 0, rate);
  }
  return best;
}

function largestGap(beats: Beat[]): number | undefined {
  const g = gaps(beats);
  return g.length ? Math.max(...g) : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// One migration

type Outcome = 'completed' | 'did not converge' | 'failed' | 'error';

/** The first query-migrate reply (while `active`) that showed a given `dirty-sync-count`. */
interface SyncSeen {
  sync: number;
  /** ram.remaining in that reply. */
  remaining: number;
  /** ms since `migrate`. */
  atMs: number;
  /** ram.transferred grew by this much since the previous reply: QEMU's remaining shrinks as it sends, so its value at the sync was at most this much larger. */
  sentSincePrev: number;
}

interface RunResult {
  kind: VmmKind;
  outcome: Outcome;
  totalMs?: number;
  downtimeMs?: number;
  /** Largest gap between consecutive heartbeat arrivals across both consoles, from migrate to the destination's beats. */
  guestGapMs?: number;
  /** Last source beat to first destination beat. */
  switchGapMs?: number;
  /** Largest gap between source beats while pre-copy ran (throttling stalls show here). */
  precopyGapMs?: number;
  /** The beat being printed at switch-over was split between the consoles (counted once, at its tail's arrival). */
  splitBeat?: string;
  throughputMiBs?: number;
  transferredMiB?: number;
  passes?: number;
  /** Every gap between consecutive source beats while pre-copy ran. */
  precopyGaps?: number[];
  /** Largest `cpu-throttle-percentage` seen while polling (only reported with auto-converge). */
  maxThrottlePct?: number;
  /** Highest rate over any window of at least 1 s of pre-copy, from ram.transferred at each poll (MB/s, 10^6). */
  maxSecondMBs?: number;
  /** (ms since migrate, ram.transferred) at each active poll. */
  samples: [number, number][];
  syncs: SyncSeen[];
  srcCpu?: { pct: number; vcpu: number; top: string };
  dstCpu?: { pct: number; vcpu: number; top: string };
  /** Guest dirtier rate before the migration (about 1 s) and while pre-copy ran. */
  dirtyBefore?: { mibs: number; sweeps: number; ms: number };
  dirtyDuring?: { mibs: number; sweeps: number; ms: number };
  /** tsvirt's own per-pass log lines (BENCH_TSVIRT_LOG=1). */
  log?: string[];
  check?: string;
  info?: any;
  error?: string;
}

async function migrateOnce(kind: VmmKind, s: Scenario, dir: string): Promise<RunResult> {
  let src: Vm | undefined;
  let dst: Vm | undefined;
  const result: RunResult = { kind, outcome: 'error', syncs: [], samples: [] };
  const capMs = Math.max(CAP_MS, (s.capS ?? 0) * 1000);
  const pollMs = PLOT_PATH && s.name === PLOT_SCENARIO ? PLOT_POLL_MS : POLL_MS;
  try {
    const uri = `tcp:127.0.0.1:${await freePort()}`;
    // Destination first, so it listens before the source is told to connect. QEMU with multifd must be configured
    // before it listens: -incoming defer, settings, then migrate-incoming.
    const dstSettings = s.dst?.[kind];
    const defer = kind === 'qemu' && dstSettings !== undefined;
    dst = await startVm(kind, dir, s, defer ? 'defer' : uri);
    await applyMigrationSettings(dst.qmp!, dstSettings);
    if (defer) await dst.qmp!.run('migrate-incoming', { uri });
    src = await startVm(kind, dir, s);
    await src.proc.waitFor(/READY/, 30000);
    if (s.dirty) {
      await src.proc.waitFor(/DIRTY mib=\d+/, 30000);
      // About a second of dirtying, so the rate before migration is known to within a sweep or so.
      for (let i = 0; i < 10; i++) await src.proc.waitFor(/HB seq=\d+ t=\d+ sweeps=\d+/, 10000);
    } else {
      await src.proc.waitFor(/HB seq=3 /, 10000);
    }
    await applyMigrationSettings(src.qmp!, s.src?.[kind]);

    const srcPid = src.proc.child.pid;
    const dstPid = dst.proc.child.pid;
    const srcVcpus = await vcpuThreads(src);
    const dstVcpus = await vcpuThreads(dst);
    const dirtyMib = Number(s.append.match(/dirty_mib=(\d+)/)?.[1] ?? 0);
    if (dirtyMib) result.dirtyBefore = dirtyRate(src.beats, dirtyMib);
    const stderrBefore = src.proc.stderr.length;
    const cpuSrc0 = cpuSnap(srcPid);
    const cpuDst0 = cpuSnap(dstPid);
    const beatsBefore = src.beats.length;
    const cpuSrc = new Map(cpuSrc0);
    const cpuDst = new Map(cpuDst0);
    const t0 = performance.now();
    await src.qmp!.run('migrate', { uri });
    let info: any;
    let lastTransferred = 0;
    for (;;) {
      cpuMerge(cpuSrc, srcPid);
      cpuMerge(cpuDst, dstPid);
      info = await src.qmp!.run('query-migrate');
      const atMs = performance.now() - t0;
      const throttle = info['cpu-throttle-percentage'];
      if (typeof throttle === 'number') result.maxThrottlePct = Math.max(result.maxThrottlePct ?? 0, throttle);
      const ram = info.ram;
      if (ram && info.status === 'active') result.samples.push([atMs, ram.transferred]);
      if (ram && info.status === 'active') {
        const sync = ram['dirty-sync-count'];
        if (result.syncs[result.syncs.length - 1]?.sync !== sync) result.syncs.push({ sync, remaining: ram.remaining, atMs, sentSincePrev: ram.transferred - lastTransferred });
        lastTransferred = ram.transferred;
      }
      if (['completed', 'failed', 'cancelled'].includes(info.status)) break;
      if (atMs > capMs) break;
      await sleep(pollMs);
    }
    cpuMerge(cpuSrc, srcPid);
    cpuMerge(cpuDst, dstPid);
    const wallMs = performance.now() - t0;
    result.maxSecondMBs = maxSecondRate(result.samples);
    if (wallMs >= 100) {
      result.srcCpu = cpuDelta(cpuSrc0, cpuSrc, srcPid, srcVcpus, wallMs);
      result.dstCpu = cpuDelta(cpuDst0, cpuDst, dstPid, dstVcpus, wallMs);
    }
    if (dirtyMib) result.dirtyDuring = dirtyRate(src.beats.slice(Math.max(0, beatsBefore - 1)), dirtyMib);
    if (TSVIRT_LOG && kind === 'tsvirt') result.log = src.proc.stderr.slice(stderrBefore).split('\n').filter((l) => /pass \d|migration |multifd/.test(l)).map((l) => l.replace(/^\S+ tsvirt info: /, ''));
    result.info = info;
    result.passes = info.ram?.['dirty-sync-count'];
    result.transferredMiB = info.ram ? info.ram.transferred / MiB : undefined;

    if (info.status !== 'completed') {
      if (info.status !== 'active') {
        result.outcome = 'failed';
        result.error = info.status === 'failed' ? info['error-desc'] ?? 'failed' : `status '${info.status}' after ${capMs / 1000} s`;
      } else {
        result.outcome = 'did not converge';
        result.throughputMiBs = info.ram ? info.ram.transferred / MiB / (wallMs / 1000) : undefined;
        // Cancel so the source is left as a real operator would leave it; everything is killed right after anyway.
        await src.qmp!.execute('migrate_cancel');
      }
      // Pre-copy stalls still show on the source's console.
      result.precopyGaps = gaps(src.beats.slice(Math.max(0, beatsBefore - 1)));
      result.precopyGapMs = largestGap(src.beats.slice(Math.max(0, beatsBefore - 1)));
      return result;
    }

    result.outcome = 'completed';
    result.totalMs = info['total-time'];
    result.downtimeMs = info.downtime;
    result.throughputMiBs = info.ram.transferred / MiB / (info['total-time'] / 1000);

    // The guest's view: heartbeats from the last one before `migrate` on the source, through the switch-over, to the
    // destination's second beat.
    const srcBeats = src.beats.slice(Math.max(0, beatsBefore - 1));
    const lastSrc = srcBeats[srcBeats.length - 1];
    const deadline = performance.now() + 15000;
    while (dst.beats.length < 2 && performance.now() < deadline) await sleep(20);
    if (dst.beats.length === 0) {
      // query-migrate said completed, but the guest does not run on the destination.
      result.outcome = 'failed';
      result.error = `destination printed no heartbeat within 15 s of completion; console tail: ${JSON.stringify(dst.proc.output.slice(-300))}`;
      return result;
    }
    // A line being printed at the pause is split between the consoles: it is one heartbeat line across the two, and
    // it arrived when its tail (and line end) reached the destination's console.
    const srcTail = src.proc.output.slice(src.proc.output.lastIndexOf('\n') + 1);
    const dstHead = dst.proc.output.slice(0, Math.max(0, dst.proc.output.indexOf('\n')));
    const joined = (srcTail + dstHead).match(/^HB seq=(\d+) t=(\d+)/);
    const splitBeats: Beat[] = [];
    if (srcTail && joined && dst.firstLineAt !== undefined) {
      splitBeats.push({ seq: Number(joined[1]), t: Number(joined[2]), at: dst.firstLineAt });
      result.splitBeat = `${JSON.stringify(srcTail)} + ${JSON.stringify(dstHead)}`;
    }
    const merged = [...srcBeats, ...splitBeats, ...dst.beats.slice(0, 2)];
    result.guestGapMs = largestGap(merged);
    result.switchGapMs = (splitBeats[0] ?? dst.beats[0]).at - (lastSrc?.at ?? t0);
    result.precopyGapMs = largestGap(srcBeats);
    result.precopyGaps = gaps(srcBeats);
    if (lastSrc && dst.beats[0].seq <= lastSrc.seq) result.error = `destination's first beat seq=${dst.beats[0].seq} repeats the source's ${lastSrc.seq}`;

    if (s.dirty) {
      dst.proc.send('check\r');
      const m = await dst.proc.waitFor(/CHECK (OK|FAIL|ERROR)[^\n]*/, 30000).catch((e: Error) => [`CHECK timed out: ${e.message.slice(0, 120)}`]);
      result.check = m[0];
    }
    return result;
  } catch (e) {
    result.outcome = result.outcome === 'completed' ? 'completed' : 'error';
    result.error = (e as Error).message.slice(0, 600);
    return result;
  } finally {
    await stopVm(src);
    await stopVm(dst);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Per-pass series and chart

/** Dirty bytes a VMM had left to send when pass `pass` began. */

/**
 * Puts both VMMs on one pass numbering. QEMU syncs the dirty log before its first pass (everything is dirty then:
 * `dirty-sync-count` 1, `remaining` = all RAM) and before each later one, so its pass p starts at sync p; its last sync
 * is taken with the guest paused, shows only as the migration ends (remaining 0), and what that pass sent is its
 * `ram.downtime-bytes`. tsvirt's first pass sends every populated page without a sync (count 0, `remaining` 0), and
 * each later pass starts at the sync that ended the previous one: its pass p starts at sync p-1. At the switch-over
 * tsvirt counts one more sync but keeps `remaining` at what the deciding sync found, the set it sends paused.
 */
function passPoints(r: RunResult): PassPoint[] {
  const finalSync: number | undefined = r.outcome === 'completed' ? r.info?.ram?.['dirty-sync-count'] : undefined;
  const points: PassPoint[] = [];
  for (const s of r.syncs) {
    if (s.sync === 0 || (r.kind === 'qemu' && s.sync === finalSync)) continue;
    const pass = r.kind === 'tsvirt' && s.sync !== finalSync ? s.sync + 1 : s.sync;
    if (points.some((p) => p.pass === pass)) continue;
    points.push({ pass, mib: s.remaining / MiB, atMs: s.atMs, slackMiB: r.kind === 'qemu' ? s.sentSincePrev / MiB : 0, paused: pass === finalSync });
  }
  const downtimeBytes = r.info?.ram?.['downtime-bytes'];
  if (r.kind === 'qemu' && finalSync !== undefined && typeof downtimeBytes === 'number') {
    points.push({ pass: finalSync, mib: downtimeBytes / MiB, atMs: r.totalMs ?? 0, slackMiB: 0, paused: true });
  }
  return points;
}

const PASS_EXPLANATION = [
  'For each pass, the dirty memory the VMM had left to send when the pass began: query-migrate ram.remaining in the first',
  "reply (polled every 20 ms) after ram.dirty-sync-count changed. QEMU syncs before every pass, its first included (all",
  'RAM dirty), so its pass p starts at sync p; tsvirt sends pass 1 (every populated page) without a sync and starts pass p',
  "at its sync p-1. QEMU re-syncs before a pass is finished (once less than max-bandwidth x downtime-limit is left), so",
  "its values include what it had not sent yet; its remaining shrinks as it sends, so at the sync it was larger by up to",
  'the bytes it sent before the reply (the +, bursty under its rate limit). The last pass went with the guest paused',
  "(marked *): for tsvirt the set its deciding sync found (it keeps reporting it through the switch-over), for QEMU its",
  "ram.downtime-bytes (its deciding sync is followed at once by the pause and is rarely seen). Missing passes were too short",
  'to be seen. Pass 1 is not drawn in the chart.',
];

function printPassSeries(s: Scenario, runs: Map<VmmKind, RunResult[]>, kinds: VmmKind[]): void {
  console.log('');
  console.log(`per-pass series, ${s.name} (remaining MiB at the start of each pass, ms since migrate):`);
  for (const line of PASS_EXPLANATION) console.log(`  ${line}`);
  for (const k of kinds) {
    for (const [i, r] of runs.get(k)!.entries()) {
      const pts = passPoints(r);
      const text = pts.map((p) => `${p.pass}${p.paused ? '*' : ''}: ${p.mib.toFixed(1)}${p.slackMiB >= 0.05 ? `(+${p.slackMiB.toFixed(1)})` : ''} @${p.atMs.toFixed(0)}`).join(', ');
      const tsvirtPass1 = k === 'tsvirt' ? '1: not reported (no sync before it), ' : '';
      console.log(`- ${VMM_NAME[k]} run ${i + 1} (${r.outcome}${r.totalMs !== undefined ? `, total ${r.totalMs} ms, ${r.passes} syncs` : ''}): ${tsvirtPass1}${text || 'no passes seen'}`);
    }
  }
}

function medianRun(rs: RunResult[]): { run: RunResult; index: number } | undefined {
  const done = rs.map((run, index) => ({ run, index })).filter((x) => x.run.outcome === 'completed');
  const pool = done.length ? done : rs.map((run, index) => ({ run, index }));
  if (!pool.length) return undefined;
  const sorted = [...pool].sort((a, b) => (a.run.totalMs ?? 0) - (b.run.totalMs ?? 0));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function writePassChart(file: string, s: Scenario, runs: Map<VmmKind, RunResult[]>, kinds: VmmKind[], when: string): void {
  const colors: Record<VmmKind, string> = { tsvirt: '#1f77b4', qemu: '#d62728' };
  const lines: ChartLine[] = [];
  for (const k of kinds) {
    const m = medianRun(runs.get(k)!);
    if (!m) continue;
    const r = m.run;
    const what = r.outcome === 'completed' ? `${r.passes} syncs, total ${r.totalMs} ms, downtime ${r.downtimeMs} ms` : r.outcome;
    lines.push({ label: `${VMM_NAME[k]}: ${what}`, color: colors[k], points: passPoints(r) });
  }
  const caption = [
    `${s.what}.`,
    'y: query-migrate ram.remaining in the first reply after ram.dirty-sync-count changed (polled every 20 ms). QEMU syncs before',
    'each pass, its first included (all RAM dirty): its pass p starts at sync p. tsvirt sends pass 1 without a sync and starts',
    'pass p at sync p-1. QEMU re-syncs before finishing a pass (once less than max-bandwidth x downtime-limit is left), so its',
    "values include what it had not sent yet. Paused pass: tsvirt's deciding set, QEMU's ram.downtime-bytes. One run per VMM",
    '(the median total time). Made by bench/migration.ts with BENCH_PLOT.',
  ];
  fs.writeFileSync(file, passChartSvg(`Dirty memory left at each pass: ${s.name}`, `tsvirt and QEMU 7.2, test guest, loopback tcp, ${when}`, lines, caption));
}

// ---------------------------------------------------------------------------------------------------------------
// Reporting

interface Summary {
  ok: string;
  total?: number;
  downtime?: number;
  gap?: number;
  precopyGap?: number;
  thr?: number;
  sent?: number;
  passes?: number;
  srcCpu?: number;
  dstCpu?: number;
  dirtyBefore?: number;
  srcVcpu?: number;
  maxThrottle?: number;
  maxSecond?: number;
}

function summarise(rs: RunResult[]): Summary {
  const done = rs.filter((r) => r.outcome === 'completed');
  const pick = (f: (r: RunResult) => number | undefined) => median(done.map(f).filter((x): x is number => x !== undefined));
  let ok = `${done.length}/${rs.length}`;
  const other = rs.filter((r) => r.outcome !== 'completed');
  if (other.length) ok += ` (${[...new Set(other.map((r) => r.outcome))].join(', ')})`;
  return {
    ok,
    total: pick((r) => r.totalMs),
    downtime: pick((r) => r.downtimeMs),
    gap: pick((r) => r.guestGapMs),
    // Stalls matter whether or not the migration finished in time: over every run that measured one.
    precopyGap: median(rs.map((r) => r.precopyGapMs)),
    thr: pick((r) => r.throughputMiBs),
    sent: pick((r) => r.transferredMiB),
    passes: pick((r) => r.passes),
    srcCpu: pick((r) => r.srcCpu?.pct),
    dstCpu: pick((r) => r.dstCpu?.pct),
    dirtyBefore: median(rs.filter((r) => (r.dirtyBefore?.sweeps ?? 0) >= 3).map((r) => r.dirtyBefore!.mibs)),
    srcVcpu: pick((r) => r.srcCpu?.vcpu),
    maxThrottle: median(rs.map((r) => r.maxThrottlePct)),
    maxSecond: median(rs.map((r) => r.maxSecondMBs)),
  };
}

function describeRun(r: RunResult): string {
  const parts = [`${VMM_NAME[r.kind]}: ${r.outcome}`];
  if (r.outcome === 'completed') {
    parts.push(`total ${fmt(r.totalMs)} ms, downtime ${fmt(r.downtimeMs)} ms, guest gap ${fmt(r.guestGapMs)} ms (switch ${fmt(r.switchGapMs)}${r.splitBeat ? `, beat split across consoles: ${r.splitBeat}` : ''}, pre-copy max ${fmt(r.precopyGapMs)}), ${fmt(r.throughputMiBs, 1)} MiB/s`);
  } else if (r.precopyGapMs !== undefined) {
    parts.push(`pre-copy max beat gap ${fmt(r.precopyGapMs)} ms`);
  }
  if (r.info?.ram) parts.push(`sent ${fmt(r.transferredMiB, 1)} MiB, dirty-sync-count ${r.passes}, mbps ${r.info.ram.mbps}`);
  if (r.info?.ram?.['multifd-bytes']) parts.push(`multifd-bytes ${fmt(r.info.ram['multifd-bytes'] / MiB, 1)} MiB`);
  if (r.precopyGaps?.length) {
    const over = (ms: number) => r.precopyGaps!.filter((g) => g > ms).length;
    parts.push(`pre-copy beat gaps: ${r.precopyGaps.length}, over 150 ms ${over(150)}, over 200 ms ${over(200)}, over 300 ms ${over(300)}`);
  }
  if (r.maxThrottlePct !== undefined) parts.push(`max cpu-throttle-percentage ${r.maxThrottlePct}`);
  if (r.maxSecondMBs !== undefined) parts.push(`highest rate over any 1 s of pre-copy ${fmt(r.maxSecondMBs, 1)} MB/s`);
  const x = r.info?.['xbzrle-cache'];
  if (x) parts.push(`xbzrle-cache pages ${x.pages}, bytes ${x.bytes} (${fmt(x.bytes / MiB, 1)} MiB), encoding-rate ${fmt(x['encoding-rate'], 2)}, cache-miss ${x['cache-miss']} (rate ${fmt(x['cache-miss-rate'], 3)}), overflow ${x.overflow}`);
  const sw = (d?: { sweeps: number; ms: number }) => (d ? `${d.sweeps} sweeps in ${fmt(d.ms)} ms guest time` : 'no beats');
  if (r.dirtyBefore) parts.push(`guest dirtier before: ${sw(r.dirtyBefore)}${r.dirtyBefore.sweeps >= 3 ? ` (${fmt(r.dirtyBefore.mibs)} MiB/s)` : ''}, during: ${sw(r.dirtyDuring)}`);
  if (r.srcCpu) parts.push(`src CPU ${fmt(r.srcCpu.pct)}% [${r.srcCpu.top}]`);
  if (r.dstCpu) parts.push(`dst CPU ${fmt(r.dstCpu.pct)}% [${r.dstCpu.top}]`);
  if (r.check) parts.push(r.check);
  if (r.error) parts.push(`ERROR: ${r.error}`);
  if (r.log?.length) parts.push(`tsvirt log:\n    ${r.log.join('\n    ')}`);
  return parts.join('; ');
}

/** Scenario names from the command line: names and `--set NAME` / `--set=NAME`; nothing = all. */
function selectScenarios(argv: string[]): Scenario[] {
  const wanted = new Set<string>();
  const bad: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const set = a === '--set' ? argv[++i] : a.startsWith('--set=') ? a.slice(6) : undefined;
    if (a === '--set' || set !== undefined) {
      if (set && SETS[set]) SETS[set].forEach((n) => wanted.add(n));
      else bad.push(`--set ${set ?? ''}`);
    } else if (SCENARIOS.some((s) => s.name === a)) {
      wanted.add(a);
    } else {
      bad.push(a);
    }
  }
  if (bad.length) {
    console.error(`unknown scenario(s) or set(s): ${bad.join(', ')}; scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}; sets: ${Object.keys(SETS).join(', ')}`);
    process.exit(2);
  }
  return wanted.size ? SCENARIOS.filter((s) => wanted.has(s.name)) : SCENARIOS;
}

async function main(): Promise<void> {
  const scenarios = selectScenarios(process.argv.slice(2));
  const plotted = PLOT_PATH ? scenarios.find((s) => s.name === PLOT_SCENARIO) : undefined;
  if (PLOT_PATH && !plotted) {
    console.error(`BENCH_PLOT: scenario ${PLOT_SCENARIO} (BENCH_PLOT_SCENARIO) is not in this run; name it on the command line`);
    process.exit(2);
  }
  qemuBinary = qemuBinaryPath();
  const kinds: VmmKind[] = qemuBinary ? ['tsvirt', 'qemu'] : ['tsvirt'];
  testGuest();
  const dir = (tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-bench-mig-')));
  const started = performance.now();
  const results = new Map<string, Map<VmmKind, RunResult[]>>();
  try {
    for (const s of scenarios) {
      const per = new Map<VmmKind, RunResult[]>(kinds.map((k) => [k, []]));
      results.set(s.name, per);
      for (let i = 0; i < RUNS; i++) {
        // Alternate which VMM goes first, so slow drift of the shared machine does not favour one.
        const order = i % 2 ? [...kinds].reverse() : kinds;
        for (const k of order) {
          const r = await migrateOnce(k, s, dir);
          per.get(k)!.push(r);
          process.stderr.write(`[${s.name} run ${i + 1}/${RUNS}] ${describeRun(r)}\n`);
        }
      }
    }
  } finally {
    killEverything();
  }

  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const caps = [...new Set(scenarios.filter((s) => s.capS && s.capS * 1000 > CAP_MS).map((s) => `${s.name} ${s.capS} s`))];
  console.log(`live migration, test guest, 1 vCPU, loopback tcp, ${RUNS} run(s) per VMM, medians of completed runs (${when}, ${os.cpus().length} host CPUs, cap ${CAP_MS / 1000} s per migration${caps.length ? ` (${caps.join(', ')})` : ''}${HB_MS ? `, guest hb_ms=${HB_MS}` : ''}):`);
  console.log('');
  console.log('| scenario | VMM | completed | total ms | downtime ms (reported) | guest gap ms | pre-copy gap ms | throughput MiB/s | sent MiB | passes | src CPU % (vCPU) | dst CPU % | guest dirty MiB/s | max throttle % | max 1 s MB/s |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of scenarios) {
    const per = results.get(s.name)!;
    const sums = new Map(kinds.map((k) => [k, summarise(per.get(k)!)]));
    for (const k of kinds) {
      const m = sums.get(k)!;
      const none = m.total === undefined;
      const cell = (x: number | undefined, d = 0) => (none ? (per.get(k)!.some((r) => r.outcome === 'did not converge') ? 'did not converge' : 'failed') : fmt(x, d));
      console.log(`| ${s.name} | ${VMM_NAME[k]} | ${m.ok} | ${cell(m.total)} | ${cell(m.downtime)} | ${cell(m.gap)} | ${fmt(m.precopyGap)} | ${cell(m.thr, 1)} | ${fmt(m.sent, 1)} | ${fmt(m.passes)} | ${fmt(m.srcCpu)} (${fmt(m.srcVcpu)}) | ${fmt(m.dstCpu)} | ${fmt(m.dirtyBefore)} | ${fmt(m.maxThrottle)} | ${fmt(m.maxSecond, 1)} |`);
    }
    if (kinds.length === 2) {
      const a = sums.get('tsvirt')!;
      const b = sums.get('qemu')!;
      console.log(`| ${s.name} | ratio tsvirt/QEMU | | ${ratio(a.total, b.total)} | ${ratio(a.downtime, b.downtime)} | ${ratio(a.gap, b.gap)} | ${ratio(a.precopyGap, b.precopyGap)} | ${ratio(a.thr, b.thr)} | ${ratio(a.sent, b.sent)} | | | | ${ratio(a.dirtyBefore, b.dirtyBefore)} | | ${ratio(a.maxSecond, b.maxSecond)} |`);
    }
  }
  console.log('');
  console.log('scenarios:');
  for (const s of scenarios) {
    const settings = s.src || s.dst ? ` [${kinds.map((k) => describeSettings(s, k)).join(' | ')}]` : '';
    console.log(`- ${s.name}: ${s.what}${settings}`);
  }
  console.log('columns: total = query-migrate total-time; downtime = query-migrate downtime; guest gap = largest gap between');
  console.log('consecutive heartbeat arrivals (100 ms apart normally) on the host across both consoles, from `migrate` to the');
  console.log("destination's second beat; pre-copy gap = the same on the source's console while pre-copy ran (throttling and other");
  console.log('stalls of the running guest; median over every run, completed or not); throughput = ram.transferred / total-time;');
  console.log('sent/passes = ram.transferred, dirty-sync-count; CPU = source/destination process CPU from schedstat over the migration');
  console.log("(all threads; in brackets the source's vCPU thread), 100 = one core; guest dirty = the dirtier's rate in the second");
  console.log('before `migrate` (whole sweeps, +-1 sweep); max throttle = the largest cpu-throttle-percentage seen (polled every');
  console.log('100 ms; reported only with auto-converge; median over every run); max 1 s = the highest rate over any window of at');
  console.log('at least 1 s between two polls of pre-copy (ram.transferred, MB = 10^6 bytes): whether max-bandwidth holds over any second.');
  if (plotted) {
    printPassSeries(plotted, results.get(plotted.name)!, kinds);
    writePassChart(PLOT_PATH!, plotted, results.get(plotted.name)!, kinds, when);
    console.log(`chart: ${PLOT_PATH} (one run per VMM, the median total time; this scenario was polled every ${PLOT_POLL_MS} ms instead of ${POLL_MS})`);
  }
  const notes: string[] = [];
  for (const s of scenarios) {
    for (const k of kinds) {
      for (const [i, r] of results.get(s.name)!.get(k)!.entries()) {
        if (r.outcome !== 'completed' || r.error || (r.check && !r.check.startsWith('CHECK OK'))) {
          const q = r.info ? ` query-migrate: ${JSON.stringify(r.info)}` : '';
          notes.push(`- ${s.name} ${VMM_NAME[k]} run ${i + 1}: ${r.outcome}${r.error ? ` (${r.error})` : ''}${r.check ? ` ${r.check}` : ''};${q}`);
        }
      }
    }
  }
  if (notes.length) {
    console.log('');
    console.log('runs that did not complete cleanly (last query-migrate before cancel/kill):');
    for (const n of notes) console.log(n);
  }
  console.log('');
  console.log(`bench time ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

main().catch((e) => {
  console.error(e);
  killEverything();
  process.exit(1);
});
