// A real tsvirt in -mod-test mode, its virtio-blk disks driven over the qtest socket: read/write/flush/get-id against the image on the host, readonly, out-of-range sectors, two disks at once.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import {
  BLK_S, BLK_T, BlkDriver, VIRTIO_BLK_F_RO, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, COMMON,
} from '../harness/qtest-blk.js';
import { QtestVm, SECTOR, sleep, stopAllQtestVms } from '../harness/qtest-vm.js';
import { requireKvm } from '../harness/skip.js';

const SECTORS = 2048;

/** Stops `vm` and checks it was alive until then and exited 0 when the test disconnected. */
async function stopChecked(vm: QtestVm | undefined, failed: boolean): Promise<void> {
  if (!vm) return;
  const wasRunning = vm.running;
  const exit = await vm.stop();
  if (failed) return;
  expect(wasRunning, `tsvirt died during the test; stderr: ${vm.proc.stderr}`).to.equal(true);
  expect(exit, `tsvirt's exit; stderr: ${vm.proc.stderr}`).to.deep.equal({ code: 0, signal: null });
}

describe('qtest on a real tsvirt: virtio-blk I/O against the host image', function () {
  this.timeout(20000);
  let vm: QtestVm;
  let d: BlkDriver;

  before(requireKvm);

  beforeEach(async () => {
    vm = await QtestVm.start({ disks: [{ slot: 3, sectors: SECTORS, serial: 'QT-DISK-0001' }] });
    d = await BlkDriver.probe(vm.client, 3 << 3, { base: 0x10_0000, configData: 0x40, queueData: 0x41 });
    await d.init();
  });

  afterEach(async function () {
    await stopChecked(vm, this.currentTest?.state === 'failed');
  });

  after(stopAllQtestVms);

  it('exposes the image size as capacity, with blk_size and seg_max, in the device configuration', async () => {
    const q = vm.client;
    expect(await q.readq(d.deviceCfg), 'capacity in sectors').to.equal(BigInt(SECTORS));
    expect(await q.readl(d.deviceCfg + 12n), 'seg_max').to.equal(254);
    expect(await q.readl(d.deviceCfg + 20n), 'blk_size').to.equal(512);
  });

  it('reads sectors the host file holds (one sector, eight sectors) and returns the written length in the used element', async () => {
    const image = vm.image();
    const one = await d.read(5);
    expect(one.status).to.equal(BLK_S.OK);
    expect(one.usedLen, 'data + status byte').to.equal(SECTOR + 1);
    expect(one.usedId, 'head descriptor').to.equal(0);
    expect(Buffer.from(one.data!).equals(image.subarray(5 * SECTOR, 6 * SECTOR))).to.equal(true);
    const eight = await d.read(SECTORS - 8, 8);
    expect(eight.status).to.equal(BLK_S.OK);
    expect(eight.usedLen).to.equal(8 * SECTOR + 1);
    expect(Buffer.from(eight.data!).equals(image.subarray((SECTORS - 8) * SECTOR))).to.equal(true);
  });

  it('returns the serial for GET_ID, zero padded to 20 bytes', async () => {
    const r = await d.getId();
    expect(r.status).to.equal(BLK_S.OK);
    expect(r.usedLen).to.equal(21);
    const expected = Buffer.alloc(20);
    expected.write('QT-DISK-0001');
    expect(Buffer.from(r.data!)).to.deep.equal(expected);
  });

  it('writes a pattern, reads it back through the device, and after FLUSH the image file on the host holds it', async () => {
    const original = vm.image();
    const pattern = randomBytes(8 * SECTOR);
    const w = await d.write(100, pattern);
    expect(w.status).to.equal(BLK_S.OK);
    expect(w.usedLen, 'a write returns only the status byte').to.equal(1);
    const r = await d.read(100, 8);
    expect(r.status).to.equal(BLK_S.OK);
    expect(Buffer.from(r.data!).equals(pattern), 'read back through the device').to.equal(true);
    const f = await d.flush();
    expect(f.status).to.equal(BLK_S.OK);
    expect(f.usedLen).to.equal(1);
    const now = vm.image();
    expect(now.length, 'image size').to.equal(original.length);
    expect(now.subarray(100 * SECTOR, 108 * SECTOR).equals(pattern), 'on the host after flush').to.equal(true);
    expect(now.subarray(0, 100 * SECTOR).equals(original.subarray(0, 100 * SECTOR)), 'sectors before untouched').to.equal(true);
    expect(now.subarray(108 * SECTOR).equals(original.subarray(108 * SECTOR)), 'sectors after untouched').to.equal(true);
  });

  it('gathers and scatters across descriptors of odd sizes: a split header, data in 100+412+1024 bytes, then status', async () => {
    const q = vm.client;
    const m = d.mem;
    const pattern = randomBytes(3 * SECTOR);
    // OUT to sector 300: header as two 8-byte descriptors, the payload in three pieces at scattered addresses.
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(BLK_T.OUT, 0);
    hdr.writeBigUInt64LE(300n, 8);
    await q.write(m.header, hdr);
    const pieces = [{ at: m.data + 0x3000, len: 100 }, { at: m.data + 0x1000, len: 412 }, { at: m.data + 0x5000, len: 1024 }];
    let off = 0;
    for (const p of pieces) {
      await q.write(p.at, pattern.subarray(off, off + p.len));
      off += p.len;
    }
    await q.writeb(m.status, 0xff);
    const chain = [
      { addr: BigInt(m.header), len: 8, flags: 0 },
      { addr: BigInt(m.header + 8), len: 8, flags: 0 },
      ...pieces.map((p) => ({ addr: BigInt(p.at), len: p.len, flags: 0 })),
      { addr: BigInt(m.status), len: 1, flags: VIRTQ_DESC_F_WRITE },
    ];
    // Descriptors in a shuffled order within the table (heads and next pointers need not be consecutive).
    const slots = [9, 2, 14, 5, 11, 0];
    for (const [i, dsc] of chain.entries()) {
      await d.writeDesc(m.ring.desc, slots[i], { ...dsc, flags: dsc.flags | (i + 1 < chain.length ? VIRTQ_DESC_F_NEXT : 0), next: slots[i + 1] ?? 0 });
    }
    const before = await d.usedIdx();
    await d.publish(slots[0]);
    await d.kick();
    const c = await d.completion(before);
    expect(c.status).to.equal(BLK_S.OK);
    expect(c.usedId, 'used id is the head').to.equal(9);

    // Read it back scattered the other way round: 1024 + 512 bytes.
    const r1 = await d.read(300, 3);
    expect(Buffer.from(r1.data!).equals(pattern)).to.equal(true);
    expect((await d.flush()).status).to.equal(BLK_S.OK);
    expect(vm.image().subarray(300 * SECTOR, 303 * SECTOR).equals(pattern)).to.equal(true);
  });

  it('reads through an indirect descriptor table (VIRTIO_RING_F_INDIRECT_DESC)', async () => {
    const q = vm.client;
    const m = d.mem;
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(BLK_T.IN, 0);
    hdr.writeBigUInt64LE(42n, 8);
    await q.write(m.header, hdr);
    await q.writeb(m.status, 0xff);
    const table = [
      { addr: BigInt(m.header), len: 16, flags: VIRTQ_DESC_F_NEXT, next: 1 },
      { addr: BigInt(m.data), len: 256, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 },
      { addr: BigInt(m.data + 0x800), len: 256, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 3 },
      { addr: BigInt(m.status), len: 1, flags: VIRTQ_DESC_F_WRITE },
    ];
    for (const [i, t] of table.entries()) await d.writeDesc(m.indirect, i, t);
    await d.writeDesc(m.ring.desc, 0, { addr: BigInt(m.indirect), len: table.length * 16, flags: VIRTQ_DESC_F_INDIRECT });
    const before = await d.usedIdx();
    await d.publish(0);
    await d.kick();
    const c = await d.completion(before);
    expect(c.status).to.equal(BLK_S.OK);
    expect(c.usedLen).to.equal(513);
    const want = vm.image().subarray(42 * SECTOR, 43 * SECTOR);
    expect(Buffer.from(await q.read(m.data, 256)).equals(want.subarray(0, 256))).to.equal(true);
    expect(Buffer.from(await q.read(m.data + 0x800, 256)).equals(want.subarray(256))).to.equal(true);
  });

  it('completes several requests published under one kick, each with its own used element', async () => {
    const q = vm.client;
    const m = d.mem;
    // Five reads of one sector each, descriptors 3k..3k+2, headers 32 bytes apart, statuses 1 apart.
    for (let k = 0; k < 5; k++) {
      const hdr = Buffer.alloc(16);
      hdr.writeUInt32LE(BLK_T.IN, 0);
      hdr.writeBigUInt64LE(BigInt(50 + k), 8);
      await q.write(m.header + 32 * k, hdr);
      await q.writeb(m.status + k, 0xff);
      await d.writeDesc(m.ring.desc, 3 * k, { addr: BigInt(m.header + 32 * k), len: 16, flags: VIRTQ_DESC_F_NEXT, next: 3 * k + 1 });
      await d.writeDesc(m.ring.desc, 3 * k + 1, { addr: BigInt(m.data + SECTOR * k), len: SECTOR, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 3 * k + 2 });
      await d.writeDesc(m.ring.desc, 3 * k + 2, { addr: BigInt(m.status + k), len: 1, flags: VIRTQ_DESC_F_WRITE });
      await d.publish(3 * k);
    }
    await d.kick();
    for (let i = 0; i < 200 && (await d.usedIdx()) < 5; i++) await sleep(5);
    expect(await d.usedIdx()).to.equal(5);
    const ids = [];
    for (let n = 0; n < 5; n++) ids.push((await d.usedElem(n)).id);
    expect([...ids].sort((a, b) => a - b), 'every head once, in any order').to.deep.equal([0, 3, 6, 9, 12]);
    expect([...(await q.read(m.status, 5))]).to.deep.equal([0, 0, 0, 0, 0]);
    const image = vm.image();
    expect(Buffer.from(await q.read(m.data, 5 * SECTOR)).equals(image.subarray(50 * SECTOR, 55 * SECTOR))).to.equal(true);
    expect(q.events.some((e) => e.kind === 'msi' && e.data === 0x41), 'at least one queue interrupt').to.equal(true);
  });

  it('with VIRTIO_RING_F_EVENT_IDX, publishes avail_event and interrupts only when used_event asks', async () => {
    const q = vm.client;
    const ring = d.mem.ring;
    const usedEvent = ring.avail + 4n + BigInt(2 * ring.size);
    const availEvent = ring.used + 4n + BigInt(8 * ring.size);
    await d.reset();
    await d.init(VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX);
    expect((await d.read(1)).status, 'the first completion always interrupts').to.equal(BLK_S.OK);
    expect(await q.readw(availEvent), 'avail_event: the next avail index').to.equal(1);
    // used_event 5: no interrupt until the used index moves past 5.
    await q.writew(usedEvent, 5);
    for (let n = 2; n <= 6; n++) {
      await d.prepare(BLK_T.IN, n, { inLen: SECTOR });
      await d.kick();
      for (let i = 0; i < 200 && (await d.usedIdx()) < n; i++) await sleep(2);
      expect(await d.usedIdx()).to.equal(n);
      expect(await q.readb(d.mem.status)).to.equal(BLK_S.OK);
      if (n < 6) {
        await sleep(20);
        expect(q.events, `no interrupt at used idx ${n}`).to.deep.equal([]);
      }
    }
    expect((await q.waitForMsi(0x41, 2000)).data, 'interrupt when used idx passed used_event').to.equal(0x41);
    expect(await q.readw(availEvent)).to.equal(6);
  });

  it('answers an unknown request type with UNSUPP', async () => {
    const r = await d.request(0x7f, 0, { inLen: SECTOR });
    expect(r.status).to.equal(BLK_S.UNSUPP);
    expect(r.usedLen).to.equal(1);
  });

  it('fails requests beyond the end of the disk with IOERR and leaves the image alone', async () => {
    const original = vm.image();
    const cases: [string, () => ReturnType<BlkDriver['request']>][] = [
      ['read at the capacity', () => d.read(SECTORS)],
      ['read straddling the end', () => d.read(SECTORS - 1, 2)],
      ['read at sector 2^63', () => d.request(BLK_T.IN, 1n << 63n, { inLen: SECTOR })],
      ['read at sector 2^64-1', () => d.request(BLK_T.IN, (1n << 64n) - 1n, { inLen: SECTOR })],
      ['write at the capacity', () => d.write(SECTORS, randomBytes(SECTOR))],
      ['write straddling the end', () => d.write(SECTORS - 1, randomBytes(2 * SECTOR))],
      ['write at sector 2^64-1', () => d.request(BLK_T.OUT, (1n << 64n) - 1n, { out: randomBytes(SECTOR) })],
      ['read of a partial sector', () => d.request(BLK_T.IN, 0, { inLen: 100 })],
    ];
    for (const [what, run] of cases) {
      const r = await run();
      expect(r.status, what).to.equal(BLK_S.IOERR);
      expect(r.usedLen, `${what}: nothing written but the status`).to.equal(1);
    }
    // The last sector itself is fine.
    const last = await d.read(SECTORS - 1);
    expect(last.status).to.equal(BLK_S.OK);
    expect((await d.flush()).status).to.equal(BLK_S.OK);
    expect(vm.image().equals(original), 'image unchanged, same size').to.equal(true);
    expect(vm.running).to.equal(true);
  });
});

describe('qtest on a real tsvirt: a readonly virtio-blk disk', function () {
  this.timeout(20000);
  let vm: QtestVm;

  before(requireKvm);

  afterEach(async function () {
    await stopChecked(vm, this.currentTest?.state === 'failed');
  });

  after(stopAllQtestVms);

  it('offers VIRTIO_BLK_F_RO, reads, flushes, and fails writes with IOERR leaving the file unchanged', async () => {
    vm = await QtestVm.start({ disks: [{ slot: 3, sectors: 256, readonly: true, serial: 'RO' }] });
    const q = vm.client;
    const original = vm.image();
    const d = await BlkDriver.probe(q, 3 << 3, { base: 0x10_0000, configData: 0x40, queueData: 0x41 });
    await q.writel(d.common + BigInt(COMMON.DFSELECT), 0);
    expect(((await q.readl(d.common + BigInt(COMMON.DF))) >>> 5) & 1, 'VIRTIO_BLK_F_RO offered').to.equal(1);
    await d.init(VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_BLK_F_RO);

    const r = await d.read(9);
    expect(r.status).to.equal(BLK_S.OK);
    expect(Buffer.from(r.data!).equals(original.subarray(9 * SECTOR, 10 * SECTOR))).to.equal(true);
    for (const sector of [0, 9, 255]) {
      const w = await d.write(sector, Buffer.alloc(SECTOR, 0xee));
      expect(w.status, `write to sector ${sector}`).to.equal(BLK_S.IOERR);
      expect(w.usedLen).to.equal(1);
    }
    expect((await d.flush()).status, 'flush of a readonly disk').to.equal(BLK_S.OK);
    const again = await d.read(9);
    expect(Buffer.from(again.data!).equals(original.subarray(9 * SECTOR, 10 * SECTOR)), 'device still reads the old data').to.equal(true);
    expect(vm.image().equals(original), 'image file unchanged').to.equal(true);
  });
});

describe('qtest on a real tsvirt: two virtio-blk disks at once', function () {
  this.timeout(20000);
  let vm: QtestVm;

  before(requireKvm);

  afterEach(async function () {
    await stopChecked(vm, this.currentTest?.state === 'failed');
  });

  after(stopAllQtestVms);

  it('drives both with their own BARs, vectors, rings and images; requests in flight on both at once; a broken one does not disturb the other', async () => {
    vm = await QtestVm.start({
      disks: [{ slot: 3, sectors: 512, serial: 'DISK-A' }, { slot: 6, sectors: 1024, serial: 'DISK-B' }],
    });
    const q = vm.client;
    const a = await BlkDriver.probe(q, 3 << 3, { base: 0x10_0000, configData: 0x50, queueData: 0x51 });
    const b = await BlkDriver.probe(q, 6 << 3, { base: 0x30_0000, configData: 0x60, queueData: 0x61, msiAddress: 0xfee0_1000n });
    expect(a.bars.get(4)).to.not.equal(b.bars.get(4));
    expect(a.bars.get(1)).to.not.equal(b.bars.get(1));
    await a.init();
    await b.init();
    expect(await q.readq(a.deviceCfg)).to.equal(512n);
    expect(await q.readq(b.deviceCfg)).to.equal(1024n);

    // The same sector on both, both kicked before either completion is awaited.
    await a.prepare(BLK_T.IN, 7, { inLen: SECTOR });
    await b.prepare(BLK_T.IN, 7, { inLen: SECTOR });
    await a.kick();
    await b.kick();
    const [ca, cb] = [await a.completion(0, SECTOR), await b.completion(0, SECTOR)];
    expect([ca.status, cb.status]).to.deep.equal([BLK_S.OK, BLK_S.OK]);
    expect(Buffer.from(ca.data!).equals(vm.image(0).subarray(7 * SECTOR, 8 * SECTOR)), 'disk A data').to.equal(true);
    expect(Buffer.from(cb.data!).equals(vm.image(1).subarray(7 * SECTOR, 8 * SECTOR)), 'disk B data').to.equal(true);
    expect(Buffer.from(ca.data!).equals(Buffer.from(cb.data!)), 'the images differ').to.equal(false);

    const idA = await a.getId();
    const idB = await b.getId();
    expect(Buffer.from(idA.data!).toString('latin1').replace(/\0+$/, '')).to.equal('DISK-A');
    expect(Buffer.from(idB.data!).toString('latin1').replace(/\0+$/, '')).to.equal('DISK-B');

    // A write to B reaches only B's file.
    const imageA = vm.image(0);
    const pattern = randomBytes(2 * SECTOR);
    expect((await b.write(1000, pattern)).status).to.equal(BLK_S.OK);
    expect((await b.flush()).status).to.equal(BLK_S.OK);
    expect(vm.image(1).subarray(1000 * SECTOR, 1002 * SECTOR).equals(pattern)).to.equal(true);
    expect(vm.image(0).equals(imageA)).to.equal(true);
    // Sector 1000 is beyond A's end.
    expect((await a.write(1000, pattern)).status).to.equal(BLK_S.IOERR);

    // A malformed chain on A: A needs a reset, B carries on.
    await a.publish(99);
    await a.kick();
    expect((await q.waitForMsi(0x50, 2000)).address).to.equal(0xfee0_0000n);
    expect(await a.status() & 0x40).to.equal(0x40);
    expect(await b.status() & 0x40).to.equal(0);
    const rb = await b.read(1000, 2);
    expect(Buffer.from(rb.data!).equals(pattern)).to.equal(true);
    await a.reset();
    await a.init();
    expect((await a.read(1)).status).to.equal(BLK_S.OK);
    expect(q.events.filter((e) => e.kind === 'msi'), 'no stray interrupts').to.deep.equal([]);
  });
});
