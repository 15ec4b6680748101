// Local migration (capability x-ignore-shared over unix:): the destination maps the source's memory; no page is copied.

import { expect } from 'chai';
import { requireKvm } from '../harness/skip.js';
import { VmFleet, waitMigration } from '../harness/migration.js';

describe('local migration (memory hand-over)', function () {
  this.timeout(90000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  it('moves a 1 GiB guest running the dirtier with under 1 MiB transferred, intact', async () => {
    const uri = `unix:${fleet.sock('local')}`;
    const dst = await fleet.destination(uri, { mem: '1024' });
    const src = await fleet.start([], { mem: '1024', append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=3 .*sweeps=/);
    await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    await src.qmp.run('migrate', { uri });
    const info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status, info['error-desc']).to.equal('completed');
    expect(info.ram.transferred).to.be.below(1024 * 1024);
    expect(info.ram.normal).to.equal(0);
    expect((await src.qmp.run('query-status')).status).to.equal('postmigrate');
    const last = src.beats[src.beats.length - 1].seq;
    await dst.proc.waitFor(new RegExp(`HB seq=${last + 2} `), 10000);
    dst.proc.send('check\r');
    await dst.proc.waitFor(/CHECK OK/, 30000);
  });

  it('is refused over tcp:, before anything starts, and the VM keeps running', async () => {
    const src = await fleet.start([]);
    await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    const r = await src.qmp.execute('migrate', { uri: 'tcp:127.0.0.1:4446' });
    expect(r.error?.class).to.equal('GenericError');
    expect(r.error?.desc).to.match(/x-ignore-shared.*unix socket on the same host/);
    expect(await src.qmp.run('query-migrate')).to.deep.equal({ status: 'none' });
    expect((await src.qmp.run('query-status')).status).to.equal('running');
  });
});
