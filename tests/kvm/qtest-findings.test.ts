// Bugs the qtest device tests found in tsvirt, each shown on a real tsvirt in -mod-test mode: these fail until the fixes proposed with them land.
import { expect } from 'chai';
import { BLK_S, BlkDriver, MSI_ADDRESS } from '../harness/qtest-blk.js';
import { QtestVm, SECTOR, sleep, stopAllQtestVms } from '../harness/qtest-vm.js';
import { requireKvm } from '../harness/skip.js';

const DEVFN = 3 << 3;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MASTER = 0x4;

describe('qtest on a real tsvirt: bugs found (fail until fixed)', function () {
  this.timeout(20000);
  let vm: QtestVm | undefined;

  before(requireKvm);

  afterEach(async () => {
    await vm?.stop();
    vm = undefined;
  });

  after(stopAllQtestVms);

  it('does not write a request\'s data into guest memory after device_status has read back 0 (virtio 1.2 §4.1.4.3.2, Linux vp_reset)', async () => {
    // O_DIRECT makes the 4 MiB read take long enough to still be running when the reset arrives.
    const sectors = 8192;
    vm = await QtestVm.start({ disks: [{ slot: 3, sectors: sectors + 64, fill: () => 0x77, driveOptions: 'direct=on' }] });
    const q = vm.client;
    const d = await BlkDriver.probe(q, DEVFN, { base: 0x10_0000, configData: 0x40, queueData: 0x41 });
    let late = 0;
    for (let round = 0; round < 3; round++) {
      await d.init();
      await d.prepare(0, 0, { inLen: sectors * SECTOR });
      // Kick and reset in one turn of tsvirt's loop, as a driver unbinding with I/O in flight would.
      await vm.batch([d.kickCommand, d.resetCommand]);
      // What Linux's vp_reset does: poll device_status until it reads 0; then the driver owns its buffers again.
      for (let i = 0; i < 2000 && (await d.status()) !== 0; i++) await sleep(1);
      expect(await d.status(), 'reset completes').to.equal(0);
      const tail = d.mem.data + sectors * SECTOR - SECTOR;
      await q.memset(tail, SECTOR, 0x11);
      await sleep(100);
      const after = await q.read(tail, SECTOR);
      if (after.some((b) => b !== 0x11)) late++;
      expect(await d.usedIdx(), 'no used entry after reset').to.equal(0);
    }
    expect(late, 'rounds in which the device wrote a buffer the driver had reclaimed after reset').to.equal(0);
  });

  it('neither DMAs nor sends MSI-X while the driver has Bus Master Enable off (PCI: a function may not initiate transactions)', async () => {
    vm = await QtestVm.start({ disks: [{ slot: 3, sectors: 64 }] });
    const q = vm.client;
    const d = await BlkDriver.probe(q, DEVFN, { base: 0x10_0000, configData: 0x40, queueData: 0x41 });
    await d.init();
    const cmd = await q.pciConfigReadw(DEVFN, PCI_COMMAND);
    await q.pciConfigWritew(DEVFN, PCI_COMMAND, cmd & ~PCI_COMMAND_MASTER);
    await d.prepare(0, 1, { inLen: SECTOR });
    await d.kick();
    await sleep(100);
    const seen = {
      usedIdx: await d.usedIdx(),
      status: await q.readb(d.mem.status),
      dataTouched: (await q.read(d.mem.data, SECTOR)).some((b) => b !== 0xcc),
      msis: q.events.filter((e) => e.kind === 'msi').length,
    };
    expect(seen, 'with bus mastering off').to.deep.equal({ usedIdx: 0, status: 0xff, dataTouched: false, msis: 0 });
    // Bus mastering back on: the kick is honoured and the completion signalled.
    await q.pciConfigWritew(DEVFN, PCI_COMMAND, cmd);
    expect(await q.waitForMsi(0x41, 2000)).to.deep.equal({ kind: 'msi', address: MSI_ADDRESS, data: 0x41 });
    expect(await q.readb(d.mem.status)).to.equal(BLK_S.OK);
    expect(await d.usedIdx()).to.equal(1);
  });

  it('qtest read/write/memset reach RAM that spans two RAM regions (a 1 GiB boundary with -m 2048)', async () => {
    vm = await QtestVm.start({ disks: [], memMiB: 2048 });
    const q = vm.client;
    const at = 0x4000_0000 - 8;
    const pattern = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    await q.write(at, pattern);
    expect([...(await q.read(at, 8)), ...(await q.read(at + 8, 8))], 'each half read alone').to.deep.equal([...pattern]);
    expect([...(await q.read(at, 16))], 'read across the boundary').to.deep.equal([...pattern]);
    await q.memset(at, 16, 0x5a);
    expect([...(await q.read(at + 8, 8))], 'memset across the boundary').to.deep.equal(new Array(8).fill(0x5a));
  });
});
