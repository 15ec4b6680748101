// Migration between two test hosts (network namespaces joined by veth) over a link shaped to 1 Gbit/s with tbf.

import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../harness/guest.js';
import { waitMigration } from '../harness/migration.js';
import { QmpClient } from '../harness/qmp-client.js';
import { kvmUnavailableReason, skipBecause } from '../harness/skip.js';
import { collectHeartbeats, type VmmProcess } from '../harness/tsvirt-process.js';
import { TwoHosts } from '../harness/two-hosts.js';

describe('migration between two hosts over a shaped link', function () {
  this.timeout(120000);
  let hosts: TwoHosts | undefined;
  let dir: string;
  const procs: VmmProcess[] = [];
  const clients: QmpClient[] = [];
  before(function () {
    const why = kvmUnavailableReason() ?? (process.getuid?.() === 0 ? undefined : 'network namespaces need root');
    if (why) skipBecause(this, why);
    hosts = new TwoHosts('link', { rate: '1gbit' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-2h-'));
  });
  after(async () => {
    clients.forEach((c) => c.close());
    await Promise.all(procs.map((p) => p.kill()));
    hosts?.delete();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('moves a 512 MiB guest with a 32 MiB/s dirtier from host A to host B over tcp, intact', async () => {
    const common = ['-machine', 'q35', '-kernel', testGuest(), '-m', '512'];
    const dstQmp = path.join(dir, 'dst.sock');
    const dst = hosts!.tsvirt(hosts!.b, [...common, '-append', 'console=ttyS0', '-qmp', `unix:${dstQmp},server,nowait`, '-incoming', `tcp:${hosts!.addrB}:4446`]);
    procs.push(dst);
    const srcQmp = path.join(dir, 'src.sock');
    const src = hosts!.tsvirt(hosts!.a, [...common, '-append', 'console=ttyS0 dirty_mib=64 dirty_rate=32', '-qmp', `unix:${srcQmp},server,nowait`]);
    procs.push(src);
    const beats = collectHeartbeats(src);
    const dstBeats = collectHeartbeats(dst);
    const q = await QmpClient.connect(srcQmp, 15000);
    clients.push(q);
    await q.run('qmp_capabilities');
    clients.push(await QmpClient.connect(dstQmp, 15000));
    await src.waitFor(/HB seq=3 .*sweeps=/);
    await q.run('migrate', { uri: `tcp:${hosts!.addrB}:4446` });
    const info = await waitMigration({ proc: src, qmp: q, beats, qmpPath: srcQmp }, ['completed', 'failed'], 90000);
    expect(info.status, info['error-desc']).to.equal('completed');
    // 1 Gbit/s carries at most 125 MB/s: the measured rate shows the shaping is in force.
    expect(info.ram.mbps).to.be.below(1100);
    console.log(`      total ${info['total-time']} ms, downtime ${info.downtime} ms, ${(info.ram.transferred / 1048576).toFixed(1)} MiB at ${info.ram.mbps} Mbit/s, ${info.ram['dirty-sync-count']} syncs`);
    const last = beats[beats.length - 1].seq;
    await dst.waitFor(new RegExp(`HB seq=${last + 2} `), 10000);
    expect(dstBeats[0].seq).to.be.within(last + 1, last + 2);
    dst.send('check\r');
    await dst.waitFor(/CHECK OK/, 30000);
  });
});
