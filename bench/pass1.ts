// Raw pass-1 throughput: how fast tsvirt and QEMU 7.2 send a guest's populated memory, next to the physical limits
// measured in the same run (memcpy, and one loopback TCP / unix socket stream between two Node processes).
//
//   node dist/bench/pass1.js [tsvirt] [qemu] [limits]   (VMMs to measure, default both; `limits` alone: no VMM; the
//   limits are always measured)
//   BENCH_RUNS=N (default 3), BENCH_QUICK=1 (one run),
//   BENCH_PASS1_MEM_MIB (guest RAM, default 2048), BENCH_PASS1_DIRTY_MIB (pages the guest fills, default 1536)
//
// The guest fills its working set (`dirty MIB`: every page's first byte becomes non-zero within a sweep), is told to
// `stop` once a sweep has finished, and then sits idle (heartbeats only): what a migration then sends is pass 1 of
// static, non-zero memory. Internally, `pass1.js --sink tcp|unix ADDRESS BYTES` is the receiving end of a stream test.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../tests/harness/migration.js';
import { testGuest } from '../tests/harness/guest.js';
import { QmpClient } from '../tests/harness/qmp-client.js';
import { VmmProcess } from '../tests/harness/tsvirt-process.js';
import { applyMigrationSettings, cleanupOnExit, cpuDelta, cpuMerge, cpuSnap, type CpuUse, fmt, median, type MigrationSettings, qemuBinaryPath, ratio, sleep } from './common.js';

const RUNS = process.env.BENCH_QUICK === '1' ? 1 : Number(process.env.BENCH_RUNS ?? 3);
const MEM_MIB = Number(process.env.BENCH_PASS1_MEM_MIB ?? 2048);
const DIRTY_MIB = Number(process.env.BENCH_PASS1_DIRTY_MIB ?? 1536);
const MiB = 1024 * 1024;
const GB = 1e9;
/** Stream tests: bytes per run and per write (the size tsvirt writes in pass 1). */
const STREAM_BYTES = 4 * 1024 * MiB;
/** Into untouched memory: one allocation in the receiver, so at most what a Buffer holds comfortably. */
const FRESH_STREAM_BYTES = 2 * 1024 * MiB;
const CHUNK = 4 * MiB;
const POLL_MS = 20;
const CAP_MS = 60000;

// ---------------------------------------------------------------------------------------------------------------
// Clean-up on every way out

const children = new Set<ChildProcess>();
const vms = new Set<VmmProcess>();
let tmpDir: string | undefined;

function killEverything(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const p of vms) if (p.running) p.child.kill('SIGKILL');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------------------------
// Physical limits

/**
 * Buffer.copy of 256 MiB at once and in 4 KiB pieces (both buffers touched first), and at once into memory never
 * touched before (as a destination's guest RAM is: every page faulted in on first write), GB/s.
 */
function memcpy(): { big: number; small: number; fresh: number } {
  const size = 256 * MiB;
  const a = Buffer.alloc(size, 0x5a);
  const b = Buffer.alloc(size);
  a.copy(b);
  let t = performance.now();
  const reps = 8;
  for (let i = 0; i < reps; i++) a.copy(b, 0, 0, size);
  const big = (reps * size) / GB / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < 2; i++) for (let off = 0; off < size; off += 4096) a.copy(b, off, off, off + 4096);
  const small = (2 * size) / GB / ((performance.now() - t) / 1000);
  let freshMs = 0;
  for (let i = 0; i < 4; i++) {
    // allocUnsafeSlow leaves the pages untouched (no fill), so the copy faults every one of them in.
    const d = Buffer.allocUnsafeSlow(size);
    t = performance.now();
    a.copy(d);
    freshMs += performance.now() - t;
  }
  return { big, small, fresh: (4 * size) / GB / (freshMs / 1000) };
}

/**
 * One stream from this process to a child Node process: 4 MiB writes with 'drain' back-pressure, from a 256 MiB
 * non-zero buffer (so the data comes from memory, not cache); the child receives with `onread` into one buffer (the
 * kernel writes straight into it, as tsvirt's destination receives) and answers one byte when it has everything.
 * GB/s from the connection to that answer.
 */
async function streamGBs(kind: 'tcp' | 'unix', src: Buffer, dir: string, fresh = false): Promise<number> {
  const bytes = fresh ? FRESH_STREAM_BYTES : STREAM_BYTES;
  const server = net.createServer();
  const address = kind === 'tcp' ? '127.0.0.1:0' : path.join(dir, `stream-${Math.random().toString(36).slice(2, 8)}.sock`);
  if (kind === 'tcp') server.listen(0, '127.0.0.1');
  else server.listen(address);
  await once(server, 'listening');
  const where = kind === 'tcp' ? `127.0.0.1:${(server.address() as net.AddressInfo).port}` : address;
  const child = spawn(process.execPath, [process.argv[1], '--sink', kind, where, String(bytes), fresh ? 'fresh' : 'reuse'], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.add(child);
  const died = once(child, 'exit').then(([code, signal]) => {
    children.delete(child);
    throw new Error(`stream sink exited early (${code ?? signal})`);
  });
  died.catch(() => {});
  try {
    const [sock] = (await Promise.race([once(server, 'connection'), died])) as [net.Socket];
    const done = Promise.race([once(sock, 'data'), died]);
    const t0 = performance.now();
    for (let sent = 0, off = 0; sent < bytes; sent += CHUNK, off = (off + CHUNK) % src.length) {
      if (!sock.write(src.subarray(off, off + CHUNK))) await once(sock, 'drain');
    }
    await done;
    const gbs = bytes / GB / ((performance.now() - t0) / 1000);
    sock.destroy();
    return gbs;
  } finally {
    server.close();
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/**
 * The child's side of streamGBs: reads with `onread` into one reused 4 MiB buffer, or (`fresh`) into consecutive
 * slices of one untouched allocation, as a VMM's destination receives guest RAM.
 */
function sink(kind: string, where: string, bytes: number, fresh: boolean): void {
  const reused = Buffer.allocUnsafe(CHUNK);
  const whole = fresh ? Buffer.allocUnsafeSlow(bytes + CHUNK) : undefined;
  let got = 0;
  const target = kind === 'tcp' ? { host: where.split(':')[0], port: Number(where.split(':')[1]) } : { path: where };
  const sock = net.connect({
    ...target,
    onread: {
      // Called before every read: the kernel writes straight into the slice it returns.
      buffer: whole ? () => whole.subarray(got, got + CHUNK) : reused,
      callback: (n: number) => {
        got += n;
        if (got >= bytes) sock.end('k');
        return true;
      },
    },
  } as net.NetConnectOpts);
  sock.on('error', () => process.exit(1));
  sock.on('close', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------------------------
// Pass 1 of a VMM

type VmmKind = 'tsvirt' | 'qemu';
const VMM_NAME: Record<VmmKind, string> = { tsvirt: 'tsvirt', qemu: 'QEMU 7.2' };

interface Config {
  name: string;
  kind: VmmKind;
  src: MigrationSettings;
  /** QEMU's destination with multifd: -incoming defer, these settings, migrate-incoming. */
  dst?: MigrationSettings;
}

const QEMU_UNCAPPED = { 'max-bandwidth': 10737418240 };
const multifd = (n: number): MigrationSettings => ({ caps: { multifd: true }, params: { 'multifd-channels': n } });

const CONFIGS: Config[] = [
  { name: 'tsvirt, defaults (max-bandwidth 0 = unlimited)', kind: 'tsvirt', src: {} },
  { name: 'tsvirt, multifd 2 channels', kind: 'tsvirt', src: multifd(2) },
  { name: 'tsvirt, multifd 4 channels', kind: 'tsvirt', src: multifd(4) },
  { name: 'QEMU 7.2, max-bandwidth 10737418240', kind: 'qemu', src: { params: QEMU_UNCAPPED } },
  { name: 'QEMU 7.2, max-bandwidth 10737418240, multifd 2 channels', kind: 'qemu', src: { caps: { multifd: true }, params: { ...QEMU_UNCAPPED, 'multifd-channels': 2 } }, dst: multifd(2) },
  { name: 'QEMU 7.2, max-bandwidth 10737418240, multifd 4 channels', kind: 'qemu', src: { caps: { multifd: true }, params: { ...QEMU_UNCAPPED, 'multifd-channels': 4 } }, dst: multifd(4) },
];

let qemuBinary = '';

async function startVm(kind: VmmKind, dir: string, incoming?: string): Promise<{ proc: VmmProcess; qmp: QmpClient }> {
  const qmpPath = path.join(dir, `${kind}-${incoming ? 'dst' : 'src'}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const extra = incoming ? ['-incoming', incoming] : [];
  const proc = kind === 'tsvirt'
    ? VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', String(MEM_MIB), '-smp', '1', '-append', 'console=ttyS0',
      '-qmp', `unix:${qmpPath},server,nowait`, '-serial', 'stdio', ...extra])
    : new VmmProcess(qemuBinary, ['-machine', 'q35,accel=kvm', '-m', String(MEM_MIB), '-smp', '1', '-nographic', '-nodefaults',
      '-serial', 'stdio', '-kernel', testGuest(), '-append', 'console=ttyS0', '-qmp', `unix:${qmpPath},server,nowait`, ...extra]);
  vms.add(proc);
  try {
    const qmp = await QmpClient.connect(qmpPath, 20000);
    await qmp.run('qmp_capabilities');
    return { proc, qmp };
  } catch (e) {
    await proc.kill();
    throw e;
  }
}

interface Pass1Result {
  config: Config;
  ok: boolean;
  /** normal-bytes / total-time. */
  gbs?: number;
  /** normal-bytes when the first later sync showed, over the time to it (midpoint of the two polls around it). */
  pass1Gbs?: number;
  totalMs?: number;
  normalMiB?: number;
  sentMiB?: number;
  srcCpu?: CpuUse;
  dstCpu?: CpuUse;
  fillMs?: number;
  check?: string;
  error?: string;
  info?: any;
}

async function pass1Once(config: Config, dir: string): Promise<Pass1Result> {
  const r: Pass1Result = { config, ok: false };
  const started: { proc: VmmProcess; qmp: QmpClient }[] = [];
  try {
    const uri = `tcp:127.0.0.1:${await freePort()}`;
    const defer = config.kind === 'qemu' && config.dst !== undefined;
    const dst = await startVm(config.kind, dir, defer ? 'defer' : uri);
    started.push(dst);
    await applyMigrationSettings(dst.qmp, config.dst);
    if (defer) await dst.qmp.run('migrate-incoming', { uri });
    const src = await startVm(config.kind, dir);
    started.push(src);
    await src.proc.waitFor(/READY/, 30000);
    // Fill: the dirtier clears its set, then adds 1 to every page's first byte per sweep; one whole sweep leaves
    // every page non-zero. Then it stops, and the guest only beats.
    const tFill = performance.now();
    src.proc.send(`dirty ${DIRTY_MIB}\r`);
    await src.proc.waitFor(/DIRTY mib=\d+[^\n]*/, 120000);
    await src.proc.waitFor(/HB seq=\d+ t=\d+ sweeps=[1-9]\d*/, 60000);
    src.proc.send('stop\r');
    await src.proc.waitFor(/STOPPED sweeps=\d+/, 10000);
    r.fillMs = performance.now() - tFill;
    await src.proc.waitFor(/HB seq=\d+ t=\d+\n/, 10000);
    await applyMigrationSettings(src.qmp, config.src);

    const srcPid = src.proc.child.pid;
    const dstPid = dst.proc.child.pid;
    const cpuSrc0 = cpuSnap(srcPid);
    const cpuDst0 = cpuSnap(dstPid);
    const cpuSrc = new Map(cpuSrc0);
    const cpuDst = new Map(cpuDst0);
    const vcpus = async (qmp: QmpClient) => new Set(((await qmp.run('query-cpus-fast')) as { 'thread-id': number }[]).map((c) => String(c['thread-id'])));
    const srcVcpus = await vcpus(src.qmp);
    const dstVcpus = await vcpus(dst.qmp);
    // tsvirt's first pass runs before any sync (count 0), QEMU's after its first (count 1).
    const firstPassSync = config.kind === 'tsvirt' ? 0 : 1;
    const t0 = performance.now();
    await src.qmp.run('migrate', { uri });
    let info: any;
    let prevAt = 0;
    for (;;) {
      cpuMerge(cpuSrc, srcPid);
      cpuMerge(cpuDst, dstPid);
      info = await src.qmp.run('query-migrate');
      const at = performance.now() - t0;
      if (r.pass1Gbs === undefined && info.ram && info.ram['dirty-sync-count'] > firstPassSync) {
        r.pass1Gbs = info.ram['normal-bytes'] / GB / ((prevAt + at) / 2 / 1000);
      }
      prevAt = at;
      if (['completed', 'failed', 'cancelled'].includes(info.status) || at > CAP_MS) break;
      await sleep(POLL_MS);
    }
    const wallMs = performance.now() - t0;
    cpuMerge(cpuSrc, srcPid);
    cpuMerge(cpuDst, dstPid);
    r.srcCpu = cpuDelta(cpuSrc0, cpuSrc, srcPid, srcVcpus, wallMs);
    r.dstCpu = cpuDelta(cpuDst0, cpuDst, dstPid, dstVcpus, wallMs);
    r.info = info;
    if (info.status !== 'completed') {
      r.error = info.status === 'active' ? `still active after ${CAP_MS / 1000} s` : `${info.status}: ${info['error-desc'] ?? ''}`;
      if (info.status === 'active') await src.qmp.execute('migrate_cancel');
      return r;
    }
    r.totalMs = info['total-time'];
    r.normalMiB = info.ram['normal-bytes'] / MiB;
    r.sentMiB = info.ram.transferred / MiB;
    r.gbs = info.ram['normal-bytes'] / GB / (info['total-time'] / 1000);
    // Typed only once the destination runs the guest: QEMU overwrites the UART (and input it holds) when it loads the
    // device state, which with multifd can come after the source already reports `completed`.
    await dst.proc.waitFor(/HB seq=\d+ t=\d+/, 30000);
    dst.proc.send('check\r');
    r.check = (await dst.proc.waitFor(/CHECK (OK|FAIL|ERROR)[^\n]*/, 60000).catch((e: Error) => [`CHECK timed out: ${e.message.slice(0, 120)}`]))[0];
    r.ok = r.check.startsWith('CHECK OK');
    return r;
  } catch (e) {
    r.error = (e as Error).message.slice(0, 600);
    return r;
  } finally {
    for (const v of started) {
      v.qmp.close();
      await v.proc.kill();
      vms.delete(v.proc);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  qemuBinary = qemuBinaryPath();
  testGuest();
  const dir = (tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-bench-pass1-')));
  const started = performance.now();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const wanted = process.argv.slice(2);
  const bad = wanted.filter((w) => !['tsvirt', 'qemu', 'limits'].includes(w));
  if (bad.length) {
    console.error(`unknown argument(s): ${bad.join(', ')}; give tsvirt, qemu, limits or nothing (both VMMs)`);
    process.exit(2);
  }
  const vmms = wanted.filter((w) => w !== 'limits');
  const configs = wanted.length === 0 ? CONFIGS.filter((c) => c.kind === 'tsvirt' || qemuBinary) : CONFIGS.filter((c) => vmms.includes(c.kind) && (c.kind === 'tsvirt' || qemuBinary));

  // Physical limits first, on a machine not yet busy with VMs.
  const big: number[] = [];
  const small: number[] = [];
  const fresh: number[] = [];
  const tcp: number[] = [];
  const tcpFresh: number[] = [];
  const unix: number[] = [];
  const src = Buffer.alloc(256 * MiB, 0xa5);
  for (let i = 0; i < RUNS; i++) {
    const m = memcpy();
    big.push(m.big);
    small.push(m.small);
    fresh.push(m.fresh);
    tcp.push(await streamGBs('tcp', src, dir));
    tcpFresh.push(await streamGBs('tcp', src, dir, true));
    unix.push(await streamGBs('unix', src, dir));
    log(`[limits run ${i + 1}/${RUNS}] memcpy ${m.big.toFixed(2)} GB/s (4 KiB pieces ${m.small.toFixed(2)}, into untouched memory ${m.fresh.toFixed(2)}), tcp ${tcp[i].toFixed(2)} GB/s (into untouched memory ${tcpFresh[i].toFixed(2)}), unix ${unix[i].toFixed(2)} GB/s`);
  }

  const results = new Map<Config, Pass1Result[]>(configs.map((c) => [c, []]));
  for (let i = 0; i < RUNS; i++) {
    // Alternate the order, so slow drift of the shared machine does not favour one configuration.
    for (const c of i % 2 ? [...configs].reverse() : configs) {
      const r = await pass1Once(c, dir);
      results.get(c)!.push(r);
      const parts = [`${c.name}: ${r.ok ? 'ok' : 'FAILED'}`];
      if (r.totalMs !== undefined) parts.push(`${fmt(r.gbs, 2)} GB/s (pass 1 ${fmt(r.pass1Gbs, 2)}), total ${r.totalMs} ms, normal ${fmt(r.normalMiB, 1)} MiB, sent ${fmt(r.sentMiB, 1)} MiB, syncs ${r.info.ram['dirty-sync-count']}, downtime ${r.info.downtime} ms`);
      if (r.info?.ram?.['multifd-bytes']) parts.push(`multifd-bytes ${fmt(r.info.ram['multifd-bytes'] / MiB, 1)} MiB`);
      if (r.srcCpu) parts.push(`src CPU ${fmt(r.srcCpu.pct)}% [${r.srcCpu.top}]`);
      if (r.dstCpu) parts.push(`dst CPU ${fmt(r.dstCpu.pct)}% [${r.dstCpu.top}]`);
      if (r.fillMs !== undefined) parts.push(`guest fill ${fmt(r.fillMs / 1000, 1)} s`);
      if (r.check) parts.push(r.check);
      if (r.error) parts.push(`ERROR: ${r.error}${r.info ? ` query-migrate: ${JSON.stringify(r.info)}` : ''}`);
      log(`[pass1 run ${i + 1}/${RUNS}] ${parts.join('; ')}`);
    }
  }
  killEverything();

  const memcpyGbs = median(big);
  const tcpGbs = median(tcp);
  const tcpFreshGbs = median(tcpFresh);
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  console.log(`raw pass-1 throughput next to the physical limits, ${RUNS} run(s), medians (${when}, ${os.cpus().length} host CPUs):`);
  console.log(`guest: test guest, -m ${MEM_MIB}, 1 vCPU, \`dirty ${DIRTY_MIB}\` until one sweep has passed, then \`stop\` (static, every page non-zero); loopback tcp`);
  console.log('');
  console.log('| what | GB/s | pass-1 GB/s | / memcpy | / one TCP stream | / TCP into untouched | total ms | normal MiB | sent MiB | src CPU % | dst CPU % | completed |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const limit = (name: string, xs: number[]) => {
    const g = median(xs);
    console.log(`| ${name} | ${fmt(g, 2)} | | ${ratio(g, memcpyGbs)} | ${ratio(g, tcpGbs)} | ${ratio(g, tcpFreshGbs)} | | | | | | |`);
  };
  limit('memcpy: Buffer.copy, 256 MiB at once', big);
  limit('memcpy: Buffer.copy, 4 KiB pieces', small);
  limit('memcpy: Buffer.copy, 256 MiB into untouched memory', fresh);
  limit('one TCP stream, 127.0.0.1, Node to Node, 4 MiB writes', tcp);
  limit('same, received into untouched memory (2 GiB)', tcpFresh);
  limit('one unix socket stream, Node to Node, 4 MiB writes', unix);
  const sums = new Map<Config, { gbs?: number; pass1?: number }>();
  for (const c of configs) {
    const rs = results.get(c)!;
    const done = rs.filter((r) => r.totalMs !== undefined);
    const pick = (f: (r: Pass1Result) => number | undefined) => median(done.map(f));
    const g = pick((r) => r.gbs);
    sums.set(c, { gbs: g, pass1: pick((r) => r.pass1Gbs) });
    console.log(`| ${c.name} | ${fmt(g, 2)} | ${fmt(pick((r) => r.pass1Gbs), 2)} | ${ratio(g, memcpyGbs)} | ${ratio(g, tcpGbs)} | ${ratio(g, tcpFreshGbs)} | ${fmt(pick((r) => r.totalMs))} | ${fmt(pick((r) => r.normalMiB), 1)} | ${fmt(pick((r) => r.sentMiB), 1)} | ${fmt(pick((r) => r.srcCpu?.pct))} | ${fmt(pick((r) => r.dstCpu?.pct))} | ${rs.filter((r) => r.ok).length}/${rs.length} |`);
  }
  if (configs.length === CONFIGS.length) {
    for (let i = 0; i < 3; i++) {
      const a = sums.get(configs[i])!;
      const b = sums.get(configs[i + 3])!;
      const label = ['defaults / uncapped', 'multifd 2', 'multifd 4'][i];
      console.log(`| ratio tsvirt/QEMU, ${label} | ${ratio(a.gbs, b.gbs)} | ${ratio(a.pass1, b.pass1)} | | | | | | | | | |`);
    }
  }
  console.log('');
  console.log('GB = 10^9 bytes. memcpy and streams: one 256 MiB source buffer of non-zero bytes; streams move 4 GiB from this process');
  console.log('to a child Node process that receives with `onread` into one 4 MiB buffer. "Untouched memory": the target pages were');
  console.log("never written before, so each is faulted in on first write, as in a VMM destination's fresh guest RAM (the stream");
  console.log("variant receives 2 GiB into consecutive slices of one allocation, as tsvirt's destination does). VMM rows:");
  console.log('GB/s = ram.normal-bytes / total-time (migrate to completion, setup and downtime included); pass-1 GB/s = normal-bytes');
  console.log('in the first query-migrate reply (polled every 20 ms) after the sync that ends pass 1, over the time to it (midpoint');
  console.log("of the polls around it). QEMU's max-bandwidth is lifted to 10737418240 on every QEMU row, because its default (128");
  console.log("MiB/s, 0.134 GB/s) would be the limit; tsvirt's default is unlimited. QEMU scans the untouched rest of RAM as zero");
  console.log('pages (not in normal-bytes); tsvirt skips pages that are not resident. multifd rows use several TCP connections, so');
  console.log('they can exceed one stream. CPU: source/destination process over the migration, 100 = one core; the destination');
  console.log('ran `check` afterwards (completed = CHECK OK).');
  console.log('');
  console.log(`bench time ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

if (process.argv[2] === '--sink') {
  sink(process.argv[3], process.argv[4], Number(process.argv[5]), process.argv[6] === 'fresh');
} else {
  cleanupOnExit(killEverything);
  main().catch((e) => {
    console.error(e);
    killEverything();
    process.exit(1);
  });
}
