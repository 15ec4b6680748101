// A real tsvirt in -mod-test mode, driven over its qtest socket like firmware and a guest driver: PCI enumeration, BARs, capabilities, feature negotiation, queue setup, MSI-X, device reset.
import { expect } from 'chai';
import { VIRTIO_STATUS, findCapabilities, findPciFunction, mapBar, sizeBar } from '../../machine/qtest/virtio-driver.js';
import {
  BLK_S, BlkDriver, COMMON, MSI_ADDRESS, PCI_CAP_ID_MSIX, STATUS_RUNNING, VIRTIO_BLK_F_RO, VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, barAddress, virtioCaps,
} from '../harness/qtest-blk.js';
import { QtestVm, SECTOR, sleep, stopAllQtestVms } from '../harness/qtest-vm.js';
import { requireKvm } from '../harness/skip.js';

const SLOT = 3;
const DEVFN = SLOT << 3;
const SECTORS = 2048;
const CONFIG_DATA = 0x31;
const QUEUE_DATA = 0x32;
const PCI_COMMAND = 0x04;
const PCI_STATUS = 0x06;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const PCI_STATUS_INTERRUPT = 0x08;
const PCI_STATUS_CAP_LIST = 0x10;
const PCI_CAP_ID_EXP = 0x10;
const MSIX_FLAGS_ENABLE = 0x8000;
const MSIX_FLAGS_MASKALL = 0x4000;
/** What tsvirt offers a read-write disk: SEG_MAX, BLK_SIZE, FLUSH, INDIRECT_DESC, EVENT_IDX; VERSION_1 in the high word. */
const BLK_FEATURES_LO = (1 << 2) | (1 << 6) | (1 << 9) | (1 << 28) | (1 << 29);

describe('qtest on a real tsvirt: PCI enumeration and the virtio-pci transport', function () {
  this.timeout(20000);
  let vm: QtestVm;

  before(requireKvm);

  beforeEach(async () => {
    vm = await QtestVm.start({ disks: [{ slot: SLOT, sectors: SECTORS, serial: 'QT-SERIAL-1' }] });
  });

  afterEach(async function () {
    if (!vm) return;
    const wasRunning = vm.running;
    const exit = await vm.stop();
    if (this.currentTest?.state === 'failed') return;
    expect(wasRunning, `tsvirt died during the test; stderr: ${vm.proc.stderr}`).to.equal(true);
    expect(exit, `tsvirt's exit when the test disconnected; stderr: ${vm.proc.stderr}`).to.deep.equal({ code: 0, signal: null });
  });

  after(stopAllQtestVms);

  const probe = (opts: { msiAddress?: bigint } = {}) =>
    BlkDriver.probe(vm.client, DEVFN, { base: 0x10_0000, configData: CONFIG_DATA, queueData: QUEUE_DATA, ...opts });

  it('finds the q35 host bridge 8086:29c0 at 00.0 and virtio-blk 1af4:1042 at the configured slot by scanning CF8/CFC', async () => {
    const q = vm.client;
    expect((await q.pciConfigReadl(0, 0)) >>> 0).to.equal(0x29c0_8086);
    expect((await q.pciConfigReadl(0, 0x08)) >>> 8, 'host bridge class').to.equal(0x06_00_00);
    expect(await findPciFunction(q, 0x8086, 0x29c0)).to.equal(0);
    expect(await findPciFunction(q, 0x1af4, 0x1042)).to.equal(DEVFN);
    expect(await findPciFunction(q, 0x1af4, 0x1041), 'no virtio-net configured').to.equal(undefined);
    // An empty slot, another bus and a function behind a single-function slot read all-ones.
    expect((await q.pciConfigReadl(5 << 3, 0)) >>> 0).to.equal(0xffff_ffff);
    expect((await q.pciConfigReadl(DEVFN, 0, 1)) >>> 0).to.equal(0xffff_ffff);
    expect((await q.pciConfigReadl(DEVFN | 1, 0)) >>> 0).to.equal(0xffff_ffff);

    // The virtio function's identity (virtio 1.2 §4.1.2: modern-only, revision 1).
    const classRev = (await q.pciConfigReadl(DEVFN, 0x08)) >>> 0;
    expect(classRev & 0xff, 'revision').to.equal(1);
    expect(classRev >>> 8, 'class: mass storage').to.equal(0x01_00_00);
    expect((await q.pciConfigReadl(DEVFN, 0x2c)) >>> 0, 'subsystem').to.equal(0x1100_1af4);
    expect(await q.pciConfigReadb(DEVFN, 0x0e), 'header type 0, single function').to.equal(0);
    // tsvirt wires only MSI-X, so the function claims no INTx pin.
    expect(await q.pciConfigReadb(DEVFN, 0x3d), 'interrupt pin').to.equal(0);
    expect((await q.pciConfigReadw(DEVFN, PCI_STATUS)) & PCI_STATUS_CAP_LIST).to.equal(PCI_STATUS_CAP_LIST);
  });

  it('has BARs 1 and 4 pre-assigned in the 32-bit window with decoding on; sizes them (1: 4 KiB 32-bit, 4: 16 KiB 64-bit) and moves them', async () => {
    const q = vm.client;
    const cmd = await q.pciConfigReadw(DEVFN, PCI_COMMAND);
    expect(cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), 'memory decode and bus master on, as firmware leaves them').to.equal(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const bar1 = await barAddress(q, DEVFN, 1);
    const bar4 = await barAddress(q, DEVFN, 4);
    for (const b of [bar1, bar4]) expect(b >= 0xc000_0000n && b < 0xfec0_0000n, `BAR at 0x${b.toString(16)}`).to.equal(true);
    expect(bar1 % 0x1000n).to.equal(0n);
    expect(bar4 % 0x4000n).to.equal(0n);
    const raw = [];
    for (let i = 0; i < 6; i++) raw.push((await q.pciConfigReadl(DEVFN, 0x10 + 4 * i)) >>> 0);
    expect(raw[4] & 0xf, 'BAR 4: memory, 64-bit, prefetchable').to.equal(0xc);
    expect(raw[1] & 0xf, 'BAR 1: memory, 32-bit').to.equal(0x0);

    // Size with decoding off, as Linux does, and check every BAR comes back as it was.
    await q.pciConfigWritew(DEVFN, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
    expect(await sizeBar(q, DEVFN, 1)).to.deep.equal({ size: 0x1000, is64: false });
    expect(await sizeBar(q, DEVFN, 4)).to.deep.equal({ size: 0x4000, is64: true });
    for (const unimplemented of [0, 2, 3]) expect((await sizeBar(q, DEVFN, unimplemented)).size, `BAR ${unimplemented}`).to.equal(0);
    for (let i = 0; i < 6; i++) expect((await q.pciConfigReadl(DEVFN, 0x10 + 4 * i)) >>> 0, `BAR ${i} restored`).to.equal(raw[i]);
    // While decoding is off the registers are not on the bus.
    expect(await q.readw(bar4 + BigInt(COMMON.NUMQ)), 'BAR 4 with decoding off').to.equal(0xffff);

    // Move both BARs elsewhere in the window and turn decoding back on: the device follows, the old place is empty.
    const NEW1 = 0xd000_0000n;
    const NEW4 = 0xd010_0000n;
    await mapBar(q, DEVFN, 1, NEW1, false);
    await mapBar(q, DEVFN, 4, NEW4, true);
    await q.pciConfigWritew(DEVFN, PCI_COMMAND, cmd);
    expect(await barAddress(q, DEVFN, 4)).to.equal(NEW4);
    expect(await q.readw(bar4 + BigInt(COMMON.NUMQ)), 'old BAR 4 address').to.equal(0xffff);
    expect(await q.readw(NEW4 + BigInt(COMMON.NUMQ)), 'num_queues at the new BAR 4').to.equal(1);

    // And a request works at the new addresses (MSI-X table in the moved BAR 1, doorbell in the moved BAR 4).
    const d = await probe();
    expect(d.msixTable).to.equal(NEW1);
    await d.init();
    const r = await d.read(7);
    expect(r.status).to.equal(BLK_S.OK);
    expect(Buffer.from(r.data!).equals(vm.image().subarray(7 * SECTOR, 8 * SECTOR))).to.equal(true);
  });

  it('walks the capability list to the virtio common/notify/ISR/device/PCI-config capabilities, MSI-X and PCIe', async () => {
    const q = vm.client;
    const caps = await virtioCaps(q, DEVFN);
    expect([...caps.keys()].sort()).to.deep.equal([1, 2, 3, 4, 5]);
    const at = (t: number) => caps.get(t)!;
    expect([1, 2, 3, 4].map((t) => at(t).bar), 'all regions in BAR 4').to.deep.equal([4, 4, 4, 4]);
    expect([1, 3, 4, 2].map((t) => at(t).offset)).to.deep.equal([0x0, 0x1000, 0x2000, 0x3000]);
    expect(at(1).length, 'common cfg covers the virtio 1.1 layout').to.be.at.least(0x38);
    expect(at(3).length).to.be.at.least(1);
    expect(at(4).length, 'virtio_blk_config through blk_size').to.be.at.least(24);
    expect(await q.pciConfigReadl(DEVFN, at(2).cap + 16), 'notify_off_multiplier').to.equal(4);
    expect(await q.pciConfigReadb(DEVFN, at(2).cap + 2), 'notify cap length').to.equal(20);
    expect(await q.pciConfigReadb(DEVFN, at(5).cap + 2), 'pci cfg cap length').to.equal(20);

    const [msix] = await findCapabilities(q, DEVFN, PCI_CAP_ID_MSIX);
    expect(msix).to.not.equal(undefined);
    const flags = await q.pciConfigReadw(DEVFN, msix + 2);
    expect((flags & 0x7ff) + 1, 'one vector per queue plus config').to.equal(2);
    expect(flags & (MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL), 'MSI-X starts disabled').to.equal(0);
    const table = (await q.pciConfigReadl(DEVFN, msix + 4)) >>> 0;
    const pba = (await q.pciConfigReadl(DEVFN, msix + 8)) >>> 0;
    expect([table & 7, table & ~7]).to.deep.equal([1, 0]);
    expect([pba & 7, pba & ~7]).to.deep.equal([1, 0x800]);
    expect(await findCapabilities(q, DEVFN, PCI_CAP_ID_EXP)).to.have.length(1);

    // The PCI-config access window (VIRTIO_PCI_CAP_PCI_CFG) reads BAR 4 through config space: num_queues at 0x12.
    const win = at(5).cap;
    await q.pciConfigWriteb(DEVFN, win + 4, 4);
    await q.pciConfigWritel(DEVFN, win + 8, COMMON.NUMQ);
    await q.pciConfigWritel(DEVFN, win + 12, 2);
    expect((await q.pciConfigReadl(DEVFN, win + 16)) & 0xffff).to.equal(1);
  });

  it('negotiates features: VERSION_1 is required and an unoffered feature keeps FEATURES_OK from sticking', async () => {
    const d = await probe();
    const q = vm.client;
    const c = d.common;
    const deviceFeatures = async (word: number) => {
      await q.writel(c + BigInt(COMMON.DFSELECT), word);
      return (await q.readl(c + BigInt(COMMON.DF))) >>> 0;
    };
    expect(await deviceFeatures(0)).to.equal(BLK_FEATURES_LO);
    expect(await deviceFeatures(1), 'VERSION_1').to.equal(1);
    expect(await deviceFeatures(2)).to.equal(0);

    const ACK_DRIVER = VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER;
    expect(await d.dev.negotiate(0n), 'legacy-only driver').to.equal(false);
    expect(await d.status()).to.equal(ACK_DRIVER);
    expect(await d.dev.negotiate(VIRTIO_RING_F_INDIRECT_DESC), 'no VERSION_1').to.equal(false);
    expect(await d.dev.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_RO), 'RO is not offered on a read-write disk').to.equal(false);
    expect(await d.dev.negotiate(VIRTIO_F_VERSION_1 | (1n << 34n)), 'RING_PACKED is not offered').to.equal(false);
    expect(await d.dev.negotiate(VIRTIO_F_VERSION_1 | (1n << 63n)), 'bit 63').to.equal(false);
    expect(await d.status()).to.equal(ACK_DRIVER);
    // DRIVER_OK without accepted features does not start the device: it stays ACK|DRIVER and a kick does nothing.
    await d.dev.setupQueue(0, d.mem.ring, 1);
    await d.dev.driverOk();
    expect(await d.status()).to.equal(ACK_DRIVER);

    expect(await d.dev.negotiate(VIRTIO_F_VERSION_1), 'VERSION_1 alone').to.equal(true);
    const all = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX | BigInt(BLK_FEATURES_LO);
    expect(await d.dev.negotiate(all), 'everything offered').to.equal(true);
    expect(await d.status()).to.equal(ACK_DRIVER | VIRTIO_STATUS.FEATURES_OK);
    // The driver's features read back, and are frozen once FEATURES_OK is set.
    const driverFeatures = async (word: number) => {
      await q.writel(c + BigInt(COMMON.GFSELECT), word);
      return (await q.readl(c + BigInt(COMMON.GF))) >>> 0;
    };
    expect([await driverFeatures(0), await driverFeatures(1)]).to.deep.equal([BLK_FEATURES_LO, 1]);
    await q.writel(c + BigInt(COMMON.GFSELECT), 0);
    await q.writel(c + BigInt(COMMON.GF), 0);
    expect(await driverFeatures(0), 'written after FEATURES_OK').to.equal(BLK_FEATURES_LO);
    expect(vm.running).to.equal(true);
  });

  it('sets up the request queue through common config: sizes, vectors, addresses, enable, and the frozen registers after enable', async () => {
    const d = await probe();
    const q = vm.client;
    const c = d.common;
    const reg16 = (off: number) => q.readw(c + BigInt(off));
    expect(await reg16(COMMON.NUMQ)).to.equal(1);
    expect(await d.dev.negotiate(VIRTIO_F_VERSION_1)).to.equal(true);
    await q.writew(c + BigInt(COMMON.Q_SELECT), 1);
    expect(await reg16(COMMON.Q_SIZE), 'queue 1 does not exist').to.equal(0);
    await q.writew(c + BigInt(COMMON.Q_SELECT), 0);
    expect(await reg16(COMMON.Q_SIZE), 'maximum size').to.equal(256);
    expect(await reg16(COMMON.Q_ENABLE)).to.equal(0);
    expect(await reg16(COMMON.Q_MSIX)).to.equal(0xffff);
    expect(await reg16(COMMON.Q_NOFF)).to.equal(0);
    // A vector outside the 2-entry table reads back NO_VECTOR.
    await q.writew(c + BigInt(COMMON.Q_MSIX), 2);
    expect(await reg16(COMMON.Q_MSIX)).to.equal(0xffff);
    await q.writew(c + BigInt(COMMON.MSIX), 7);
    expect(await reg16(COMMON.MSIX)).to.equal(0xffff);

    await d.dev.setConfigVector(0);
    await d.dev.setupQueue(0, d.mem.ring, 1);
    expect(await reg16(COMMON.MSIX)).to.equal(0);
    expect(await reg16(COMMON.Q_SIZE)).to.equal(16);
    expect(await reg16(COMMON.Q_MSIX)).to.equal(1);
    expect(await reg16(COMMON.Q_ENABLE)).to.equal(1);
    expect(await q.readq(c + BigInt(COMMON.Q_DESC))).to.equal(d.mem.ring.desc);
    expect(await q.readq(c + BigInt(COMMON.Q_AVAIL))).to.equal(d.mem.ring.avail);
    expect(await q.readl(c + BigInt(COMMON.Q_USED))).to.equal(Number(d.mem.ring.used));
    // Enabled: size and addresses are frozen (virtio 1.2 §4.1.4.3.2).
    await q.writew(c + BigInt(COMMON.Q_SIZE), 64);
    await q.writeq(c + BigInt(COMMON.Q_DESC), 0x50_0000n);
    expect(await reg16(COMMON.Q_SIZE)).to.equal(16);
    expect(await q.readq(c + BigInt(COMMON.Q_DESC))).to.equal(d.mem.ring.desc);
    expect(await d.dev.notifyAddress(0)).to.equal(d.bars.get(4)! + 0x3000n);

    await d.dev.driverOk();
    expect(await d.status()).to.equal(STATUS_RUNNING);
    const r = await d.read(1);
    expect(r.status).to.equal(BLK_S.OK);
    expect(r.usedLen).to.equal(SECTOR + 1);
  });

  it('delivers MSI-X with the programmed address and data; a masked vector stays pending until unmasked', async () => {
    const q = vm.client;
    const d = await probe({ msiAddress: 0xfee0_2000n });
    // Vector 0 gets its own address (another destination): the event must carry it.
    await q.writel(d.msixTable, 0xfee0_1000);
    await d.init();
    expect(await q.readl(d.msixTable + 16n), 'vector 1 address').to.equal(0xfee0_2000);
    expect(await q.readl(d.msixTable + 16n + 8n), 'vector 1 data').to.equal(QUEUE_DATA);

    const count0 = await q.msiCount();
    expect((await d.read(2)).status).to.equal(BLK_S.OK);
    expect(await q.msiCount()).to.equal(count0 + 1);
    expect(await q.command('msi_last')).to.equal(`0xfee02000 0x${QUEUE_DATA.toString(16)}`);

    // Mask vector 1: the completion lands in the used ring, the MSI waits in the PBA.
    const ctrl1 = d.msixTable + 16n + 12n;
    await q.writel(ctrl1, 1);
    const before = await d.usedIdx();
    await d.prepare(0, 3, { inLen: SECTOR });
    await d.kick();
    for (let i = 0; i < 100 && (await d.usedIdx()) === before; i++) await sleep(5);
    expect(await d.usedIdx(), 'request completed while masked').to.equal(before + 1);
    await sleep(50);
    expect(q.events.filter((e) => e.kind === 'msi'), 'no MSI while masked').to.deep.equal([]);
    expect((await q.readl(d.msixPba)) & 2, 'PBA bit 1').to.equal(2);
    // Reprogram while masked, then unmask: the pending message goes out with the new data.
    await q.writel(d.msixTable + 16n + 8n, 0x45);
    await q.writel(ctrl1, 0);
    expect(await q.waitForMsi(0x45, 2000)).to.deep.equal({ kind: 'msi', address: 0xfee0_2000n, data: 0x45 });
    expect((await q.readl(d.msixPba)) & 2, 'PBA bit 1 cleared on delivery').to.equal(0);
    await q.writel(d.msixTable + 16n + 8n, QUEUE_DATA);

    // Function mask (MSI-X Function Mask in the capability) holds it too.
    const [msix] = await findCapabilities(q, DEVFN, PCI_CAP_ID_MSIX);
    const flags = await q.pciConfigReadw(DEVFN, msix + 2);
    await q.pciConfigWritew(DEVFN, msix + 2, flags | MSIX_FLAGS_MASKALL);
    const before2 = await d.usedIdx();
    await d.prepare(0, 4, { inLen: SECTOR });
    await d.kick();
    for (let i = 0; i < 100 && (await d.usedIdx()) === before2; i++) await sleep(5);
    await sleep(50);
    expect(q.events.filter((e) => e.kind === 'msi'), 'no MSI while function-masked').to.deep.equal([]);
    expect((await q.readl(d.msixPba)) & 2).to.equal(2);
    await q.pciConfigWritew(DEVFN, msix + 2, flags);
    expect(await q.waitForMsi(QUEUE_DATA, 2000)).to.deep.equal({ kind: 'msi', address: 0xfee0_2000n, data: QUEUE_DATA });

    // A configuration-change interrupt uses vector 0's own message: provoke one with a bad head index.
    await d.publish(200);
    await d.kick();
    expect(await q.waitForMsi(CONFIG_DATA, 2000)).to.deep.equal({ kind: 'msi', address: 0xfee0_1000n, data: CONFIG_DATA });
    expect(await q.msiCount()).to.equal(count0 + 4);
  });

  it('with MSI-X disabled, signals completions in the ISR (read-to-clear) and the PCI Interrupt Status bit', async () => {
    const q = vm.client;
    const d = await probe();
    const [msix] = await findCapabilities(q, DEVFN, PCI_CAP_ID_MSIX);
    await q.pciConfigWritew(DEVFN, msix + 2, 0);
    await d.init();
    const before = await d.usedIdx();
    await d.prepare(0, 5, { inLen: SECTOR });
    await d.kick();
    for (let i = 0; i < 100 && (await d.usedIdx()) === before; i++) await sleep(5);
    expect(await d.usedIdx()).to.equal(before + 1);
    expect((await q.pciConfigReadw(DEVFN, PCI_STATUS)) & PCI_STATUS_INTERRUPT, 'Interrupt Status').to.equal(PCI_STATUS_INTERRUPT);
    expect(await q.readb(d.isr), 'ISR: queue interrupt').to.equal(1);
    expect(await q.readb(d.isr), 'ISR cleared by the read').to.equal(0);
    expect((await q.pciConfigReadw(DEVFN, PCI_STATUS)) & PCI_STATUS_INTERRUPT).to.equal(0);
    expect(q.events.filter((e) => e.kind === 'msi')).to.deep.equal([]);
  });

  it('resets on device_status 0: queues and vectors back to power-on, nothing more completes, and the device works again after re-initialising', async () => {
    const q = vm.client;
    const d = await probe();
    const c = d.common;
    await d.init();
    expect((await d.read(10)).status).to.equal(BLK_S.OK);
    expect((await d.read(11)).status).to.equal(BLK_S.OK);
    expect(await d.usedIdx()).to.equal(2);

    await d.reset();
    expect(await d.status(), 'status reads 0 once reset').to.equal(0);
    await q.writew(c + BigInt(COMMON.Q_SELECT), 0);
    const regs = {
      size: await q.readw(c + BigInt(COMMON.Q_SIZE)),
      enable: await q.readw(c + BigInt(COMMON.Q_ENABLE)),
      vector: await q.readw(c + BigInt(COMMON.Q_MSIX)),
      desc: await q.readq(c + BigInt(COMMON.Q_DESC)),
      avail: await q.readq(c + BigInt(COMMON.Q_AVAIL)),
      used: await q.readq(c + BigInt(COMMON.Q_USED)),
      configVector: await q.readw(c + BigInt(COMMON.MSIX)),
    };
    expect(regs).to.deep.equal({ size: 256, enable: 0, vector: 0xffff, desc: 0n, avail: 0n, used: 0n, configVector: 0xffff });
    for (const w of [0, 1]) {
      await q.writel(c + BigInt(COMMON.GFSELECT), w);
      expect(await q.readl(c + BigInt(COMMON.GF)), `driver features word ${w}`).to.equal(0);
    }
    // MSI-X is PCI-level state: a virtio reset leaves the table alone.
    expect(await q.readl(d.msixTable + 16n + 8n)).to.equal(QUEUE_DATA);

    // A request published and kicked now (the old rings, no DRIVER_OK) is not processed.
    await d.prepare(0, 12, { inLen: SECTOR });
    await d.kick();
    await sleep(50);
    expect(await d.usedIdx()).to.equal(2);
    expect(await q.readb(d.mem.status)).to.equal(0xff);
    expect(q.events).to.deep.equal([]);

    // Re-initialise with fresh rings: the used index starts over and requests complete.
    await d.init();
    const r = await d.read(12);
    expect(r.status).to.equal(BLK_S.OK);
    expect(await d.usedIdx()).to.equal(1);
    expect(Buffer.from(r.data!).equals(vm.image().subarray(12 * SECTOR, 13 * SECTOR))).to.equal(true);
  });

  it('drops the completion of a request still in flight when the driver resets the device', async () => {
    const q = vm.client;
    const d = await probe();
    await d.init();
    await d.prepare(0, 20, { inLen: 16 * SECTOR });
    // Kick and reset in one turn of tsvirt's event loop: the read is on the threadpool when the reset arrives.
    await vm.batch([d.kickCommand, d.resetCommand]);
    for (let i = 0; i < 100 && (await d.status()) !== 0; i++) await sleep(2);
    await sleep(50);
    expect(await d.status()).to.equal(0);
    expect(await d.usedIdx(), 'no used entry after reset').to.equal(0);
    expect(await q.readb(d.mem.status), 'status byte untouched').to.equal(0xff);
    expect(q.events.filter((e) => e.kind === 'msi' && e.data === QUEUE_DATA)).to.deep.equal([]);
    await d.init();
    expect((await d.read(21)).status).to.equal(BLK_S.OK);
  });
});
