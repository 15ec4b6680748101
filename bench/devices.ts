// Device benchmark: virtio-blk and virtio-net throughput of the test guest under tsvirt and under QEMU 7.2, in the same run,
// same guest, same host; medians with tsvirt/QEMU ratios.
//
//   node dist/bench/devices.js [block|net]...     (both by default)
//   BENCH_RUNS=N (default 3) fresh VM per VMM per run, VMMs alternating which goes first.
//   BENCH_UDP_MIB=N (default 8) size of the bulk UDP echo.
//
// block: one 128 MiB raw image per VMM (preallocated, on the host page cache, default cache=writeback on both);
//   the guest runs `blkbench 0 64 write`, `blkbench 0 64 read` (8 requests of 64 KiB in flight) and
//   `blkbench 0 64 read 1` (one at a time, so per-request latency shows); MiB/s from the guest's own ns figure.
// net: a private network namespace with a tap (host 10.0.2.2/24, guest 10.0.2.15) that this benchmark creates and
//   always deletes; each VMM runs inside it. Ping RTT (median of 20 after one to resolve ARP), a bulk UDP echo
//   (1400-byte datagrams, 64 in flight, every echo compared) and a small-datagram echo (64-byte datagrams,
//   64 in flight) from tests/harness/netns.ts's windowed client. No address outside that tap is ever used.
//
// Host CPU of each VMM process over each measured interval comes from /proc/PID/task/*/schedstat (100 = one core),
// with the vCPU thread (QMP query-cpus-fast) in brackets. Per-run details go to stderr, the tables to stdout.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../tests/harness/guest.js';
import { GUEST_IP, HOST_IP, NetNs, UDP_ECHO_CLIENT } from '../tests/harness/netns.js';
import { tsvirtMain } from '../tests/harness/paths.js';
import { QmpClient } from '../tests/harness/qmp-client.js';
import { VmmProcess } from '../tests/harness/tsvirt-process.js';
import { cleanupOnExit, cpuDelta, type CpuSnap, cpuSnap, type CpuUse, fmt as fmtCommon, median as medianCommon } from './common.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const UDP_MIB = Number(process.env.BENCH_UDP_MIB ?? 8);
const MiB = 1024 * 1024;
const IMAGE_MIB = 128;
const BENCH_MIB = 64;
const MAC = '52:54:00:12:34:56';
const SMALL_DGRAMS = 4096;
const SMALL_SIZE = 64;
const WINDOW = 64;

type VmmKind = 'tsvirt' | 'qemu';
const VMM_NAME: Record<VmmKind, string> = { tsvirt: 'tsvirt', qemu: 'QEMU 7.2' };

// ---------------------------------------------------------------------------------------------------------------
// Everything this run creates, torn down on every way out (normal end, exception, Ctrl-C).

const live = new Set<VmmProcess>();
const helpers = new Set<ChildProcess>();
let netns: NetNs | undefined;
let tmpDir: string | undefined;
let cleanedUp = false;

function cleanup(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const p of live) if (p.running) p.child.kill('SIGKILL');
  for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  // A process still inside the namespace keeps the tap but not the name; delete() removes the name either way.
  netns?.delete();
  netns = undefined;
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
}
cleanupOnExit(cleanup);

// ---------------------------------------------------------------------------------------------------------------
// Helpers


const fmt = (x: number, digits = 1) => fmtCommon(x, digits);
/** NaN (not undefined) when there is nothing, so ratios of missing rows print as '-'. */
const median = (xs: number[]): number => medianCommon(xs) ?? NaN;
type Cpu = CpuUse;
const log = (m: string) => process.stderr.write(`${m}\n`);




/** Runs a command to completion asynchronously (the VMs' consoles keep draining meanwhile); killed after `timeoutMs`. */
function runAsync(cmd: string, args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    helpers.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(t);
      helpers.delete(child);
      resolve({ status, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// VMs

let qemuBinary = '';

interface Vm {
  kind: VmmKind;
  proc: VmmProcess;
  qmp: QmpClient;
  vcpuTids: Set<string>;
}

function qemuArgs(append: string, qmpPath: string, devices: string[]): string[] {
  return ['-machine', 'q35,accel=kvm', '-m', '256', '-smp', '1', '-nographic', '-nodefaults', '-serial', 'stdio',
    '-kernel', testGuest(), '-append', append, '-qmp', `unix:${qmpPath},server,nowait`, ...devices];
}

function tsvirtArgs(append: string, qmpPath: string, devices: string[]): string[] {
  return ['-machine', 'q35', '-kernel', testGuest(), '-m', '256', '-smp', '1', '-append', append,
    '-qmp', `unix:${qmpPath},server,nowait`, '-serial', 'stdio', ...devices];
}

/** Starts `kind` with `devices` (in the namespace when `inNs`), waits for READY, and learns its vCPU thread. */
async function startVm(kind: VmmKind, append: string, devices: string[], inNs: boolean): Promise<Vm> {
  const qmpPath = path.join(tmpDir!, `${kind}-${Math.random().toString(36).slice(2, 8)}.qmp`);
  const args = kind === 'tsvirt' ? tsvirtArgs(append, qmpPath, devices) : qemuArgs(append, qmpPath, devices);
  const [cmd, full] = kind === 'tsvirt' ? [process.execPath, [tsvirtMain, ...args]] : [qemuBinary, args];
  // `ip netns exec` execs the command in place, so the child's pid is the VMM's own.
  const proc = inNs ? new VmmProcess('ip', ['netns', 'exec', netns!.name, cmd, ...full]) : new VmmProcess(cmd, full);
  live.add(proc);
  const qmp = await QmpClient.connect(qmpPath, 20000);
  await qmp.run('qmp_capabilities');
  await proc.waitFor(/^READY$/m, 30000);
  let vcpuTids = new Set<string>();
  try {
    const cpus = (await qmp.run('query-cpus-fast')) as { 'thread-id': number }[];
    vcpuTids = new Set(cpus.map((c) => String(c['thread-id'])));
  } catch {
    // No vCPU split then.
  }
  return { kind, proc, qmp, vcpuTids };
}

async function stopVm(vm: Vm | undefined): Promise<void> {
  if (!vm) return;
  vm.qmp.close();
  await vm.proc.kill();
  live.delete(vm.proc);
}

/** Measures `fn` with the VMM's CPU use over exactly that interval. */
async function measured<T>(vm: Vm, fn: () => Promise<T>): Promise<{ value: T; ms: number; cpu: Cpu }> {
  const pid = vm.proc.child.pid;
  const a = cpuSnap(pid);
  const t0 = performance.now();
  const value = await fn();
  const ms = performance.now() - t0;
  const cpu = cpuDelta(a, cpuSnap(pid), pid, vm.vcpuTids, ms, { minPct: 1, top: 5 });
  return { value, ms, cpu };
}

// ---------------------------------------------------------------------------------------------------------------
// Block

interface BlkTest {
  key: string;
  label: string;
  command: string;
}

const BLK_TESTS: BlkTest[] = [
  { key: 'write', label: `write ${BENCH_MIB} MiB, 8 in flight`, command: `blkbench 0 ${BENCH_MIB} write` },
  { key: 'read', label: `read ${BENCH_MIB} MiB, 8 in flight`, command: `blkbench 0 ${BENCH_MIB} read` },
  { key: 'read1', label: `read ${BENCH_MIB} MiB, 1 in flight`, command: `blkbench 0 ${BENCH_MIB} read 1` },
];

interface Sample {
  value: number;
  cpu: Cpu;
}

type Results = Map<string, Record<VmmKind, Sample[]>>;

function record(results: Results, key: string, kind: VmmKind, s: Sample): void {
  let r = results.get(key);
  if (!r) results.set(key, (r = { tsvirt: [], qemu: [] }));
  r[kind].push(s);
}

function makeImage(name: string): string {
  const p = path.join(tmpDir!, name);
  // Preallocated (written, not sparse), so the write test measures the VMM and not the filesystem's block allocation.
  const fd = fs.openSync(p, 'w');
  const chunk = Buffer.alloc(4 * MiB);
  for (let i = 0; i < IMAGE_MIB / 4; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  return p;
}

async function blockRun(kind: VmmKind, image: string, results: Results, run: number): Promise<void> {
  const devices = ['-drive', `file=${image},if=none,id=d0,format=raw`, '-device', 'virtio-blk-pci,drive=d0,addr=0x3'];
  let vm: Vm | undefined;
  try {
    vm = await startVm(kind, 'console=ttyS0', devices, false);
    const virtio = vm.proc.output.match(/^VIRTIO \S+ blk irq=(\S+)/m);
    if (virtio?.[1] !== 'msix') log(`  ${kind}: virtio-blk irq=${virtio?.[1] ?? '?'} (expected msix)`);
    for (const t of BLK_TESTS) {
      const m = await measured(vm, async () => {
        vm!.proc.send(`${t.command}\r`);
        return vm!.proc.waitFor(/^BLKBENCH (?:MiB=(\d+) ns=(\d+)|(ERROR.*))$/m, 60000);
      });
      if (m.value[3]) throw new Error(`${kind}: ${t.command}: BLKBENCH ${m.value[3]}`);
      const mibs = Number(m.value[1]) / (Number(m.value[2]) / 1e9);
      const requests = (Number(m.value[1]) * MiB) / 65536;
      record(results, `blk-${t.key}`, kind, { value: mibs, cpu: m.cpu });
      const perReq = Number(m.value[2]) / 1000 / requests;
      log(`  run ${run} ${VMM_NAME[kind]} ${t.command}: ${fmt(mibs)} MiB/s (${fmt(perReq)} us/request, guest ns ${m.value[2]}), `
        + `CPU ${fmt(m.cpu.pct, 0)}% [${m.cpu.top}]`);
    }
  } finally {
    await stopVm(vm);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Network

interface EchoSummary {
  ok: boolean;
  datagrams?: number;
  bytes?: number;
  ms?: number;
  retransmits?: number;
  bad?: number;
  timeout?: boolean;
}

async function udpEcho(totalBytes: number, size: number, window: number): Promise<EchoSummary> {
  const script = path.join(tmpDir!, 'udp-echo-client.mjs');
  if (!fs.existsSync(script)) fs.writeFileSync(script, UDP_ECHO_CLIENT);
  const r = await runAsync('ip', ['netns', 'exec', netns!.name, process.execPath, script, String(totalBytes), String(size), String(window)], 60000);
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as EchoSummary;
  } catch {
    return { ok: false };
  }
}

async function netRun(kind: VmmKind, results: Results, run: number): Promise<void> {
  const devices = ['-netdev', `tap,id=n0,ifname=${netns!.tap},script=no,downscript=no,vhost=off`,
    '-device', `virtio-net-pci,netdev=n0,mac=${MAC},addr=0x4`];
  let vm: Vm | undefined;
  try {
    vm = await startVm(kind, `console=ttyS0 ip=${GUEST_IP}`, devices, true);
    const virtio = vm.proc.output.match(/^VIRTIO \S+ net irq=(\S+)/m);
    if (virtio?.[1] !== 'msix') log(`  ${kind}: virtio-net irq=${virtio?.[1] ?? '?'} (expected msix)`);
    if (!/^NET 0 mac=\S+ link=up$/m.test(vm.proc.output)) throw new Error(`${kind}: no NIC with link=up in the boot report`);

    // One ping resolves ARP (the host asks, the guest answers); the next 20 are measured.
    const warm = await runAsync('ip', ['netns', 'exec', netns!.name, 'ping', '-c', '1', '-W', '2', GUEST_IP], 10000);
    if (warm.status !== 0) log(`  ${kind}: warm-up ping failed: ${warm.stdout}${warm.stderr}`);
    const ping = await measured(vm, () => runAsync('ip', ['netns', 'exec', netns!.name, 'ping', '-c', '20', '-i', '0.05', '-W', '2', GUEST_IP], 20000));
    const rtts = [...ping.value.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
    if (rtts.length < 20) log(`  ${kind}: ${rtts.length}/20 ping replies`);
    record(results, 'ping', kind, { value: median(rtts), cpu: ping.cpu });
    log(`  run ${run} ${VMM_NAME[kind]} ping: median ${fmt(median(rtts), 3)} ms, min ${fmt(Math.min(...rtts), 3)}, max ${fmt(Math.max(...rtts), 3)} (${rtts.length}/20)`);

    const bulk = await measured(vm, () => udpEcho(UDP_MIB * MiB, 1400, WINDOW));
    if (!bulk.value.ok || !bulk.value.bytes || !bulk.value.ms) throw new Error(`${kind}: UDP echo failed: ${JSON.stringify(bulk.value)}`);
    const mibs = bulk.value.bytes / MiB / (bulk.value.ms / 1000);
    record(results, 'udp-bulk', kind, { value: mibs, cpu: bulk.cpu });
    log(`  run ${run} ${VMM_NAME[kind]} UDP echo ${bulk.value.bytes} B in ${bulk.value.ms} ms: ${fmt(mibs, 2)} MiB/s, `
      + `${bulk.value.retransmits} retransmits, CPU ${fmt(bulk.cpu.pct, 0)}% [${bulk.cpu.top}]`);

    const small = await measured(vm, () => udpEcho(SMALL_DGRAMS * SMALL_SIZE, SMALL_SIZE, WINDOW));
    if (!small.value.ok || !small.value.datagrams || !small.value.ms) throw new Error(`${kind}: small UDP echo failed: ${JSON.stringify(small.value)}`);
    const pps = small.value.datagrams / (small.value.ms / 1000);
    record(results, 'udp-small', kind, { value: pps, cpu: small.cpu });
    log(`  run ${run} ${VMM_NAME[kind]} UDP echo ${small.value.datagrams} x ${SMALL_SIZE} B in ${small.value.ms} ms: ${fmt(pps, 0)} datagrams/s, `
      + `${small.value.retransmits} retransmits, CPU ${fmt(small.cpu.pct, 0)}% [${small.cpu.top}]`);

    vm.proc.send('netstat\r');
    const ns = await vm.proc.waitFor(/^NETSTAT .*$/m, 10000);
    log(`  run ${run} ${VMM_NAME[kind]} ${ns[0]}`);
  } finally {
    await stopVm(vm);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Report

interface Row {
  key: string;
  label: string;
  unit: string;
  digits: number;
}

const ROWS: Row[] = [
  ...BLK_TESTS.map((t) => ({ key: `blk-${t.key}`, label: `virtio-blk ${t.label}`, unit: 'MiB/s', digits: 1 })),
  { key: 'udp-bulk', label: `virtio-net UDP echo ${UDP_MIB} MiB, 1400 B, ${WINDOW} in flight`, unit: 'MiB/s', digits: 2 },
  { key: 'udp-small', label: `virtio-net UDP echo ${SMALL_DGRAMS} x ${SMALL_SIZE} B, ${WINDOW} in flight`, unit: 'datagrams/s', digits: 0 },
  { key: 'ping', label: 'virtio-net ping RTT (median of 20, 50 ms apart)', unit: 'ms', digits: 3 },
];

function printTable(results: Results): void {
  console.log('| test | unit | tsvirt | QEMU 7.2 | tsvirt/QEMU | tsvirt runs | QEMU runs | CPU % tsvirt (vCPU) | CPU % QEMU (vCPU) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const row of ROWS) {
    const r = results.get(row.key);
    if (!r) continue;
    const t = median(r.tsvirt.map((s) => s.value));
    const q = median(r.qemu.map((s) => s.value));
    const runs = (xs: Sample[]) => xs.map((s) => fmt(s.value, row.digits)).join(', ') || '-';
    const cpu = (xs: Sample[]) => (xs.length ? `${fmt(median(xs.map((s) => s.cpu.pct)), 0)} (${fmt(median(xs.map((s) => s.cpu.vcpu)), 0)})` : '-');
    console.log(`| ${row.label} | ${row.unit} | ${fmt(t, row.digits)} | ${fmt(q, row.digits)} | ${fmt(t / q, 2)} | ${runs(r.tsvirt)} | ${runs(r.qemu)} | ${cpu(r.tsvirt)} | ${cpu(r.qemu)} |`);
  }
  console.log('');
  console.log('ratio = tsvirt median / QEMU median: above 1 is better for tsvirt on throughput rows, below 1 on the ping row.');
  console.log('CPU % = host CPU of the VMM process over the measured interval (100 = one core), vCPU thread in brackets;');
  console.log('for ping and UDP that interval includes the client\'s start-up (~50 ms).');
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  const wanted = process.argv.slice(2);
  for (const w of wanted) if (w !== 'block' && w !== 'net') throw new Error(`unknown test group '${w}' (block, net)`);
  const doBlock = wanted.length === 0 || wanted.includes('block');
  const doNet = wanted.length === 0 || wanted.includes('net');
  qemuBinary = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64 || true'], { encoding: 'utf8' }).trim();
  const kinds: VmmKind[] = qemuBinary ? ['tsvirt', 'qemu'] : ['tsvirt'];
  if (!qemuBinary) log('QEMU not installed: run `make deps` (installs qemu-system-x86) for the comparison; measuring tsvirt only');
  const qemuVersion = qemuBinary ? execFileSync(qemuBinary, ['--version'], { encoding: 'utf8' }).split('\n')[0] : 'none';
  if (doNet && process.getuid?.() !== 0) throw new Error('the net tests need root (network namespace and tap)');
  testGuest();
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-bench-dev-'));
  const results: Results = new Map();
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');

  if (doBlock) {
    log(`block: ${RUNS} run(s) per VMM, ${IMAGE_MIB} MiB raw image per VMM in ${tmpDir}`);
    const images = Object.fromEntries(kinds.map((k) => [k, makeImage(`${k}.img`)])) as Record<VmmKind, string>;
    for (let i = 0; i < RUNS; i++) {
      const order = i % 2 === 0 ? kinds : [...kinds].reverse();
      for (const k of order) await blockRun(k, images[k], results, i + 1);
    }
  }
  if (doNet) {
    netns = new NetNs('devb');
    log(`net: namespace ${netns.name}, tap ${netns.tap} (${HOST_IP}/24), guest ${GUEST_IP}; ${RUNS} run(s) per VMM`);
    try {
      for (let i = 0; i < RUNS; i++) {
        const order = i % 2 === 0 ? kinds : [...kinds].reverse();
        for (const k of order) await netRun(k, results, i + 1);
      }
    } finally {
      netns.delete();
      netns = undefined;
    }
  }

  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`devices, test guest (256 MiB, 1 vCPU), ${RUNS} run(s) per VMM, medians (${when}, ${os.cpus().length} host CPUs, `
    + `load ${load}, Node ${process.version}, ${qemuVersion}):`);
  console.log('');
  printTable(results);
  console.log(`\nbench time ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

main().then(
  () => {
    cleanup();
    process.exit(0);
  },
  (e: unknown) => {
    log(`bench/devices: ${(e as Error).stack ?? e}`);
    for (const p of live) log(`console tail: ${p.output.slice(-600)}\nstderr: ${p.stderr.slice(-600)}`);
    cleanup();
    process.exit(1);
  },
);
