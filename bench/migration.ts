// Live migration benchmark: the test guest migrated by tsvirt and by QEMU 7.2 in the same run, same memory, same workload,
// loopback tcp; medians of total time, reported downtime, the guest's heartbeat gap and throughput, with tsvirt/QEMU ratios.
//
//   node dist/bench/migration.js [scenario...]     BENCH_RUNS=N (default 3), BENCH_QUICK=1 (one run), BENCH_CAP_S=S (default 30),
//   BENCH_TSVIRT_LOG=1 (run the tsvirt source with TSVIRT_LOG=info and print its per-pass lines),
//   BENCH_HB_MS=N (guest heartbeat period, default the guest's 100 ms: smaller resolves short guest-seen downtimes better)

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../tests/harness/migration.js';
import { testGuest } from '../tests/harness/guest.js';
import { QmpClient } from '../tests/harness/qmp-client.js';
import { VmmProcess } from '../tests/harness/tsvirt-process.js';
import { cpuDelta, cpuMerge, cpuSnap, fmt, median, ratio, type CpuSnap } from './common.js';

const RUNS = process.env.BENCH_QUICK === '1' ? 1 : Number(process.env.BENCH_RUNS ?? 3);
/** How long one migration may take before it counts as "did not converge" and is cancelled. */
const CAP_MS = Number(process.env.BENCH_CAP_S ?? 30) * 1000;
const POLL_MS = 100;
const MiB = 1024 * 1024;

type VmmKind = 'tsvirt' | 'qemu';
const VMM_NAME: Record<VmmKind, string> = { tsvirt: 'tsvirt', qemu: 'QEMU 7.2' };

interface Scenario {
  name: string;
  memMiB: number;
  /** Guest command line (dirtier settings). */
  append: string;
  /** migrate-set-parameters for both VMMs, or per VMM; absent = that VMM's defaults. */
  params?: Partial<Record<VmmKind, Record<string, number>>>;
  dirty: boolean;
  what: string;
}

const UNCAPPED = { 'max-bandwidth': 10737418240 };
const LIMITED = { 'max-bandwidth': 125000000, 'downtime-limit': 300 };

const SCENARIOS: Scenario[] = [
  { name: 'idle-1g', memMiB: 1024, append: 'console=ttyS0', dirty: false, what: 'idle guest (heartbeats only), 1 GiB, defaults' },
  { name: 'idle-4g', memMiB: 4096, append: 'console=ttyS0', dirty: false, what: 'idle guest, 4 GiB, defaults' },
  {
    name: 'dirty-256m-full', memMiB: 1024, append: 'console=ttyS0 dirty_mib=256 dirty_rate=0', dirty: true,
    what: '1 GiB, 256 MiB written flat out; each VMM with its DEFAULT parameters (tsvirt: unlimited bandwidth; QEMU: 128 MiB/s)',
  },
  {
    name: 'dirty-256m-full-uncapped', memMiB: 1024, append: 'console=ttyS0 dirty_mib=256 dirty_rate=0', dirty: true,
    params: { tsvirt: UNCAPPED, qemu: UNCAPPED },
    what: 'same workload, max-bandwidth 10737418240 on both (tsvirt\'s default is already unlimited)',
  },
  {
    name: 'dirty-100mibps-125mbps', memMiB: 1024, append: 'console=ttyS0 dirty_mib=256 dirty_rate=100', dirty: true,
    params: { tsvirt: LIMITED, qemu: LIMITED },
    what: '1 GiB, 256 MiB written at 100 MiB/s; max-bandwidth 125000000 B/s, downtime-limit 300 ms on both',
  },
];

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
  vm.qmp = await QmpClient.connect(qmpPath, 20000);
  await vm.qmp.run('qmp_capabilities');
  return vm;
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
process.on('exit', killEverything);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killEverything();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// CPU accounting from /proc/PID/task/TID/schedstat (ns on CPU per thread), so sub-second migrations are measured too.




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

// ---------------------------------------------------------------------------------------------------------------
// One migration

type Outcome = 'completed' | 'did not converge' | 'failed' | 'error';

interface RunResult {
  kind: VmmKind;
  outcome: Outcome;
  totalMs?: number;
  downtimeMs?: number;
  /** Largest gap between consecutive heartbeat arrivals across both consoles, from migrate to the destination's beats. */
  guestGapMs?: number;
  /** Last source beat to first destination beat. */
  switchGapMs?: number;
  /** Largest gap between source beats while pre-copy ran. */
  precopyGapMs?: number;
  /** The beat being printed at switch-over was split between the consoles (counted once, at its tail's arrival). */
  splitBeat?: string;
  throughputMiBs?: number;
  transferredMiB?: number;
  passes?: number;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function largestGap(beats: Beat[]): number {
  let g = 0;
  for (let i = 1; i < beats.length; i++) g = Math.max(g, beats[i].at - beats[i - 1].at);
  return g;
}

async function migrateOnce(kind: VmmKind, s: Scenario, dir: string): Promise<RunResult> {
  let src: Vm | undefined;
  let dst: Vm | undefined;
  const result: RunResult = { kind, outcome: 'error' };
  try {
    const uri = `tcp:127.0.0.1:${await freePort()}`;
    // Destination first, so it listens before the source is told to connect.
    dst = await startVm(kind, dir, s, uri);
    src = await startVm(kind, dir, s);
    await src.proc.waitFor(/READY/, 30000);
    if (s.dirty) {
      await src.proc.waitFor(/DIRTY mib=\d+/, 30000);
      // About a second of dirtying, so the rate before migration is known to within a sweep or so.
      for (let i = 0; i < 10; i++) await src.proc.waitFor(/HB seq=\d+ t=\d+ sweeps=\d+/, 10000);
    } else {
      await src.proc.waitFor(/HB seq=3 /, 10000);
    }
    const params = s.params?.[kind];
    if (params) await src.qmp!.run('migrate-set-parameters', params);

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
    for (;;) {
      cpuMerge(cpuSrc, srcPid);
      cpuMerge(cpuDst, dstPid);
      info = await src.qmp!.run('query-migrate');
      if (['completed', 'failed', 'cancelled'].includes(info.status)) break;
      if (performance.now() - t0 > CAP_MS) break;
      await sleep(POLL_MS);
    }
    cpuMerge(cpuSrc, srcPid);
    cpuMerge(cpuDst, dstPid);
    const wallMs = performance.now() - t0;
    if (wallMs >= 100) {
      result.srcCpu = cpuDelta(cpuSrc0, cpuSrc, srcPid, srcVcpus, wallMs);
      result.dstCpu = cpuDelta(cpuDst0, cpuDst, dstPid, dstVcpus, wallMs);
    }
    if (dirtyMib) result.dirtyDuring = dirtyRate(src.beats.slice(Math.max(0, beatsBefore - 1)), dirtyMib);
    if (TSVIRT_LOG && kind === 'tsvirt') result.log = src.proc.stderr.slice(stderrBefore).split('\n').filter((l) => /pass \d|migration /.test(l)).map((l) => l.replace(/^\S+ tsvirt info: /, ''));
    result.info = info;
    result.passes = info.ram?.['dirty-sync-count'];
    result.transferredMiB = info.ram ? info.ram.transferred / MiB : undefined;

    if (info.status !== 'completed') {
      if (info.status !== 'active') {
        result.outcome = 'failed';
        result.error = info.status === 'failed' ? info['error-desc'] ?? 'failed' : `status '${info.status}' after ${CAP_MS / 1000} s`;
      } else {
        result.outcome = 'did not converge';
        result.throughputMiBs = info.ram ? info.ram.transferred / MiB / (wallMs / 1000) : undefined;
        // Cancel so the source is left as a real operator would leave it; everything is killed right after anyway.
        await src.qmp!.execute('migrate_cancel');
      }
      // Pre-copy stalls still show on the source's console.
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
// Reporting




interface Summary {
  ok: string;
  total?: number;
  downtime?: number;
  gap?: number;
  thr?: number;
  sent?: number;
  passes?: number;
  srcCpu?: number;
  dstCpu?: number;
  dirtyBefore?: number;
  srcVcpu?: number;
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
    thr: pick((r) => r.throughputMiBs),
    sent: pick((r) => r.transferredMiB),
    passes: pick((r) => r.passes),
    srcCpu: pick((r) => r.srcCpu?.pct),
    dstCpu: pick((r) => r.dstCpu?.pct),
    dirtyBefore: median(rs.filter((r) => (r.dirtyBefore?.sweeps ?? 0) >= 3).map((r) => r.dirtyBefore!.mibs)),
    srcVcpu: pick((r) => r.srcCpu?.vcpu),
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
  const sw = (d?: { sweeps: number; ms: number }) => (d ? `${d.sweeps} sweeps in ${fmt(d.ms)} ms guest time` : 'no beats');
  if (r.dirtyBefore) parts.push(`guest dirtier before: ${sw(r.dirtyBefore)}${r.dirtyBefore.sweeps >= 3 ? ` (${fmt(r.dirtyBefore.mibs)} MiB/s)` : ''}, during: ${sw(r.dirtyDuring)}`);
  if (r.srcCpu) parts.push(`src CPU ${fmt(r.srcCpu.pct)}% [${r.srcCpu.top}]`);
  if (r.dstCpu) parts.push(`dst CPU ${fmt(r.dstCpu.pct)}% [${r.dstCpu.top}]`);
  if (r.check) parts.push(r.check);
  if (r.error) parts.push(`ERROR: ${r.error}`);
  if (r.log?.length) parts.push(`tsvirt log:\n    ${r.log.join('\n    ')}`);
  return parts.join('; ');
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.name === w));
  if (unknown.length) {
    console.error(`unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
    process.exit(2);
  }
  const scenarios = wanted.length ? SCENARIOS.filter((s) => wanted.includes(s.name)) : SCENARIOS;
  qemuBinary = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64 || true'], { encoding: 'utf8' }).trim();
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
  console.log(`live migration, test guest, 1 vCPU, loopback tcp, ${RUNS} run(s) per VMM, medians of completed runs (${when}, ${os.cpus().length} host CPUs, cap ${CAP_MS / 1000} s per migration${HB_MS ? `, guest hb_ms=${HB_MS}` : ''}):`);
  console.log('');
  console.log('| scenario | VMM | completed | total ms | downtime ms (reported) | guest gap ms | throughput MiB/s | sent MiB | passes | src CPU % (vCPU) | dst CPU % | guest dirty MiB/s |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of scenarios) {
    const per = results.get(s.name)!;
    const sums = new Map(kinds.map((k) => [k, summarise(per.get(k)!)]));
    for (const k of kinds) {
      const m = sums.get(k)!;
      const none = m.total === undefined;
      const cell = (x: number | undefined, d = 0) => (none ? (per.get(k)!.some((r) => r.outcome === 'did not converge') ? 'did not converge' : 'failed') : fmt(x, d));
      console.log(`| ${s.name} | ${VMM_NAME[k]} | ${m.ok} | ${cell(m.total)} | ${cell(m.downtime)} | ${cell(m.gap)} | ${cell(m.thr, 1)} | ${fmt(m.sent, 1)} | ${fmt(m.passes)} | ${fmt(m.srcCpu)} (${fmt(m.srcVcpu)}) | ${fmt(m.dstCpu)} | ${fmt(m.dirtyBefore)} |`);
    }
    if (kinds.length === 2) {
      const a = sums.get('tsvirt')!;
      const b = sums.get('qemu')!;
      console.log(`| ${s.name} | ratio tsvirt/QEMU | | ${ratio(a.total, b.total)} | ${ratio(a.downtime, b.downtime)} | ${ratio(a.gap, b.gap)} | ${ratio(a.thr, b.thr)} | ${ratio(a.sent, b.sent)} | | | | ${ratio(a.dirtyBefore, b.dirtyBefore)} |`);
    }
  }
  console.log('');
  console.log('scenarios:');
  for (const s of scenarios) console.log(`- ${s.name}: ${s.what}`);
  console.log('columns: total = query-migrate total-time; downtime = query-migrate downtime; guest gap = largest gap between');
  console.log('consecutive heartbeat arrivals (100 ms apart normally) on the host across both consoles, from `migrate` to the');
  console.log("destination's second beat; throughput = ram.transferred / total-time; sent/passes = ram.transferred, dirty-sync-count;");
  console.log('CPU = source/destination process CPU from schedstat over the migration (all threads; in brackets the source\'s vCPU');
  console.log('thread), 100 = one core; guest dirty = the dirtier\'s rate in the second before `migrate` (whole sweeps, +-1 sweep).');
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
