// When a live migration fails, for whatever reason, the source keeps running its guest and says why.

import { expect } from 'chai';
import * as net from 'node:net';
import { requireKvm } from '../harness/skip.js';
import { freePort, VmFleet, waitMigration, type Vm } from '../harness/migration.js';

/** The source still runs its guest: QMP says running and new heartbeats arrive. */
async function expectStillRunning(src: Vm): Promise<void> {
  expect((await src.qmp.run('query-status')).status).to.equal('running');
  const last = src.beats[src.beats.length - 1].seq;
  await src.proc.waitFor(new RegExp(`HB seq=${last + 2} `), 5000);
}

describe('live migration failures', function () {
  this.timeout(90000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  it('fails cleanly when nobody listens at the destination, and the source keeps running', async () => {
    const src = await fleet.start([]);
    await src.proc.waitFor(/HB seq=2 /);
    await src.qmp.run('migrate', { uri: `tcp:127.0.0.1:${await freePort()}` });
    const info = await waitMigration(src, ['failed', 'completed']);
    expect(info.status).to.equal('failed');
    expect(info['error-desc']).to.match(/cannot connect to tcp:127\.0\.0\.1:\d+: ECONNREFUSED/);
    await expectStillRunning(src);
  });

  it('fails cleanly when the destination is killed mid-migration, and the source keeps running', async () => {
    const uri = `unix:${fleet.sock('mig')}`;
    const dst = await fleet.destination(uri);
    const src = await fleet.start([], { append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=2 .*sweeps=/);
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 4 * 1024 * 1024 });
    await src.qmp.run('migrate', { uri });
    await waitMigration(src, ['active']);
    await new Promise((r) => setTimeout(r, 500));
    dst.proc.child.kill('SIGKILL');
    const info = await waitMigration(src, ['failed', 'completed']);
    expect(info.status).to.equal('failed');
    expect(info['error-desc']).to.match(/(closed|EPIPE|ECONNRESET|connection)/);
    await expectStillRunning(src);
  });

  it('cancels an active migration with migrate_cancel, then a second migration to a fresh destination succeeds', async () => {
    const uri1 = `unix:${fleet.sock('mig')}`;
    const dst1 = await fleet.destination(uri1);
    const src = await fleet.start([], { append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=2 .*sweeps=/);
    await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 4 * 1024 * 1024 });
    await src.qmp.run('migrate', { uri: uri1 });
    await waitMigration(src, ['active']);
    expect(await src.qmp.run('migrate_cancel')).to.deep.equal({});
    const info = await waitMigration(src, ['cancelled', 'failed', 'completed']);
    expect(info.status).to.equal('cancelled');
    expect(src.qmp.events.filter((e) => e.event === 'MIGRATION').map((e) => e.data!.status)).to.deep.equal(['setup', 'active', 'cancelling', 'cancelled']);
    await expectStillRunning(src);
    // The abandoned destination gives up without ever running the guest.
    const exit = await dst1.proc.waitExit(10000);
    expect(exit.code).to.not.equal(0);
    expect(dst1.proc.stderr).to.match(/incoming migration failed: source reported: migration cancelled/);

    const uri2 = `tcp:127.0.0.1:${await freePort()}`;
    const dst2 = await fleet.destination(uri2);
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 0 });
    await src.qmp.run('migrate', { uri: uri2 });
    const done = await waitMigration(src, ['completed', 'failed']);
    expect(done.status, done['error-desc']).to.equal('completed');
    dst2.proc.send('check\r');
    await dst2.proc.waitFor(/CHECK OK/, 20000);
  });

  it('cancels at once while writes wait on a destination that stopped reading, and the source keeps running', async () => {
    const uri = `tcp:127.0.0.1:${await freePort()}`;
    const dst = await fleet.destination(uri, { mem: '512' });
    const src = await fleet.start([], { mem: '512', append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=\d+ .*sweeps=/);
    // Capped so it keeps iterating (the guest dirties far faster) until the destination stops.
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 16 * 1024 * 1024 });
    await src.qmp.run('migrate', { uri });
    await waitMigration(src, ['active']);
    // The destination freezes: its socket buffers fill and the source's writes wait for 'drain' that never comes.
    dst.proc.child.kill('SIGSTOP');
    try {
      let before = -1;
      for (;;) {
        await new Promise((r) => setTimeout(r, 300));
        const t = (await src.qmp.run('query-migrate')).ram.transferred;
        if (t === before) break;
        before = t;
      }
      await src.qmp.run('migrate_cancel');
      // Without the abort the wait for 'drain' would last until TCP gave up on the frozen peer (minutes).
      const info = await waitMigration(src, ['cancelled', 'failed', 'completed'], 10000);
      expect(info.status).to.equal('cancelled');
      await expectStillRunning(src);
    } finally {
      dst.proc.child.kill('SIGCONT');
    }
  });

  it('answers migrate_cancel when no migration runs', async () => {
    const src = await fleet.start([]);
    expect(await src.qmp.run('migrate_cancel')).to.deep.equal({});
    expect(await src.qmp.run('query-migrate')).to.deep.equal({ status: 'none' });
  });

  for (const [what, dstOpts, message] of [
    ['memory size', { mem: '128' }, /memory size mismatch: source 256 MiB, destination 128 MiB/],
    ['vCPU count', { smp: '2' }, /vCPU count mismatch: source 1, destination 2/],
  ] as const) {
    it(`refuses a destination with a different ${what}, with the same clear message on both sides`, async () => {
      const uri = `unix:${fleet.sock('mig')}`;
      const dst = await fleet.destination(uri, dstOpts);
      const src = await fleet.start([]);
      await src.proc.waitFor(/HB seq=2 /);
      await src.qmp.run('migrate', { uri });
      const info = await waitMigration(src, ['failed', 'completed']);
      expect(info.status).to.equal('failed');
      expect(info['error-desc']).to.match(message);
      expect(info.ram.transferred).to.be.below(64 * 1024); // refused before any RAM
      const exit = await dst.proc.waitExit(10000);
      expect(exit.code).to.not.equal(0);
      expect(dst.proc.stderr).to.match(message);
      expect(dst.proc.output).to.not.match(/HB seq=/); // the destination never ran the guest
      await expectStillRunning(src);
    });
  }

  it('refuses garbage written into the incoming socket and exits non-zero without running the guest', async () => {
    const path = fleet.sock('mig');
    const dst = await fleet.destination(`unix:${path}`);
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(path, () => {
        c.write(Buffer.from('GET / HTTP/1.1\r\nHost: nonsense\r\n\r\n' + 'x'.repeat(5000)));
        c.end();
        resolve();
      });
      c.on('error', reject);
    });
    const exit = await dst.proc.waitExit(10000);
    expect(exit.code).to.not.equal(0);
    expect(dst.proc.stderr).to.match(/incoming migration failed: .*(magic|not a tsvirt migration stream)/i);
    expect(dst.proc.output).to.not.match(/HB seq=/);
  });
});
