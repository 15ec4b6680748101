// calc-dirty-rate / query-dirty-rate measure how fast the guest dirties memory, before any migration starts.

import { expect } from 'chai';
import { requireKvm } from '../harness/skip.js';
import { VmFleet } from '../harness/migration.js';

async function measure(vm: Awaited<ReturnType<VmFleet['start']>>): Promise<any> {
  expect(await vm.qmp.run('calc-dirty-rate', { 'calc-time': 1 })).to.deep.equal({});
  expect((await vm.qmp.run('query-dirty-rate')).status).to.equal('measuring');
  for (;;) {
    const r = await vm.qmp.run('query-dirty-rate');
    if (r.status === 'measured') return r;
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe('dirty-rate measurement', function () {
  this.timeout(60000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  it('reports about the rate the guest dirties at, and close to nothing for an idle guest', async () => {
    const busy = await fleet.start([], { append: 'console=ttyS0 dirty_mib=64 dirty_rate=32' });
    await busy.proc.waitFor(/HB seq=3 .*sweeps=/);
    const r = await measure(busy);
    // 32 MiB/s of distinct pages is 33.5 MB/s; allow for the guest's pacing and timer slack.
    expect(r['dirty-rate']).to.be.within(20, 50);
    expect(r['calc-time']).to.equal(1);
    expect(r.mode).to.equal('dirty-bitmap');
    const idle = await fleet.start([]);
    await idle.proc.waitFor(/HB seq=3 /);
    expect((await measure(idle))['dirty-rate']).to.be.below(2);
    // A migration cannot start in the middle of a measurement.
    await idle.qmp.run('calc-dirty-rate', { 'calc-time': 2 });
    const refused = await idle.qmp.execute('migrate', { uri: 'unix:/nonexistent.sock' });
    expect(refused.error?.desc).to.match(/dirty rate measurement is running/);
  });
});
