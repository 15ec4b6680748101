// COM1's fast path on real KVM: the vCPU worker answers THR writes and LSR reads itself, and the console stays byte-exact across pause, resume and live migration.

import { expect } from 'chai';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../harness/guest.js';
import { freePort, VmFleet, waitMigration } from '../harness/migration.js';
import { QmpClient } from '../harness/qmp-client.js';
import { requireKvm } from '../harness/skip.js';
import { VmmProcess } from '../harness/tsvirt-process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** vCPU 0's exit counters, from the line tsvirt logs (TSVIRT_LOG=info) when it quits. */
interface ExitCounts {
  pio: number;
  mmio: number;
  thr: number;
  lsr: number;
  ringFull: number;
}

function exitCounts(stderr: string): ExitCounts {
  const m = stderr.match(/vCPU exits: vcpu0 pio=(\d+) mmio=(\d+) serial-fast thr=(\d+) lsr=(\d+) ring-full=(\d+)/);
  if (!m) throw new Error(`no exit counts in stderr: ${stderr.slice(-800)}`);
  const [pio, mmio, thr, lsr, ringFull] = m.slice(1).map(Number);
  return { pio, mmio, thr, lsr, ringFull };
}

/**
 * Checks that the console text after READY is nothing but whole, consecutive heartbeat lines (and `extra` lines):
 * a byte lost, repeated or reordered anywhere breaks a line or the sequence.
 */
function expectIntactBeats(text: string, extra: RegExp[] = []): number {
  const after = text.slice(text.indexOf('READY\n') + 'READY\n'.length);
  const lines = after.split('\n');
  lines.pop(); // a line still being printed
  let seq = -1;
  for (const line of lines) {
    if (extra.some((re) => re.test(line))) continue;
    const m = line.match(/^HB seq=(\d+) t=\d+$/);
    expect(m, `malformed console line ${JSON.stringify(line)}`).to.not.equal(null);
    const n = Number(m![1]);
    if (seq >= 0) expect(n, `heartbeat after seq=${seq}`).to.equal(seq + 1);
    seq = n;
  }
  return seq;
}

describe('serial fast path', function () {
  this.timeout(90000);
  before(requireKvm);
  const vms: VmmProcess[] = [];
  const clients: QmpClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(vms.splice(0).map((v) => v.kill()));
  });

  /** Boots the test guest with a QMP socket; `fastPath: false` sets TSVIRT_SERIAL_FAST_PATH=off. */
  async function boot(append: string, fastPath = true): Promise<{ vm: VmmProcess; qmp: QmpClient }> {
    const sock = path.join(os.tmpdir(), `tsvirt-sfp-${process.pid}-${vms.length}.sock`);
    const env: NodeJS.ProcessEnv = { TSVIRT_LOG: 'info', ...(fastPath ? {} : { TSVIRT_SERIAL_FAST_PATH: 'off' }) };
    const vm = VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', '128', '-smp', '1', '-append', append,
      '-qmp', `unix:${sock},server,nowait`], env);
    vms.push(vm);
    const qmp = await QmpClient.connect(sock, 15000);
    clients.push(qmp);
    await qmp.run('qmp_capabilities');
    return { vm, qmp };
  }

  /** Quits over QMP and returns the exit counters tsvirt logged. */
  async function quit(vm: VmmProcess, qmp: QmpClient): Promise<ExitCounts> {
    await qmp.execute('quit');
    await vm.waitExit(10000);
    return exitCounts(vm.stderr);
  }

  it('prints heartbeats and answers an echo with the fast path, and the guest posts almost no serial exits to the main thread', async () => {
    const runs: Record<string, { counts: ExitCounts; beats: number; console: string }> = {};
    for (const fastPath of [true, false]) {
      const { vm, qmp } = await boot('console=ttyS0 hb_ms=50', fastPath);
      await vm.waitFor(/HB seq=10 /);
      vm.send('echo through the fast path\r');
      await vm.waitFor(/^ECHO through the fast path$/m);
      const beats = expectIntactBeats(vm.output.slice(0, vm.output.lastIndexOf('\n') + 1), [/^ECHO through the fast path$/]);
      runs[String(fastPath)] = { counts: await quit(vm, qmp), beats, console: vm.output };
    }
    const fast = runs.true.counts;
    const slow = runs.false.counts;
    console.log(`      exits with the fast path: ${JSON.stringify(fast)} (${runs.true.beats + 1} beats); without: ${JSON.stringify(slow)} (${runs.false.beats + 1} beats)`);
    // The boot report is the same byte for byte either way.
    const report = (c: string) => c.slice(0, c.indexOf('READY\n'));
    expect(report(runs.true.console)).to.equal(report(runs.false.console));
    // Every console byte and LSR poll is a port exit without the fast path; with it, almost all stay in the worker.
    expect(slow.thr + slow.lsr).to.equal(0);
    expect(fast.thr).to.be.greaterThan(500);
    expect(fast.lsr).to.be.greaterThan(50);
    expect(fast.ringFull).to.equal(0);
    expect(fast.pio * 10, 'port exits posted to the main thread').to.be.below(fast.thr + fast.lsr);
    expect(slow.pio).to.be.greaterThan(fast.pio * 10);
  });

  it('keeps the console byte-exact across 20 quick stop/cont cycles while the guest prints flat out', async () => {
    const { vm, qmp } = await boot('console=ttyS0 hb_ms=2');
    await vm.waitFor(/HB seq=20 /);
    for (let i = 0; i < 20; i++) {
      await qmp.run('stop');
      // While paused nothing arrives: whatever the guest wrote before the pause is already on the console.
      const paused = vm.output.length;
      await sleep(30);
      expect(vm.output.length, `output while paused (cycle ${i})`).to.equal(paused);
      await qmp.run('cont');
      await sleep(20 + (i % 5) * 7);
    }
    const last = expectIntactBeats(vm.output);
    await vm.waitFor(new RegExp(`HB seq=${last + 5} `));
    expectIntactBeats(vm.output);
    const counts = await quit(vm, qmp);
    expect(counts.thr).to.be.greaterThan(1000);
  });

  it('hands the console over byte-exact in a live migration: source and destination output join into whole lines', async () => {
    const fleet = new VmFleet();
    try {
      const uri = `tcp:127.0.0.1:${await freePort()}`;
      const dst = await fleet.destination(uri);
      const src = await fleet.start([], { append: 'console=ttyS0 hb_ms=2' });
      await src.proc.waitFor(/HB seq=50 /);
      await src.qmp.run('migrate', { uri });
      const info = await waitMigration(src, ['completed', 'failed']);
      expect(info.status, info['error-desc']).to.equal('completed');
      await dst.proc.waitFor(/HB seq=\d+ /);
      // The source's stdout may still be in its pipe: wait until it has stopped growing.
      let length = -1;
      while (length !== src.proc.output.length) {
        length = src.proc.output.length;
        await sleep(200);
      }
      const joined = src.proc.output + dst.proc.output;
      const last = expectIntactBeats(joined);
      expect(last).to.be.greaterThan(50);
    } finally {
      await fleet.cleanup();
    }
  });
});
