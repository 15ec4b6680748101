// Auto-converge: a guest dirtying memory faster than the link carries never converges without it, and does with it.

import { expect } from 'chai';
import { requireKvm } from '../harness/skip.js';
import { VmFleet, waitMigration } from '../harness/migration.js';

describe('auto-converge', function () {
  this.timeout(120000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  // 64 MiB/s of dirtying against a 24 MiB/s link: without throttling the dirty set never shrinks.
  const append = 'console=ttyS0 dirty_mib=64 dirty_rate=64';
  const params = { 'downtime-limit': 300, 'max-bandwidth': 24 * 1024 * 1024 };

  it('times out without auto-converge, and the VM stays on the source, running', async () => {
    const uri = `unix:${fleet.sock('mig')}`;
    await fleet.destination(uri);
    const src = await fleet.start([], { append });
    await src.proc.waitFor(/HB seq=3 .*sweeps=/);
    await src.qmp.run('migrate-set-parameters', { ...params, 'x-migration-timeout': 6 });
    await src.qmp.run('migrate', { uri });
    const info = await waitMigration(src, ['failed', 'completed'], 30000);
    expect(info.status).to.equal('failed');
    expect(info['error-desc']).to.match(/did not converge.*6 s migration timeout/);
    expect(info.ram['dirty-sync-count']).to.be.greaterThan(2);
    expect((await src.qmp.run('query-status')).status).to.equal('running');
    const last = src.beats[src.beats.length - 1].seq;
    await src.proc.waitFor(new RegExp(`HB seq=${last + 2} `), 5000);
  });

  it('completes with auto-converge: the throttle rises pass by pass, returns to 0, and memory is intact', async () => {
    const uri = `unix:${fleet.sock('mig')}`;
    const dst = await fleet.destination(uri);
    const src = await fleet.start([], { append });
    await src.proc.waitFor(/HB seq=3 .*sweeps=/);
    await src.qmp.run('migrate-set-parameters', { ...params, 'x-migration-timeout': 90 });
    await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }] });
    await src.qmp.run('migrate', { uri });
    const seen: number[] = [];
    let info;
    for (;;) {
      info = await src.qmp.run('query-migrate');
      if (info.status !== 'active' && info.status !== 'setup') break;
      const pct = info['cpu-throttle-percentage'];
      if (typeof pct === 'number' && pct !== seen[seen.length - 1]) seen.push(pct);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(info.status, info['error-desc']).to.equal('completed');
    expect(info['cpu-throttle-percentage']).to.equal(0);
    const rising = seen.filter((p) => p > 0);
    expect(rising.length, `throttle steps seen: ${seen}`).to.be.greaterThan(0);
    for (let i = 1; i < rising.length; i++) expect(rising[i]).to.be.greaterThan(rising[i - 1]);
    // The guest's largest heartbeat gap is a performance figure (the 200 ms target), reported, not asserted:
    // at 99 % the guest has 1 % of a CPU, so its own loop slows down however short each park is.
    let worst = 0;
    for (let i = 1; i < src.beats.length; i++) worst = Math.max(worst, src.beats[i].at - src.beats[i - 1].at);
    console.log(`      throttle steps: ${seen.join(', ')}; largest heartbeat gap on the source: ${worst.toFixed(0)} ms`);
    dst.proc.send('check\r');
    await dst.proc.waitFor(/CHECK OK/, 30000);
  });
});
