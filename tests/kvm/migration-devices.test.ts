// Live migration of a VM with virtio-blk and virtio-net: the disk keeps every write and the guest keeps answering ping.

import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../harness/guest.js';
import { waitMigration, type Vm } from '../harness/migration.js';
import { GUEST_IP, NetNs } from '../harness/netns.js';
import { QmpClient } from '../harness/qmp-client.js';
import { sectorPattern } from '../harness/sector-pattern.js';
import { kvmUnavailableReason, skipBecause } from '../harness/skip.js';
import { collectHeartbeats, type VmmProcess } from '../harness/tsvirt-process.js';

describe('live migration with virtio-blk and virtio-net', function () {
  this.timeout(120000);
  let ns: NetNs | undefined;
  let dir: string;
  const procs: VmmProcess[] = [];
  const clients: QmpClient[] = [];
  before(function () {
    const why = kvmUnavailableReason() ?? (process.getuid?.() === 0 ? undefined : 'network namespaces need root');
    if (why) skipBecause(this, why);
    ns = new NetNs('mig', { bridgedTaps: 2 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-migdev-'));
  });
  after(async () => {
    clients.forEach((c) => c.close());
    await Promise.all(procs.map((p) => p.kill()));
    ns?.delete();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function start(tap: string, extra: string[]): Promise<Vm> {
    const qmpPath = path.join(dir, `qmp-${procs.length}.sock`);
    const proc = ns!.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', '128', '-append', `console=ttyS0 ip=${GUEST_IP} dirty_mib=16 dirty_rate=2`,
      '-drive', `file=${path.join(dir, 'disk.img')},id=d0`, '-device', 'virtio-blk-pci,drive=d0,id=disk0,addr=0x3,serial=MIGDISK',
      '-netdev', `tap,id=n0,ifname=${tap}`, '-device', 'virtio-net-pci,netdev=n0,id=nic0,mac=52:54:00:12:34:56,addr=0x4',
      '-qmp', `unix:${qmpPath},server,nowait`, ...extra]);
    procs.push(proc);
    const beats = collectHeartbeats(proc);
    const qmp = await QmpClient.connect(qmpPath, 15000);
    clients.push(qmp);
    await qmp.run('qmp_capabilities');
    return { proc, qmp, beats, qmpPath };
  }

  for (const local of [false, true]) {
  it(`keeps every disk write and keeps answering ping across the migration${local ? ' (local: memory handed over)' : ''}`, async () => {
    for (const p of procs.splice(0)) await p.kill();
    clients.splice(0).forEach((c) => c.close());
    fs.writeFileSync(path.join(dir, 'disk.img'), Buffer.alloc(0));
    fs.truncateSync(path.join(dir, 'disk.img'), 16 * 1024 * 1024);
    const uri = `unix:${path.join(dir, `mig-${local}.sock`)}`;
    const src = await start(ns!.tap, []);
    const dst = await start(ns!.extraTaps[0], ['-incoming', uri]);
    await src.proc.waitFor(/READY/, 60000);

    // The writer: 16-sector chunks, chunk k at sector 16k with seed k+1, to whichever VM runs the guest; a command
    // caught by the switch-over is simply sent again (the writes are idempotent).
    let active = src;
    let stopWriting = false;
    let written = 0;
    const writer = (async () => {
      let okSeen = 0;
      const oks = () => (src.proc.output.match(/BLKWRITE OK/g)?.length ?? 0) + (dst.proc.output.match(/BLKWRITE OK/g)?.length ?? 0);
      while (!stopWriting) {
        active.proc.send(`blkwrite 0 ${written * 16} 16 ${written + 1}\r`);
        const deadline = Date.now() + 3000;
        while (oks() <= okSeen && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        if (oks() > okSeen) {
          okSeen = oks();
          written++;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    const ping = spawn('ip', ['netns', 'exec', ns!.name, 'ping', '-i', '0.05', '-W', '1', '-c', '120', GUEST_IP]);
    let pingOut = '';
    ping.stdout.on('data', (d) => (pingOut += d));
    const pingDone = new Promise((r) => ping.on('exit', r));

    let before = 0;
    let during = 0;
    try {
    while (written < 5) await new Promise((r) => setTimeout(r, 50));
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 8 * 1024 * 1024 });
    if (local) await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    before = written;
    await src.qmp.run('migrate', { uri });
    const info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status, info['error-desc']).to.equal('completed');
    if (local) expect(info.ram.transferred).to.be.below(1024 * 1024);
    during = written - before;
    active = dst;
    const after = written;
    while (written < after + 5) await new Promise((r) => setTimeout(r, 50));
    } catch (e) {
      ping.kill('SIGINT');
      throw e;
    } finally {
      stopWriting = true;
    }
    await writer;
    await pingDone;

    // Every chunk written before, during and after reads back right on the destination, and is in the image file.
    for (let k = 0; k < written; k++) {
      dst.proc.send(`blkread 0 ${k * 16} 16 ${k + 1}\r`);
      await dst.proc.waitFor(/BLKREAD (OK|MISMATCH[^\n]*)/);
      expect(dst.proc.output).to.not.match(/BLKREAD MISMATCH/);
    }
    dst.proc.send('blkflush 0\r');
    await dst.proc.waitFor(/BLKFLUSH OK/);
    const image = fs.readFileSync(path.join(dir, 'disk.img'));
    for (let k = 0; k < written; k++) {
      expect(image.subarray(k * 16 * 512, (k + 1) * 16 * 512).equals(sectorPattern(k + 1, k * 16, 16)), `chunk ${k}`).to.equal(true);
    }

    const m = pingOut.match(/(\d+) packets transmitted, (\d+) received/);
    expect(m, pingOut).to.not.equal(null);
    const sent = Number(m![1]);
    const received = Number(m![2]);
    console.log(`      disk chunks written: ${written} (${during} while migrating); ping: ${received}/${sent} answered, ${sent - received} lost`);
    expect(received).to.be.at.least(sent - 20);
    // The last pings went to the guest on the destination and were answered.
    const lastSeqs = [...pingOut.matchAll(/icmp_seq=(\d+)/g)].map((x) => Number(x[1]));
    expect(Math.max(...lastSeqs)).to.be.at.least(sent - 5);
    dst.proc.send('check\r');
    await dst.proc.waitFor(/CHECK OK/, 20000);
  });
  }
});
