// XBZRLE: pages the guest keeps re-dirtying go as small deltas, so a migration converges where whole pages cannot.

import { expect } from 'chai';
import { requireKvm } from '../harness/skip.js';
import { freePort, VmFleet, waitMigration } from '../harness/migration.js';

describe('XBZRLE migration', function () {
  this.timeout(120000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  it('converges with xbzrle where the same guest and link time out without it, memory intact', async () => {
    // 32 MiB re-dirtied at 40 MiB/s over a 16 MiB/s cap: whole pages can never catch up.
    const src = await fleet.start([], { append: 'console=ttyS0 dirty_mib=32 dirty_rate=40' });
    await src.proc.waitFor(/HB seq=3 .*sweeps=/);
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 16 * 1024 * 1024, 'downtime-limit': 100, 'x-migration-timeout': 6 });

    const uri1 = `tcp:127.0.0.1:${await freePort()}`;
    const dst1 = await fleet.destination(uri1);
    await src.qmp.run('migrate', { uri: uri1 });
    const timedOut = await waitMigration(src, ['completed', 'failed'], 30000);
    expect(timedOut.status).to.equal('failed');
    expect(timedOut['error-desc']).to.match(/did not converge/);
    expect((await src.qmp.run('query-status')).status).to.equal('running');
    await dst1.proc.waitExit(10000);

    const uri2 = `tcp:127.0.0.1:${await freePort()}`;
    const dst2 = await fleet.destination(uri2);
    await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'xbzrle', state: true }] });
    await src.qmp.run('migrate', { uri: uri2 });
    const info = await waitMigration(src, ['completed', 'failed'], 30000);
    expect(info.status, info['error-desc']).to.equal('completed');
    const cache = info['xbzrle-cache'];
    expect(cache['cache-size']).to.equal(64 * 1024 * 1024);
    expect(cache.pages).to.be.greaterThan(1000);
    // Each delta is a few bytes: one counter byte changed per page.
    expect(cache.bytes / cache.pages).to.be.below(16);
    expect(cache['encoding-rate']).to.be.greaterThan(100);
    dst2.proc.send('check\r');
    const m = await dst2.proc.waitFor(/CHECK (OK|FAIL)[^\n]*/, 30000);
    expect(m[0]).to.match(/^CHECK OK pages=8192 /);
  });

  it('refuses xbzrle together with multifd, as QEMU does, and a cache larger than the guest', async () => {
    const src = await fleet.start([]);
    const big = await src.qmp.execute('migrate-set-parameters', { 'xbzrle-cache-size': 512 * 1024 * 1024 });
    expect(big.error?.desc).to.equal("Parameter 'xbzrle-cache-size' (536870912) exceeds the guest's RAM (268435456 bytes)");
    await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: true }] });
    const r = await src.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'xbzrle', state: true }] });
    expect(r.error?.desc).to.match(/'xbzrle' is not compatible with capability 'multifd'/);
  });
});
