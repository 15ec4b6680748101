// Migration across a shaped link: two network namespaces joined at 1 Gbit/s with 1 ms each way, tsvirt and QEMU 7.2
// side by side, plain, multifd, multifd+zlib and XBZRLE; 1 GiB guest, 256 MiB working set re-dirtied at 64 MiB/s.
//
//   node dist/bench/shaped-link.js [variant...]     BENCH_RUNS=N (default 3), BENCH_QUICK=1 (one run)
//
// Needs root (namespaces) and qemu-system-x86_64 for the comparison (tsvirt alone otherwise).

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../tests/harness/guest.js';
import { QmpClient } from '../tests/harness/qmp-client.js';
import { VmmProcess } from '../tests/harness/tsvirt-process.js';
import { TwoHosts } from '../tests/harness/two-hosts.js';
import { cleanupOnExit, fmt, median, ratio } from './common.js';

const RUNS = process.env.BENCH_QUICK === '1' ? 1 : Number(process.env.BENCH_RUNS ?? 3);
const CAP_MS = 60000;
const MEM_MIB = 1024;
const APPEND = 'console=ttyS0 dirty_mib=256 dirty_rate=64';
const MiB = 1024 * 1024;
const PORT = 4444;

type Kind = 'tsvirt' | 'qemu';
const NAME: Record<Kind, string> = { tsvirt: 'tsvirt', qemu: 'QEMU 7.2' };

interface Variant {
  name: string;
  what: string;
  caps: string[];
  /** Parameters for both sides (QEMU needs the multifd ones on the destination too). */
  params: Record<string, number | string>;
}

/** The link is the limit, so neither VMM's bandwidth cap should be (QEMU's default is 128 MiB/s). */
const UNCAPPED = { 'max-bandwidth': 10737418240 };
const VARIANTS: Variant[] = [
  { name: 'plain', what: 'one stream, defaults (bandwidth uncapped)', caps: [], params: { ...UNCAPPED } },
  { name: 'multifd-2', what: 'multifd, 2 channels, no compression', caps: ['multifd'], params: { ...UNCAPPED, 'multifd-channels': 2 } },
  { name: 'multifd-2-zlib', what: 'multifd, 2 channels, zlib level 1', caps: ['multifd'], params: { ...UNCAPPED, 'multifd-channels': 2, 'multifd-compression': 'zlib' } },
  { name: 'xbzrle', what: 'one stream, XBZRLE with a 512 MiB cache', caps: ['xbzrle'], params: { ...UNCAPPED, 'xbzrle-cache-size': 512 * MiB } },
];

interface Result {
  outcome: 'completed' | 'did not converge' | 'failed';
  totalMs?: number;
  downtimeMs?: number;
  sentMiB?: number;
  passes?: number;
  check?: string;
  error?: string;
}

const live = new Set<VmmProcess>();
let hosts: TwoHosts | undefined;
let tmp: string | undefined;
function cleanup(): void {
  for (const p of live) if (p.running) p.child.kill('SIGKILL');
  live.clear();
  hosts?.delete();
  hosts = undefined;
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}
cleanupOnExit(cleanup);

let qemu = '';

async function start(kind: Kind, ns: string, qmpPath: string, incoming?: string): Promise<{ proc: VmmProcess; qmp: QmpClient }> {
  const common = ['-m', String(MEM_MIB), '-smp', '1', '-kernel', testGuest(), '-append', APPEND, '-qmp', `unix:${qmpPath},server,nowait`, '-serial', 'stdio'];
  const inc = incoming ? ['-incoming', incoming] : [];
  const proc = kind === 'tsvirt'
    ? hosts!.tsvirt(ns, ['-machine', 'q35', ...common, ...inc])
    : new VmmProcess('ip', ['netns', 'exec', ns, qemu, '-machine', 'q35,accel=kvm', '-nographic', '-nodefaults', ...common, ...inc]);
  live.add(proc);
  const qmp = await QmpClient.connect(qmpPath, 20000);
  await qmp.run('qmp_capabilities');
  return { proc, qmp };
}

async function migrateOnce(kind: Kind, v: Variant): Promise<Result> {
  const uri = `tcp:${hosts!.addrB}:${PORT}`;
  const caps = v.caps.map((capability) => ({ capability, state: true }));
  // QEMU must know about multifd before it listens; tsvirt's destination learns it from the stream.
  const qemuDefer = kind === 'qemu' && v.caps.includes('multifd');
  const dst = await start(kind, hosts!.b, path.join(tmp!, `${kind}-dst.sock`), qemuDefer ? 'defer' : uri);
  const src = await start(kind, hosts!.a, path.join(tmp!, `${kind}-src.sock`));
  try {
    if (qemuDefer) {
      await dst.qmp.run('migrate-set-capabilities', { capabilities: caps });
      await dst.qmp.run('migrate-set-parameters', v.params);
      await dst.qmp.run('migrate-incoming', { uri });
    }
    await src.proc.waitFor(/DIRTY mib=\d+/, 30000);
    for (let i = 0; i < 10; i++) await src.proc.waitFor(/HB seq=\d+ t=\d+ sweeps=\d+/, 10000);
    if (caps.length) await src.qmp.run('migrate-set-capabilities', { capabilities: caps });
    await src.qmp.run('migrate-set-parameters', v.params);
    const t0 = performance.now();
    await src.qmp.run('migrate', { uri });
    let info: any;
    for (;;) {
      info = await src.qmp.run('query-migrate');
      if (['completed', 'failed', 'cancelled'].includes(info.status)) break;
      if (performance.now() - t0 > CAP_MS) {
        await src.qmp.execute('migrate_cancel');
        return { outcome: 'did not converge', sentMiB: info.ram?.transferred / MiB };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (info.status !== 'completed') return { outcome: 'failed', error: info['error-desc'] ?? info.status };
    // QEMU reports completed before its destination runs the guest; a command typed before then would be lost.
    await dst.proc.waitFor(/HB seq=\d+/, 15000);
    dst.proc.send('check\r');
    const m = await dst.proc.waitFor(/CHECK (OK|FAIL|ERROR)[^\n]*/, 30000).catch(() => ['CHECK timed out']);
    return { outcome: 'completed', totalMs: info['total-time'], downtimeMs: info.downtime, sentMiB: info.ram.transferred / MiB, passes: info.ram['dirty-sync-count'], check: m[0] };
  } catch (e) {
    return { outcome: 'failed', error: (e as Error).message.slice(0, 300) };
  } finally {
    for (const vm of [src, dst]) {
      vm.qmp.close();
      await vm.proc.kill();
      live.delete(vm.proc);
    }
  }
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !VARIANTS.some((v) => v.name === w));
  if (unknown.length) {
    console.error(`unknown variant(s): ${unknown.join(', ')}; known: ${VARIANTS.map((v) => v.name).join(', ')}`);
    process.exit(2);
  }
  const variants = wanted.length ? VARIANTS.filter((v) => wanted.includes(v.name)) : VARIANTS;
  qemu = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64 || true'], { encoding: 'utf8' }).trim();
  const kinds: Kind[] = qemu ? ['tsvirt', 'qemu'] : ['tsvirt'];
  testGuest();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-bench-link-'));
  hosts = new TwoHosts('bl', { rate: '1gbit', delay: '1ms' });
  const rtt = hosts.pingRtt(20);
  const link = await hosts.tcpRate(128 * MiB);
  const results = new Map<string, Map<Kind, Result[]>>();
  try {
    for (const v of variants) {
      const per = new Map<Kind, Result[]>(kinds.map((k) => [k, []]));
      results.set(v.name, per);
      for (let i = 0; i < RUNS; i++) {
        for (const k of i % 2 ? [...kinds].reverse() : kinds) {
          const r = await migrateOnce(k, v);
          per.get(k)!.push(r);
          process.stderr.write(`[${v.name} run ${i + 1}/${RUNS}] ${NAME[k]}: ${JSON.stringify(r)}\n`);
        }
      }
    }
  } finally {
    cleanup();
  }
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  console.log(`migration across a shaped link (${when}): namespaces joined by veth through a 1 ms-each-way wire, tbf 1 Gbit/s;`);
  console.log(`measured: ping rtt min ${fmt(rtt.min, 2)} ms, TCP ${fmt(link.mbitPerSecond)} Mbit/s. Guest: ${MEM_MIB} MiB, '${APPEND}'. ${RUNS} run(s), medians.`);
  console.log('');
  console.log('| variant | VMM | completed | total ms | downtime ms | sent MiB | passes | memory check |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const v of variants) {
    const sums = new Map<Kind, { total?: number; down?: number; sent?: number; passes?: number; ok: string; check: string }>();
    for (const k of kinds) {
      const rs = results.get(v.name)!.get(k)!;
      const done = rs.filter((r) => r.outcome === 'completed');
      const others = [...new Set(rs.filter((r) => r.outcome !== 'completed').map((r) => r.outcome))];
      const s = {
        ok: `${done.length}/${rs.length}${others.length ? ` (${others.join(', ')})` : ''}`,
        total: median(done.map((r) => r.totalMs)),
        down: median(done.map((r) => r.downtimeMs)),
        sent: median(done.map((r) => r.sentMiB)),
        passes: median(done.map((r) => r.passes)),
        check: done.every((r) => r.check?.startsWith('CHECK OK')) ? (done.length ? 'OK' : '-') : 'FAILED',
      };
      sums.set(k, s);
      console.log(`| ${v.name} | ${NAME[k]} | ${s.ok} | ${fmt(s.total)} | ${fmt(s.down)} | ${fmt(s.sent, 1)} | ${fmt(s.passes)} | ${s.check} |`);
    }
    if (kinds.length === 2) {
      const a = sums.get('tsvirt')!;
      const b = sums.get('qemu')!;
      console.log(`| ${v.name} | ratio tsvirt/QEMU | | ${ratio(a.total, b.total)} | ${ratio(a.down, b.down)} | ${ratio(a.sent, b.sent)} | | |`);
    }
  }
  console.log('');
  for (const v of variants) console.log(`- ${v.name}: ${v.what}`);
  const bad = [...results.entries()].flatMap(([name, per]) => [...per.entries()].flatMap(([k, rs]) => rs.filter((r) => r.error).map((r) => `- ${name} ${NAME[k]}: ${r.error}`)));
  if (bad.length) console.log(['', 'errors:', ...bad].join('\n'));
}

main().catch((e) => {
  console.error(e);
  cleanup();
  process.exit(1);
});
