// Multifd: RAM over several connections, plain or zlib-compressed, while the guest dirties memory; cancel and retry.

import { expect } from 'chai';
import * as net from 'node:net';
import { requireKvm } from '../harness/skip.js';
import { freePort, type Vm, VmFleet, waitMigration } from '../harness/migration.js';
import { expectMemoryIntact } from '../harness/memory-check.js';


async function enableMultifd(vm: Vm, channels: number, compression: 'none' | 'zlib'): Promise<void> {
  await vm.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: true }, { capability: 'events', state: true }] });
  await vm.qmp.run('migrate-set-parameters', { 'multifd-channels': channels, 'multifd-compression': compression });
}

describe('multifd migration', function () {
  this.timeout(120000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  const cases: { channels: number; compression: 'none' | 'zlib'; transport: 'tcp' | 'unix' }[] = [
    { channels: 2, compression: 'none', transport: 'tcp' },
    { channels: 4, compression: 'none', transport: 'unix' },
    { channels: 2, compression: 'zlib', transport: 'unix' },
    { channels: 4, compression: 'zlib', transport: 'tcp' },
  ];
  for (const { channels, compression, transport } of cases) {
    it(`moves a guest dirtying 64 MiB over ${channels} ${transport} channels with compression ${compression}, memory intact`, async () => {
      const uri = transport === 'unix' ? `unix:${fleet.sock('mfd')}` : `tcp:127.0.0.1:${await freePort()}`;
      const dst = await fleet.destination(uri, { mem: '512' });
      const src = await fleet.start([], { mem: '512', append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
      await src.proc.waitFor(/HB seq=3 .*sweeps=/);
      await enableMultifd(src, channels, compression);
      await src.qmp.run('migrate', { uri });
      const info = await waitMigration(src, ['completed', 'failed']);
      expect(info.status, info['error-desc']).to.equal('completed');
      // Every page went over the data channels; the main stream carried only control and device state.
      expect(info.ram['multifd-bytes']).to.be.greaterThan(0);
      expect(info.ram.transferred - info.ram['multifd-bytes']).to.be.below(1024 * 1024);
      if (compression === 'zlib') {
        // The dirtier's pages hold one counter byte each: deflate makes them a few dozen bytes.
        expect(info.ram['multifd-bytes']).to.be.below(info.ram['normal-bytes'] / 10);
      } else {
        expect(info.ram['multifd-bytes']).to.be.at.least(info.ram['normal-bytes']);
      }
      expect((await dst.qmp.run('query-status')).status).to.equal('running');
      const last = src.beats[src.beats.length - 1];
      await dst.proc.waitFor(new RegExp(`HB seq=${last.seq + 3} `), 30000);
      await expectMemoryIntact(dst);
    });
  }

  it('cancels a multifd migration, keeps the guest running, then a new multifd migration succeeds', async () => {
    const uri1 = `tcp:127.0.0.1:${await freePort()}`;
    const dst1 = await fleet.destination(uri1, { mem: '512' });
    const src = await fleet.start([], { mem: '512', append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=2 .*sweeps=/);
    await enableMultifd(src, 4, 'none');
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 8 * 1024 * 1024 });
    await src.qmp.run('migrate', { uri: uri1 });
    await waitMigration(src, ['active']);
    await new Promise((r) => setTimeout(r, 500));
    expect(await src.qmp.run('migrate_cancel')).to.deep.equal({});
    const info = await waitMigration(src, ['cancelled', 'failed', 'completed']);
    expect(info.status).to.equal('cancelled');
    expect((await src.qmp.run('query-status')).status).to.equal('running');
    const seq = src.beats[src.beats.length - 1].seq;
    await src.proc.waitFor(new RegExp(`HB seq=${seq + 2} `), 10000);
    const exit = await dst1.proc.waitExit(10000);
    expect(exit.code).to.not.equal(0);

    const uri2 = `tcp:127.0.0.1:${await freePort()}`;
    const dst2 = await fleet.destination(uri2, { mem: '512' });
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 0, 'multifd-compression': 'zlib' });
    await src.qmp.run('migrate', { uri: uri2 });
    const done = await waitMigration(src, ['completed', 'failed']);
    expect(done.status, done['error-desc']).to.equal('completed');
    await expectMemoryIntact(dst2);
  });

  it('closes a connection beyond the channels announced, and the migration completes intact', async () => {
    const port = await freePort();
    const dst = await fleet.destination(`tcp:127.0.0.1:${port}`, { mem: '512' });
    const src = await fleet.start([], { mem: '512', append: 'console=ttyS0 dirty_mib=64 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=2 .*sweeps=/);
    await enableMultifd(src, 2, 'none');
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 8 * 1024 * 1024 });
    await src.qmp.run('migrate', { uri: `tcp:127.0.0.1:${port}` });
    await waitMigration(src, ['active']);
    await new Promise((r) => setTimeout(r, 300));
    // Both channels are open by now: a third connection (here a channel preamble of another session) gets no reader
    // thread, no mapping of guest memory, and is closed at once.
    const preamble = Buffer.alloc(32);
    Buffer.from([0x89, 0x54, 0x53, 0x56, 0x43, 0x48, 0x4e, 0x0a]).copy(preamble);
    preamble.writeUInt16LE(1, 8);
    preamble.writeUInt16LE(1, 10);
    preamble.writeUInt16LE(0, 12);
    preamble.writeUInt16LE(2, 14);
    preamble.fill(0xab, 16);
    const stray = net.connect(port, '127.0.0.1');
    stray.on('error', () => {});
    const closed = new Promise((r) => stray.once('close', r));
    stray.write(preamble);
    await closed;
    expect((await src.qmp.run('query-migrate')).status).to.equal('active');
    await src.qmp.run('migrate-set-parameters', { 'max-bandwidth': 0 });
    const info = await waitMigration(src, ['failed', 'completed', 'cancelled'], 30000);
    expect(info.status, info['error-desc']).to.equal('completed');
    await expectMemoryIntact(dst);
  });

  it('refuses zstd compression by name, and keeps the previous parameters', async () => {
    const src = await fleet.start([]);
    const r = await src.qmp.execute('migrate-set-parameters', { 'multifd-compression': 'zstd' });
    expect(r.error?.desc).to.match(/'zstd' is not available in this tsvirt build/);
    expect((await src.qmp.run('query-migrate-parameters'))['multifd-compression']).to.equal('none');
  });
});

describe('QEMU-style destination: -incoming defer, then migrate-incoming', function () {
  this.timeout(120000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  it('waits in inmigrate, takes capabilities, listens on migrate-incoming and receives a multifd migration', async () => {
    const dst = await fleet.start(['-incoming', 'defer']);
    expect((await dst.qmp.run('query-status')).status).to.equal('inmigrate');
    // What QEMU tooling does on a QEMU destination; harmless here.
    await dst.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: true }] });
    await dst.qmp.run('migrate-set-parameters', { 'multifd-channels': 2 });
    const uri = `tcp:127.0.0.1:${await freePort()}`;
    expect(await dst.qmp.run('migrate-incoming', { uri })).to.deep.equal({});
    const again = await dst.qmp.execute('migrate-incoming', { uri });
    expect(again.error?.desc).to.equal('The incoming migration has already been started');
    const src = await fleet.start([], { append: 'console=ttyS0 dirty_mib=16 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=2 .*sweeps=/);
    await enableMultifd(src, 2, 'none');
    const busy = await src.qmp.execute('migrate-incoming', { uri });
    expect(busy.error?.desc).to.equal("'-incoming' was not specified on the command line");
    await src.qmp.run('migrate', { uri });
    const info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status, info['error-desc']).to.equal('completed');
    expect((await dst.qmp.run('query-status')).status).to.equal('running');
    await expectMemoryIntact(dst);
  });

  it('reports a port that cannot be listened on as the command error and keeps waiting', async () => {
    const taken = await fleet.start(['-incoming', 'defer']);
    const dst = await fleet.start(['-incoming', 'defer']);
    const uri = `tcp:127.0.0.1:${await freePort()}`;
    await taken.qmp.run('migrate-incoming', { uri });
    const r = await dst.qmp.execute('migrate-incoming', { uri });
    expect(r.error?.desc).to.match(/cannot listen on tcp:127\.0\.0\.1:\d+: EADDRINUSE/);
    expect((await dst.qmp.run('query-status')).status).to.equal('inmigrate');
    // Its own QMP socket is a live listener: refused, not replaced.
    const own = await dst.qmp.execute('migrate-incoming', { uri: `unix:${dst.qmpPath}` });
    expect(own.error?.desc).to.equal(`cannot listen on unix:${dst.qmpPath}: another listener is using it`);
    expect((await dst.qmp.run('query-status')).status).to.equal('inmigrate');
    const other = `unix:${fleet.sock('defer')}`;
    expect(await dst.qmp.run('migrate-incoming', { uri: other })).to.deep.equal({});
  });
});
