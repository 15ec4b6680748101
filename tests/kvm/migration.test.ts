// Live migration between real tsvirt processes on real KVM: the guest keeps its heartbeat, memory and clock.

import { expect } from 'chai';
import { requireKvm } from '../harness/skip.js';
import { freePort, type Vm, VmFleet, waitMigration } from '../harness/migration.js';
import { expectMemoryIntact } from '../harness/memory-check.js';
import type { Heartbeat } from '../harness/tsvirt-process.js';

/** Checks the heartbeat handover: the destination continues with the next sequence numbers and a consistent clock. */
async function expectHandover(src: Vm, dst: Vm): Promise<void> {
  const last = src.beats[src.beats.length - 1];
  await dst.proc.waitFor(new RegExp(`HB seq=${last.seq + 3} `), 30000);
  const first = dst.beats.find((b) => b.seq > last.seq) as Heartbeat;
  // Nothing lost, nothing repeated: the first full beat after the source's last is the next one (a beat printed
  // during the switch-over may be split between the two consoles, so one may be unreadable).
  expect(first.seq).to.be.within(last.seq + 1, last.seq + 2);
  expect(dst.beats.every((b, i) => i === 0 || b.seq === dst.beats[i - 1].seq + 1)).to.equal(true);
  // Guest time advanced by about the wall time between the two lines: neither stopped nor jumped.
  const guestMs = Number(first.t - last.t) / 1e6;
  const hostMs = first.at - last.at;
  expect(guestMs).to.be.within(hostMs - 150, hostMs + 150);
}


describe('live migration', function () {
  this.timeout(120000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  for (const transport of ['unix', 'tcp'] as const) {
    it(`moves an idle guest over ${transport}: and the heartbeat continues on the destination`, async () => {
      const uri = transport === 'unix' ? `unix:${fleet.sock('mig')}` : `tcp:127.0.0.1:${await freePort()}`;
      const dst = await fleet.destination(uri);
      expect((await dst.qmp.run('query-status')).status).to.equal('inmigrate');
      const src = await fleet.start([]);
      await src.proc.waitFor(/HB seq=3 /);
      await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
      expect(await src.qmp.run('migrate', { uri })).to.deep.equal({});
      const info = await waitMigration(src, ['completed', 'failed']);
      expect(info.status, info['error-desc']).to.equal('completed');
      expect(info.ram.total).to.equal(256 * 1024 * 1024);
      expect(info.ram.transferred).to.be.below(8 * 1024 * 1024); // untouched pages are never sent
      expect(info.downtime).to.be.a('number');
      expect((await src.qmp.run('query-status')).status).to.equal('postmigrate');
      expect((await dst.qmp.run('query-status')).status).to.equal('running');
      expect(src.qmp.events.filter((e) => e.event === 'MIGRATION').map((e) => e.data!.status)).to.deep.equal(['setup', 'active', 'completed']);
      await expectHandover(src, dst);
      // A completed migration cannot be repeated: the guest has left.
      const again = await src.qmp.execute('migrate', { uri });
      expect(again.error?.desc).to.match(/already migrated/);
      const cont = await src.qmp.execute('cont');
      expect(cont.error?.class).to.equal('GenericError');
    });
  }

  it('moves a guest dirtying 64 MiB flat out, and its memory self-check passes on the destination', async () => {
    const uri = `tcp:127.0.0.1:${await freePort()}`;
    const dst = await fleet.destination(uri);
    const src = await fleet.start([], { append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=5 .*sweeps=/);
    await src.qmp.run('migrate', { uri });
    const info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status, info['error-desc']).to.equal('completed');
    await expectHandover(src, dst);
    await expectMemoryIntact(dst);
  });

  it('keeps iterating while the limits forbid convergence, then completes once they allow it', async () => {
    const uri = `unix:${fleet.sock('mig')}`;
    const dst = await fleet.destination(uri);
    const src = await fleet.start([], { append: 'console=ttyS0 dirty_mib=16 dirty_rate=40' });
    await src.proc.waitFor(/HB seq=3 .*sweeps=/);
    await src.qmp.run('migrate-set-parameters', { 'downtime-limit': 1, 'max-bandwidth': 8 * 1024 * 1024 });
    await src.qmp.run('migrate', { uri });
    const deadline = Date.now() + 60000;
    let info = await waitMigration(src, ['active']);
    while (info.ram['dirty-sync-count'] < 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      info = await src.qmp.run('query-migrate');
      expect(info.status).to.equal('active');
    }
    expect(info['expected-downtime']).to.be.a('number');
    await src.qmp.run('migrate-set-parameters', { 'downtime-limit': 300, 'max-bandwidth': 0 });
    info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status, info['error-desc']).to.equal('completed');
    expect(info.ram['dirty-sync-count']).to.be.greaterThan(3);
    await expectHandover(src, dst);
    await expectMemoryIntact(dst);
  });

  it('migrates the same dirtying guest back and forth 10 times, intact', async () => {
    let current = await fleet.start([], { append: 'console=ttyS0 dirty_mib=32 dirty_rate=0' });
    await current.proc.waitFor(/HB seq=3 .*sweeps=/);
    for (let i = 0; i < 10; i++) {
      const uri = i % 2 ? `unix:${fleet.sock('pp')}` : `tcp:127.0.0.1:${await freePort()}`;
      const next = await fleet.destination(uri);
      await current.qmp.run('migrate', { uri });
      const info = await waitMigration(current, ['completed', 'failed']);
      expect(info.status, `migration ${i + 1}: ${info['error-desc']}`).to.equal('completed');
      await expectHandover(current, next);
      await current.qmp.run('quit');
      current = next;
    }
    await expectMemoryIntact(current);
  });
});
