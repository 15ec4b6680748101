// Local migration and snapshot benchmark: tsvirt's local migration (x-ignore-shared over unix:, the memfds handed over,
// no RAM copied) against tsvirt's and QEMU 7.2's ordinary migration over unix: (and QEMU's own x-ignore-shared over a
// shared /dev/shm file), on the test guest, 1 and 8 GiB; then tsvirt snapshots of a 1 GiB guest (save, file size,
// restore). Medians of total time, downtime and the guest-seen heartbeat gap, with ratios.
//
//   node dist/bench/local.js     BENCH_RUNS=N (default 3), BENCH_HB_MS=N (guest heartbeat period, default 10 ms so a
//   switch-over of a few ms shows), BENCH_CAP_S=S (default 30 s per migration), BENCH_QEMU_LOCAL=0 (skip QEMU's
//   x-ignore-shared), BENCH_PHASES=0 (skip the strace phase timelines), BENCH_ONLY=migration|snapshot

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../tests/harness/guest.js';
import { tsvirtMain } from '../tests/harness/paths.js';
import { QmpClient } from '../tests/harness/qmp-client.js';
import { VmmProcess } from '../tests/harness/tsvirt-process.js';
import { cleanupOnExit, fmt, median, ratio } from './common.js';

const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const HB_MS = Number(process.env.BENCH_HB_MS ?? 10);
const CAP_MS = Number(process.env.BENCH_CAP_S ?? 30) * 1000;
const QEMU_LOCAL = process.env.BENCH_QEMU_LOCAL !== '0';
const PHASES = process.env.BENCH_PHASES !== '0';
const ONLY = process.env.BENCH_ONLY;
const POLL_MS = 20;
const MiB = 1024 * 1024;
/** QEMU 7.2 defaults to 128 MiB/s; lifted for every QEMU migration here (tsvirt's default is already unlimited). */
const QEMU_MAX_BANDWIDTH = 10737418240;
/** Destination beats looked at after the switch-over (a window of about 20 periods). */
const DST_BEATS = 20;

type Method = 'tsvirt-local' | 'tsvirt' | 'qemu' | 'qemu-local';
const METHOD_NAME: Record<Method, string> = {
  'tsvirt-local': 'tsvirt local (x-ignore-shared, memfds handed over)',
  tsvirt: 'tsvirt ordinary',
  qemu: 'QEMU 7.2 ordinary',
  'qemu-local': 'QEMU 7.2 x-ignore-shared (shared /dev/shm file)',
};

interface Scenario {
  name: string;
  memMiB: number;
  dirty: boolean;
}

const MIGRATIONS: Scenario[] = [
  { name: 'idle-1g', memMiB: 1024, dirty: false },
  { name: 'idle-8g', memMiB: 8192, dirty: false },
  { name: 'dirty-1g', memMiB: 1024, dirty: true },
];
const SNAPSHOTS: Scenario[] = [
  { name: 'snap-idle-1g', memMiB: 1024, dirty: false },
  { name: 'snap-dirty-1g', memMiB: 1024, dirty: true },
];

const appendFor = (s: Scenario, hbMs = HB_MS) => `console=ttyS0 hb_ms=${hbMs}${s.dirty ? ' dirty_mib=256 dirty_rate=0' : ''}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------------
// Processes and cleanup

let qemuBinary = '';
let straceBinary = '';
let tmpDir = '';
const live = new Set<VmmProcess>();
const shmFiles = new Set<string>();

/** Every descendant of `pid` (a killed strace leaves its tracee running, detached: it must be killed by its own pid). */
function descendants(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  const out: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
        out.push(Number(c), ...descendants(Number(c)));
      }
    }
  } catch {
    // Gone meanwhile.
  }
  return out;
}

/** SIGKILLs `proc` and, first, its descendants. */
function killProc(proc: VmmProcess): void {
  if (!proc.running) return;
  for (const pid of descendants(proc.child.pid).reverse()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  proc.child.kill('SIGKILL');
}

function killEverything(): void {
  for (const p of live) killProc(p);
  for (const f of shmFiles) fs.rmSync(f, { force: true });
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
}
cleanupOnExit(killEverything);

/** Heartbeat with its host arrival time (performance.now()). */
interface Beat {
  seq: number;
  sweeps?: number;
  at: number;
}

interface Vm {
  proc: VmmProcess;
  qmp: QmpClient;
  beats: Beat[];
  /** Arrival of the console's first byte and first line end. */
  firstByteAt?: number;
  firstLineAt?: number;
}

function watchConsole(proc: VmmProcess): Omit<Vm, 'qmp'> {
  const vm: Omit<Vm, 'qmp'> = { proc, beats: [] };
  let partial = '';
  proc.child.stdout!.on('data', (d: Buffer) => {
    const at = performance.now();
    vm.firstByteAt ??= at;
    if (vm.firstLineAt === undefined && d.includes(10)) vm.firstLineAt = at;
    partial += d.toString('latin1');
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // Anchored: half a line split across two consoles at the switch-over is not a beat.
      const m = line.match(/^HB seq=(\d+) t=\d+(?: sweeps=(\d+))?/);
      if (m) vm.beats.push({ seq: Number(m[1]), sweeps: m[2] === undefined ? undefined : Number(m[2]), at });
    }
  });
  return vm;
}

/** A QMP command that cannot hang the bench when the VMM dies. */
async function qmp(vm: Vm, command: string, args?: Record<string, unknown>, ms = 15000): Promise<any> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${command}: no reply within ${ms} ms (VMM ${vm.proc.running ? 'running' : 'exited'}; stderr: ${vm.proc.stderr.slice(-300)})`)), ms);
  });
  try {
    return await Promise.race([vm.qmp.run(command, args), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface StartOpts {
  memMiB: number;
  append: string;
  incoming?: string;
  /** qemu-local: the shared RAM file both QEMUs map. */
  shm?: string;
  /** Run under strace, writing its log here (syscalls in `straceSet`). */
  strace?: string;
  straceSet?: string;
}

async function startVm(kind: 'tsvirt' | 'qemu', o: StartOpts): Promise<Vm> {
  const qmpPath = path.join(tmpDir, `${kind}-${Math.random().toString(36).slice(2, 10)}.qmp`);
  const extra = o.incoming ? ['-incoming', o.incoming] : [];
  let proc: VmmProcess;
  if (kind === 'tsvirt') {
    const args = ['-machine', 'q35', '-kernel', testGuest(), '-m', String(o.memMiB), '-smp', '1', '-append', o.append,
      '-qmp', `unix:${qmpPath},server,nowait`, '-serial', 'stdio', ...extra];
    proc = o.strace
      ? new VmmProcess(straceBinary, ['-f', '--seccomp-bpf', '-ttt', '-e', `trace=${o.straceSet}`, '-o', o.strace, process.execPath, tsvirtMain, ...args])
      : VmmProcess.tsvirt(args);
  } else {
    const mem = o.shm
      ? ['-machine', 'q35,accel=kvm,memory-backend=ram0', '-object', `memory-backend-file,id=ram0,size=${o.memMiB}M,mem-path=${o.shm},share=on`]
      : ['-machine', 'q35,accel=kvm'];
    proc = new VmmProcess(qemuBinary, [...mem, '-m', String(o.memMiB), '-smp', '1', '-nographic', '-nodefaults', '-serial', 'stdio',
      '-kernel', testGuest(), '-append', o.append, '-qmp', `unix:${qmpPath},server,nowait`, ...extra]);
  }
  live.add(proc);
  const vm = watchConsole(proc) as Vm;
  try {
    vm.qmp = await QmpClient.connect(qmpPath, 30000);
  } catch (e) {
    throw new Error(`${kind} QMP did not come up: ${(e as Error).message}; stderr: ${proc.stderr.slice(-400)}`);
  }
  await qmp(vm, 'qmp_capabilities');
  return vm;
}

/** Starts a destination and a source at once; if either fails, the other is stopped too. */
async function startPair(dst: () => Promise<Vm>, src: () => Promise<Vm>): Promise<[Vm, Vm]> {
  const [d, s] = await Promise.allSettled([dst(), src()]);
  if (d.status === 'fulfilled' && s.status === 'fulfilled') return [d.value, s.value];
  if (d.status === 'fulfilled') await stopVm(d.value);
  if (s.status === 'fulfilled') await stopVm(s.value);
  throw (d.status === 'rejected' ? d.reason : (s as PromiseRejectedResult).reason) as Error;
}

async function stopVm(vm: Vm | undefined): Promise<void> {
  if (!vm) return;
  vm.qmp?.close();
  killProc(vm.proc);
  await vm.proc.exited;
  live.delete(vm.proc);
}

/** Waits until the guest runs its workload: a few beats when idle; when dirtying, the dirtier two sweeps in. */
async function waitWorkload(vm: Vm, s: Scenario): Promise<void> {
  await vm.proc.waitFor(/READY/, 60000);
  if (s.dirty) {
    await vm.proc.waitFor(/DIRTY mib=\d+/, 30000);
    const deadline = performance.now() + 15000;
    while (!vm.beats.some((b) => (b.sweeps ?? 0) >= 2)) {
      if (performance.now() > deadline) throw new Error('the dirtier did not complete 2 sweeps within 15 s');
      await sleep(20);
    }
  } else {
    const deadline = performance.now() + 15000;
    while (vm.beats.length < 5) {
      if (performance.now() > deadline) throw new Error('fewer than 5 heartbeats within 15 s of READY');
      await sleep(20);
    }
  }
}

async function pollMigration(vm: Vm, capMs = CAP_MS): Promise<any> {
  const t0 = performance.now();
  for (;;) {
    const info = await qmp(vm, 'query-migrate');
    if (['completed', 'failed', 'cancelled'].includes(info.status)) return info;
    if (performance.now() - t0 > capMs) return info;
    await sleep(POLL_MS);
  }
}

function largestGap(beats: Beat[]): number | undefined {
  if (beats.length < 2) return undefined;
  let g = 0;
  for (let i = 1; i < beats.length; i++) g = Math.max(g, beats[i].at - beats[i - 1].at);
  return g;
}

async function waitBeats(vm: Vm, n: number, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (vm.beats.length < n && performance.now() < deadline && vm.proc.running) await sleep(10);
}

async function runCheck(vm: Vm): Promise<string> {
  vm.proc.send('check\r');
  const m = await vm.proc.waitFor(/CHECK (OK|FAIL|ERROR)[^\n]*/, 60000).catch((e: Error) => [`CHECK timed out: ${e.message.slice(0, 120)}`]);
  return m[0];
}

// ---------------------------------------------------------------------------------------------------------------
// One migration

interface MigResult {
  method: Method;
  ok: boolean;
  totalMs?: number;
  downtimeMs?: number;
  gapMs?: number;
  sentMiB?: number;
  check?: string;
  error?: string;
  split?: string;
}

let counter = 0;

async function migrateOnce(method: Method, s: Scenario): Promise<MigResult> {
  const kind = method.startsWith('tsvirt') ? 'tsvirt' : 'qemu';
  const local = method.endsWith('local');
  const uri = `unix:${path.join(tmpDir, `mig-${++counter}.sock`)}`;
  const shm = method === 'qemu-local' ? `/dev/shm/tsvirt-bench-local-${process.pid}-${counter}` : undefined;
  if (shm) shmFiles.add(shm);
  const r: MigResult = { method, ok: false };
  let src: Vm | undefined;
  let dst: Vm | undefined;
  try {
    const append = appendFor(s);
    // Both at once; the destination listens before its QMP answers (QEMU and tsvirt both set -incoming up first).
    [dst, src] = await startPair(() => startVm(kind, { memMiB: s.memMiB, append, incoming: uri, shm }), () => startVm(kind, { memMiB: s.memMiB, append, shm }));
    await waitWorkload(src, s);
    if (local) {
      const caps = { capabilities: [{ capability: 'x-ignore-shared', state: true }] };
      await qmp(src, 'migrate-set-capabilities', caps);
      // QEMU's stream differs with the capability, so its destination needs it too; tsvirt's says so in its CONFIG.
      if (kind === 'qemu') await qmp(dst, 'migrate-set-capabilities', caps);
    }
    if (kind === 'qemu') await qmp(src, 'migrate-set-parameters', { 'max-bandwidth': QEMU_MAX_BANDWIDTH });
    const beatsBefore = src.beats.length;
    await qmp(src, 'migrate', { uri });
    const info = await pollMigration(src);
    if (info.status !== 'completed') {
      r.error = info.status === 'failed' ? `failed: ${info['error-desc'] ?? ''}` : `status '${info.status}' after ${CAP_MS / 1000} s`;
      if (info.status === 'active') await src.qmp.execute('migrate_cancel');
      return r;
    }
    r.totalMs = info['total-time'];
    r.downtimeMs = info.downtime;
    r.sentMiB = (info.ram?.transferred ?? 0) / MiB;
    await waitBeats(dst, DST_BEATS, 10000);
    if (dst.beats.length === 0) {
      r.error = `destination printed no heartbeat within 10 s; console: ${JSON.stringify(dst.proc.output.slice(-200))}`;
      return r;
    }
    // A beat being printed at the pause is split between the consoles: one beat, arriving with its tail.
    const srcBeats = src.beats.slice(Math.max(0, beatsBefore - 1));
    const srcTail = src.proc.output.slice(src.proc.output.lastIndexOf('\n') + 1);
    const dstHead = dst.proc.output.slice(0, Math.max(0, dst.proc.output.indexOf('\n')));
    const joined = (srcTail + dstHead).match(/^HB seq=(\d+) t=\d+/);
    const split: Beat[] = srcTail && joined && dst.firstLineAt !== undefined ? [{ seq: Number(joined[1]), at: dst.firstLineAt }] : [];
    if (split.length) r.split = `${JSON.stringify(srcTail)} + ${JSON.stringify(dstHead)}`;
    r.gapMs = largestGap([...srcBeats, ...split, ...dst.beats.slice(0, DST_BEATS)]);
    const lastSrc = srcBeats[srcBeats.length - 1];
    if (lastSrc && dst.beats[0].seq <= lastSrc.seq) r.error = `destination's first beat seq=${dst.beats[0].seq} repeats the source's ${lastSrc.seq}`;
    if (s.dirty) r.check = await runCheck(dst);
    r.ok = !r.error && (!r.check || r.check.startsWith('CHECK OK'));
    return r;
  } catch (e) {
    r.error = (e as Error).message.slice(0, 600);
    return r;
  } finally {
    await stopVm(src);
    await stopVm(dst);
    if (shm) {
      fs.rmSync(shm, { force: true });
      shmFiles.delete(shm);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One snapshot: save a running guest to a file, then restore it in a fresh process

interface SnapResult {
  ok: boolean;
  saveMs?: number;
  /** The source guest's largest heartbeat gap across the save (it is stopped while the file is written). */
  saveGapMs?: number;
  fileMiB?: number;
  normalPages?: number;
  zeroPages?: number;
  /** Process start to the restored guest's first console byte and first complete heartbeat line. */
  startToByteMs?: number;
  startToBeatMs?: number;
  /** SHA-256 of the whole file in this process (what the restore's digest check does first), ms. */
  hashMs?: number;
  /** query-migrate total-time on the restored VM: restore start to completed (running). */
  restoreMs?: number;
  /** Largest gap between the restored guest's first beats. */
  afterGapMs?: number;
  check?: string;
  error?: string;
}

async function saveSnapshot(s: Scenario, file: string, r: SnapResult): Promise<void> {
  let src: Vm | undefined;
  try {
    src = await startVm('tsvirt', { memMiB: s.memMiB, append: appendFor(s) });
    await waitWorkload(src, s);
    const beatsBefore = src.beats.length;
    await qmp(src, 'migrate', { uri: `file:${file}` });
    const info = await pollMigration(src);
    if (info.status !== 'completed') throw new Error(`save: ${info.status} ${info['error-desc'] ?? ''}`);
    r.saveMs = info['total-time'];
    r.normalPages = info.ram?.normal;
    r.zeroPages = info.ram?.duplicate;
    r.fileMiB = fs.statSync(file).size / MiB;
    await waitBeats(src, beatsBefore + 10, 5000);
    r.saveGapMs = largestGap(src.beats.slice(Math.max(0, beatsBefore - 1)));
  } finally {
    await stopVm(src);
  }
}

async function restoreSnapshot(s: Scenario, file: string, r: SnapResult): Promise<void> {
  let vm: Vm | undefined;
  const qmpPath = path.join(tmpDir, `restore-${++counter}.qmp`);
  try {
    // Spawned by hand: QMP comes up only after the restore, and the clock starts at the spawn.
    const proc = VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', String(s.memMiB), '-smp', '1', '-append', appendFor(s),
      '-qmp', `unix:${qmpPath},server,nowait`, '-serial', 'stdio', '-incoming', `file:${file}`]);
    live.add(proc);
    const watched = watchConsole(proc);
    const deadline = performance.now() + 30000;
    while (watched.beats.length === 0) {
      if (!proc.running || performance.now() > deadline) throw new Error(`restored guest printed no heartbeat; stderr: ${proc.stderr.slice(-300)}`);
      await sleep(1);
    }
    r.startToBeatMs = watched.beats[0].at - proc.startedAt;
    r.startToByteMs = watched.firstByteAt === undefined ? undefined : watched.firstByteAt - proc.startedAt;
    vm = { ...watched, qmp: await QmpClient.connect(qmpPath, 20000) } as Vm;
    // watchConsole's object keeps collecting into the same array.
    vm.beats = watched.beats;
    await qmp(vm, 'qmp_capabilities');
    const info = await qmp(vm, 'query-migrate');
    if (info.status !== 'completed') throw new Error(`restored VM's query-migrate says ${info.status}`);
    r.restoreMs = info['total-time'];
    const st = await qmp(vm, 'query-status');
    if (st.status !== 'running') throw new Error(`restored VM is ${st.status}`);
    await waitBeats(vm, DST_BEATS, 5000);
    r.afterGapMs = largestGap(vm.beats.slice(0, DST_BEATS));
    if (s.dirty) r.check = await runCheck(vm);
  } finally {
    await stopVm(vm);
  }
}

/** Times a SHA-256 of `file` read in 8 MiB chunks, as the restore's digest check does (the file is in the page cache). */
function hashFile(file: string): number {
  const t0 = performance.now();
  const fd = fs.openSync(file, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(8 * MiB);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
    hash.digest();
  } finally {
    fs.closeSync(fd);
  }
  return performance.now() - t0;
}

async function snapshotOnce(s: Scenario): Promise<SnapResult> {
  const r: SnapResult = { ok: false };
  const file = path.join(tmpDir, `vm-${++counter}.snap`);
  try {
    await saveSnapshot(s, file, r);
    r.hashMs = hashFile(file);
    await restoreSnapshot(s, file, r);
    r.ok = !r.check || r.check.startsWith('CHECK OK');
  } catch (e) {
    r.error = (e as Error).message.slice(0, 600);
  } finally {
    fs.rmSync(file, { force: true });
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// Phase timelines from outside: one extra run under strace (indicative: strace slows the traced syscalls)

interface StraceLine {
  pid: number;
  t: number;
  text: string;
}

function readStrace(file: string): StraceLine[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').flatMap((l) => {
    const m = l.match(/^(\d+)\s+(\d+\.\d+)\s+(.*)$/);
    return m ? [{ pid: Number(m[1]), t: Number(m[2]) * 1000, text: m[3] }] : [];
  });
}

const epochOf = (perfNow: number) => performance.timeOrigin + perfNow;
const fmtMs = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '?' : x.toFixed(1));

/** Marks in time order (unknown ones last), as ms after `t0` with the step from the previous mark. */
function timeline(marks: [string, number | undefined][], t0: number): string[] {
  const known = marks.filter((m): m is [string, number] => m[1] !== undefined).sort((a, b) => a[1] - b[1]);
  let prev = t0;
  const lines = known.map(([what, t]) => {
    const l = `  ${fmtMs(t - t0).padStart(7)}  (+${fmtMs(t - prev).padStart(6)})  ${what}`;
    prev = t;
    return l;
  });
  for (const [what, t] of marks) if (t === undefined && !what.startsWith('destination: no ')) lines.push(`        -  ${what}: not seen`);
  for (const [what, t] of marks) if (t === undefined && what.startsWith('destination: no ')) lines.push(`        -  ${what}`);
  return lines;
}

/** Restore under strace (openat only): where the time from process start to the first heartbeat goes. */
async function restorePhases(s: Scenario): Promise<string[]> {
  const out: string[] = [];
  const file = path.join(tmpDir, `phases-${++counter}.snap`);
  const trace = path.join(tmpDir, `restore-${counter}.strace`);
  const scratch: SnapResult = { ok: false };
  let vm: Vm | undefined;
  try {
    await saveSnapshot(s, file, scratch);
    const qmpPath = path.join(tmpDir, `phases-${counter}.qmp`);
    const args = ['-machine', 'q35', '-kernel', testGuest(), '-m', String(s.memMiB), '-smp', '1', '-append', appendFor(s),
      '-qmp', `unix:${qmpPath},server,nowait`, '-serial', 'stdio', '-incoming', `file:${file}`];
    const proc = new VmmProcess(straceBinary, ['-f', '--seccomp-bpf', '-ttt', '-e', 'trace=execve,openat', '-o', trace, process.execPath, tsvirtMain, ...args]);
    live.add(proc);
    const watched = watchConsole(proc);
    vm = { ...watched, qmp: await QmpClient.connect(qmpPath, 30000) } as Vm;
    await qmp(vm, 'qmp_capabilities');
    await waitBeats(vm, 1, 10000);
    const info = await qmp(vm, 'query-migrate');
    const firstByte = watched.firstByteAt;
    const firstBeat = watched.beats[0]?.at;
    await stopVm(vm);
    vm = undefined;
    const lines = readStrace(trace);
    const find = (re: RegExp) => lines.find((l) => re.test(l.text))?.t;
    const t0 = lines.find((l) => l.text.startsWith('execve('))?.t;
    if (t0 === undefined) return [`(no strace output for ${s.name})`];
    const marks: [string, number | undefined][] = [
      ['execve', t0],
      ['/dev/kvm opened (Node start-up and the core modules done; the VM build starts)', find(/openat\(.*"\/dev\/kvm"/)],
      ['migration-wiring.js opened (VM built, vCPUs parked; the migration modules load, and with them QMP\'s and ajv)', find(/migration-wiring\.js"/)],
      ['snapshot file opened (restore starts)', find(new RegExp(`openat\\(.*"${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`))],
      ['qmp-wiring.js opened (QMP start-up begins)', find(/qmp-wiring\.js"/)],
      ['first console byte at the host (the guest runs; every byte is an I/O exit served by the main thread)', firstByte === undefined ? undefined : epochOf(firstByte)],
      ['first complete heartbeat line at the host', firstBeat === undefined ? undefined : epochOf(firstBeat)],
    ];
    out.push(`${s.name} (file ${fmtMs(scratch.fileMiB)} MiB; this run's restore-to-running ${info['total-time']} ms), restore under strace -e trace=execve,openat, ms after execve:`);
    out.push(...timeline(marks, t0));
  } catch (e) {
    out.push(`${s.name}: phase run failed: ${(e as Error).message.slice(0, 300)}`);
  } finally {
    await stopVm(vm);
    fs.rmSync(file, { force: true });
  }
  return out;
}

/** tsvirt local migration with both processes under strace: where the downtime goes. */
async function localPhases(s: Scenario): Promise<string[]> {
  const out: string[] = [];
  const uri = `unix:${path.join(tmpDir, `phase-${++counter}.sock`)}`;
  const srcTrace = path.join(tmpDir, `src-${counter}.strace`);
  const dstTrace = path.join(tmpDir, `dst-${counter}.strace`);
  const set = 'sendmsg,recvmsg,ioctl';
  // 100 ms beats: fewer console exits (each a traced KVM_RUN return) than the measured runs' 10 ms.
  const append = appendFor(s, 100);
  let src: Vm | undefined;
  let dst: Vm | undefined;
  try {
    [dst, src] = await startPair(
      () => startVm('tsvirt', { memMiB: s.memMiB, append, incoming: uri, strace: dstTrace, straceSet: set }),
      () => startVm('tsvirt', { memMiB: s.memMiB, append, strace: srcTrace, straceSet: set }),
    );
    await waitWorkload(src, s);
    await qmp(src, 'migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    await qmp(src, 'migrate', { uri });
    const info = await pollMigration(src);
    await waitBeats(dst, 1, 5000);
    await stopVm(src);
    await stopVm(dst);
    src = dst = undefined;
    const S = readStrace(srcTrace);
    const D = readStrace(dstTrace);
    const sent = S.find((l) => l.text.startsWith('sendmsg(') && l.text.includes('SCM_RIGHTS'))?.t;
    if (sent === undefined) return [`${s.name}: no hand-over in the strace log (status ${info.status})`];
    const after = (xs: StraceLine[], re: RegExp, from: number) => xs.find((l) => l.t >= from && re.test(l.text))?.t;
    const lastBefore = (xs: StraceLine[], re: RegExp, until: number) => xs.filter((l) => l.t <= until && re.test(l.text)).pop()?.t;
    const paused = after(S, /KVM_KVMCLOCK_CTRL/, sent);
    const stateSent = after(S, /KVM_GET_CLOCK/, sent);
    const received = after(D, /SCM_RIGHTS/, sent - 50);
    const applied = after(D, /KVM_SET_CLOCK/, sent);
    const adoptStart = received === undefined ? undefined : after(D, /KVM_SET_USER_MEMORY_REGION/, received);
    const adopted = adoptStart === undefined ? undefined : lastBefore(D, /KVM_SET_USER_MEMORY_REGION/, applied ?? Infinity);
    const stateStart = after(D, /KVM_SET_REGS/, sent);
    const vcpuIds = new Set(D.filter((l) => /KVM_RUN/.test(l.text)).map((l) => l.pid));
    const resumed = applied === undefined ? undefined : D.find((l) => l.t >= applied && vcpuIds.has(l.pid) && /KVM_RUN/.test(l.text))?.t;
    out.push(`${s.name}: query-migrate total ${info['total-time']} ms, downtime ${info.downtime} ms (under strace); ms after the source's sendmsg of the memfds:`);
    const marks: [string, number | undefined][] = [
      ['source: memfds sent (sendmsg SCM_RIGHTS); the source pauses right away', sent],
      ['source: vCPUs paused (KVM_KVMCLOCK_CTRL)', paused],
      ['source: state read and sent (KVM_GET_CLOCK, the last piece)', stateSent],
      ['destination: memfds received (recvmsg)', received],
      [adoptStart === undefined ? 'destination: no KVM_SET_USER_MEMORY_REGION after the hand-over' : 'destination: first KVM_SET_USER_MEMORY_REGION of the adoption (the mmap and 1 GiB views come before it)', adoptStart],
      ...(adoptStart === undefined ? [] : [['destination: last KVM_SET_USER_MEMORY_REGION (memory adopted)', adopted] as [string, number | undefined]]),
      ['destination: state applied from (KVM_SET_REGS)', stateStart],
      ['destination: state applied to (KVM_SET_CLOCK)', applied],
      ['destination: vCPU in KVM_RUN (resumed)', resumed],
    ];
    out.push(...timeline(marks, sent));
  } catch (e) {
    out.push(`${s.name}: phase run failed: ${(e as Error).message.slice(0, 300)}`);
  } finally {
    await stopVm(src);
    await stopVm(dst);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Reporting




const runs = (xs: (number | undefined)[], d = 0) => xs.map((x) => fmt(x, d)).join('/');

async function main(): Promise<void> {
  qemuBinary = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64 || true'], { encoding: 'utf8' }).trim();
  straceBinary = execFileSync('sh', ['-c', 'command -v strace || true'], { encoding: 'utf8' }).trim();
  const methods: Method[] = ['tsvirt-local', 'tsvirt', ...(qemuBinary ? (['qemu'] as Method[]) : []), ...(qemuBinary && QEMU_LOCAL ? (['qemu-local'] as Method[]) : [])];
  testGuest();
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-bench-local-'));
  const started = performance.now();
  const mig = new Map<string, Map<Method, MigResult[]>>();
  const snaps = new Map<string, SnapResult[]>();
  const phases: string[] = [];
  try {
    if (ONLY !== 'snapshot') {
      for (const s of MIGRATIONS) {
        const per = new Map<Method, MigResult[]>(methods.map((m) => [m, []]));
        mig.set(s.name, per);
        for (let i = 0; i < RUNS; i++) {
          // Rotate the order so slow drift of the shared machine favours no method.
          const order = methods.map((_, k) => methods[(k + i) % methods.length]);
          for (const m of order) {
            const r = await migrateOnce(m, s);
            per.get(m)!.push(r);
            process.stderr.write(`[${s.name} run ${i + 1}/${RUNS}] ${METHOD_NAME[m]}: ${r.ok ? 'ok' : 'NOT OK'}; total ${fmt(r.totalMs)} ms, downtime ${fmt(r.downtimeMs)} ms, guest gap ${fmt(r.gapMs)} ms, sent ${fmt(r.sentMiB, 2)} MiB${r.check ? `; ${r.check}` : ''}${r.split ? `; split beat ${r.split}` : ''}${r.error ? `; ERROR ${r.error}` : ''}\n`);
          }
        }
      }
      if (PHASES && straceBinary) for (const s of MIGRATIONS.filter((x) => !x.dirty)) phases.push(...(await localPhases(s)));
    }
    if (ONLY !== 'migration') {
      for (const s of SNAPSHOTS) {
        const rs: SnapResult[] = [];
        snaps.set(s.name, rs);
        for (let i = 0; i < RUNS; i++) {
          const r = await snapshotOnce(s);
          rs.push(r);
          process.stderr.write(`[${s.name} run ${i + 1}/${RUNS}] ${r.ok ? 'ok' : 'NOT OK'}; save ${fmt(r.saveMs)} ms (source gap ${fmt(r.saveGapMs)} ms), file ${fmt(r.fileMiB, 2)} MiB (${r.normalPages} normal, ${r.zeroPages} zero pages), SHA-256 of it here ${fmt(r.hashMs)} ms, start to first byte ${fmt(r.startToByteMs)} ms, to first beat ${fmt(r.startToBeatMs)} ms, restore-to-running ${fmt(r.restoreMs)} ms, first beats' max gap ${fmt(r.afterGapMs)} ms${r.check ? `; ${r.check}` : ''}${r.error ? `; ERROR ${r.error}` : ''}\n`);
        }
      }
      if (PHASES && straceBinary) for (const s of SNAPSHOTS) phases.push(...(await restorePhases(s)));
    }
  } finally {
    killEverything();
  }

  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const out = (l = '') => console.log(l);
  if (mig.size) {
    out(`local and ordinary migration over unix:, test guest, 1 vCPU, guest hb_ms=${HB_MS}, ${RUNS} run(s) each, medians of clean runs (${when}, ${os.cpus().length} host CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB):`);
    out('');
    out('| scenario | method | clean runs | total ms | downtime ms (reported) | guest gap ms | sent MiB | runs: downtime / gap ms |');
    out('| --- | --- | --- | --- | --- | --- | --- | --- |');
    const med = new Map<string, Map<Method, { total?: number; down?: number; gap?: number; sent?: number }>>();
    for (const s of MIGRATIONS) {
      const per = mig.get(s.name)!;
      const m = new Map<Method, { total?: number; down?: number; gap?: number; sent?: number }>();
      med.set(s.name, m);
      for (const k of methods) {
        const rs = per.get(k)!;
        const ok = rs.filter((r) => r.ok);
        const x = { total: median(ok.map((r) => r.totalMs)), down: median(ok.map((r) => r.downtimeMs)), gap: median(ok.map((r) => r.gapMs)), sent: median(ok.map((r) => r.sentMiB)) };
        m.set(k, x);
        out(`| ${s.name} | ${METHOD_NAME[k]} | ${ok.length}/${rs.length} | ${fmt(x.total)} | ${fmt(x.down)} | ${fmt(x.gap)} | ${fmt(x.sent, 2)} | ${runs(rs.map((r) => r.downtimeMs))} / ${runs(rs.map((r) => r.gapMs))} |`);
      }
      const row = (label: string, a: Method, b: Method) => {
        if (!m.has(a) || !m.has(b)) return;
        const x = m.get(a)!;
        const y = m.get(b)!;
        out(`| ${s.name} | ratio ${label} | | ${ratio(x.total, y.total)} | ${ratio(x.down, y.down)} | ${ratio(x.gap, y.gap)} | | |`);
      };
      row('tsvirt local / QEMU ordinary', 'tsvirt-local', 'qemu');
      row('tsvirt ordinary / QEMU ordinary', 'tsvirt', 'qemu');
      row('tsvirt local / QEMU x-ignore-shared', 'tsvirt-local', 'qemu-local');
      row('tsvirt local / tsvirt ordinary', 'tsvirt-local', 'tsvirt');
    }
    out('');
    for (const k of methods) {
      const a = med.get('idle-1g')?.get(k);
      const b = med.get('idle-8g')?.get(k);
      if (a && b) out(`- ${METHOD_NAME[k]}: idle 8 GiB / 1 GiB: total ${ratio(b.total, a.total)}, downtime ${ratio(b.down, a.down)} (${fmt(b.down)} vs ${fmt(a.down)} ms), guest gap ${ratio(b.gap, a.gap)}`);
    }
    out('');
    out('Columns: total = query-migrate total-time; downtime = query-migrate downtime as each VMM reports it (tsvirt: pause to the');
    out("destination's RUNNING reply; QEMU: pause until the source has sent everything, so not the same quantity); guest gap =");
    out(`largest gap between consecutive heartbeat lines (every ${HB_MS} ms) arriving at the host, across both consoles, from the beat`);
    out(`before \`migrate\` to the destination's ${DST_BEATS}th beat, i.e. about ${HB_MS} ms plus the guest's stall; sent = ram.transferred.`);
    out(`QEMU runs with migrate-set-parameters max-bandwidth ${QEMU_MAX_BANDWIDTH} (its 128 MiB/s default lifted; tsvirt's default is`);
    out('unlimited). x-ignore-shared on QEMU needs shared RAM: both QEMUs map one /dev/shm file (memory-backend-file,share=on)');
    out("and the capability is set on both. dirty-1g: dirty_mib=256 dirty_rate=0, migrated two sweeps in, `check` on the destination.");
    const bad = MIGRATIONS.flatMap((s) => methods.flatMap((k) => mig.get(s.name)!.get(k)!.map((r, i) => ({ s, k, r, i })))).filter((x) => !x.r.ok);
    if (bad.length) {
      out('');
      out('runs that were not clean:');
      for (const { s, k, r, i } of bad) out(`- ${s.name} ${METHOD_NAME[k]} run ${i + 1}: ${r.error ?? ''} ${r.check ?? ''}`);
    }
  }
  if (snaps.size) {
    out('');
    out(`tsvirt snapshots (migrate file:PATH, restore with -incoming file:PATH), 1 GiB, guest hb_ms=${HB_MS}, ${RUNS} run(s), medians:`);
    out('');
    out('| scenario | clean runs | save ms | source gap during save ms | file MiB | restore: process start to first console byte ms | restore: process start to first heartbeat ms | restore-to-running ms (query-migrate) | SHA-256 of the file alone ms | runs: start-to-beat / restore ms |');
    out('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const s of SNAPSHOTS) {
      const rs = snaps.get(s.name)!;
      const ok = rs.filter((r) => r.ok);
      out(`| ${s.name} | ${ok.length}/${rs.length} | ${fmt(median(ok.map((r) => r.saveMs)))} | ${fmt(median(ok.map((r) => r.saveGapMs)))} | ${fmt(median(ok.map((r) => r.fileMiB)), 1)} | ${fmt(median(ok.map((r) => r.startToByteMs)))} | ${fmt(median(ok.map((r) => r.startToBeatMs)))} | ${fmt(median(ok.map((r) => r.restoreMs)))} | ${fmt(median(ok.map((r) => r.hashMs)))} | ${runs(rs.map((r) => r.startToBeatMs))} / ${runs(rs.map((r) => r.restoreMs))} |`);
    }
    out('');
    out('save = query-migrate total-time of the save (the guest is stopped meanwhile; the source gap shows it); restore-to-running =');
    out("query-migrate total-time on the restored VM (restore start, before the file's digest is checked, to the guest running);");
    out('process start to first console byte / heartbeat = spawn of the restoring tsvirt to the first byte / first complete');
    out('heartbeat line of its console at the host; SHA-256 alone = the whole file hashed in the bench process (page cache),');
    out("what the restore's digest check costs before it reads the file again into guest memory.");
    out('snap-dirty-1g: dirty_mib=256 dirty_rate=0, saved two sweeps in, `check` on the restored guest.');
    const bad = SNAPSHOTS.flatMap((s) => snaps.get(s.name)!.map((r, i) => ({ s, r, i }))).filter((x) => !x.r.ok);
    for (const { s, r, i } of bad) out(`- ${s.name} run ${i + 1} not clean: ${r.error ?? ''} ${r.check ?? ''}`);
  }
  if (phases.length) {
    out('');
    out('phase timelines (one extra run each under strace --seccomp-bpf; indicative, strace slows the traced syscalls):');
    out('');
    out('```');
    for (const l of phases) out(l);
    out('```');
  }
  out('');
  out(`bench time ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

main().catch((e) => {
  console.error(e);
  killEverything();
  process.exit(1);
});
