// On real KVM: a virtio-blk PCI function wired as the machine builder should (BARs on the MMIO bus, doorbell ioeventfds, irqfd MSI routes, a raw file), driven over qtest.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Bus } from '../../devices/bus.js';
import { PciRootBus, type PciFunction } from '../../devices/pci/host-bridge.js';
import { VirtioBlock } from '../../devices/virtio/block.js';
import { VIRTIO_PCI_MODERN_BAR, VirtioPciDevice } from '../../devices/virtio/pci-transport.js';
import { RawBlockFile } from '../../machine/host/block-file.js';
import { MsiRouter } from '../../machine/host/msi-router.js';
import { VirtioDoorbells } from '../../machine/host/virtio-doorbells.js';
import { vcpuCpuid } from '../../machine/cpuid.js';
import { Kvm } from '../../machine/kvm/system.js';
import { VcpuFd } from '../../machine/kvm/vcpu.js';
import type { VmFd } from '../../machine/kvm/vm.js';
import { allocateRam, freeRam, type Ram } from '../../machine/memory.js';
import { QtestClient } from '../../machine/qtest/client.js';
import { InterruptRecorder } from '../../machine/qtest/interrupts.js';
import { QtestServer } from '../../machine/qtest/server.js';
import {
  QtestVirtioPci, enableMemoryAndBusMaster, enableMsix, findPciFunction, mapBar, queueLayout,
} from '../../machine/qtest/virtio-driver.js';
import { requireKvm } from '../harness/skip.js';

const BARS: Record<number, bigint> = { 1: 0xc000_0000n, 4: 0xc001_0000n };
const MSI = 0xfee0_0000n;
const SECTOR = 512;

describe('host: virtio-blk on KVM wired through the host adapters, driven by qtest', function () {
  this.timeout(30000);
  let kvm: Kvm;
  let vm: VmFd;
  let ram: Ram;
  let vcpu: VcpuFd;
  let router: MsiRouter;
  let doorbells: VirtioDoorbells;
  let file: RawBlockFile;
  let server: QtestServer;
  let client: QtestClient;
  let dir: string;
  let blk: VirtioPciDevice;
  const image = () => path.join(dir, 'disk.raw');

  before(async function () {
    requireKvm.call(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-wiring-'));
    fs.writeFileSync(image(), new Uint8Array(64 * SECTOR).map((_, i) => (i * 13) & 0xff));
    kvm = Kvm.open();
    vm = kvm.createVm();
    vm.setTssAddr(0xfffb_d000);
    vm.createIrqchip();
    ram = allocateRam(vm, 64 << 20);
    vcpu = new VcpuFd(vm.createVcpu(0), 0);
    vcpu.setCpuid2(vcpuCpuid(kvm.getSupportedCpuid(), 0, 1));
    const lapic = vcpu.getLapic();
    new DataView(lapic.buffer).setUint32(0xf0, 0x1ff, true); // SVR: APIC software-enabled
    vcpu.setLapic(lapic);

    // --- What the machine builder does for one virtio-pci disk ---
    const memory = ram.memory;
    const pio = new Bus('pio');
    const mmio = new Bus('mmio');
    const recorder = new InterruptRecorder();
    router = new MsiRouter(vm);
    file = RawBlockFile.open(image());
    blk = new VirtioPciDevice(new VirtioBlock({ memory, backend: file }), { memory, msi: recorder.msiSink(router.sink('disk0')) });
    doorbells = new VirtioDoorbells(router, blk);
    const pci = new PciRootBus((device: PciFunction, bar, oldAddr, newAddr) => {
      if (oldAddr !== null) mmio.unregister(Number(oldAddr));
      const region = device.barRegion(bar);
      if (newAddr !== null && region) mmio.register(Number(newAddr), device.config.bar(bar)!.size, region, `disk0.bar${bar}`);
      if (device === blk && bar === VIRTIO_PCI_MODERN_BAR) doorbells.barMoved(newAddr);
    });
    pio.register(0xcf8, 8, pci.configIo, 'pci-config');
    pci.add(4, 0, blk, 'disk0');
    // --- and the test mode on top ---
    const sock = path.join(dir, 'qtest.sock');
    server = await QtestServer.listen(sock, { pio, mmio, memory, interrupts: recorder });
    client = await QtestClient.connect(sock);
    await client.irqIntercept();
  });

  after(async () => {
    client?.close();
    await server?.close();
    doorbells?.close();
    router?.close();
    file?.close();
    vcpu?.close();
    if (ram) freeRam(ram.backings);
    vm?.close();
    kvm?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const irrHas = (vector: number) => {
    const dv = new DataView(vcpu.getLapic().buffer);
    return ((dv.getUint32(0x200 + (vector >> 5) * 0x10, true) >>> (vector & 31)) & 1) === 1;
  };

  it('reads and writes sectors of the file, with completions reaching the vCPU\'s LAPIC through an irqfd route', async () => {
    const devfn = await findPciFunction(client, 0x1af4, 0x1042);
    expect(devfn).to.equal(4 << 3);
    for (const bar of [1, 4]) await mapBar(client, devfn!, bar, BARS[bar], bar === 4);
    await enableMemoryAndBusMaster(client, devfn!);
    expect(doorbells.address(0), 'doorbell follows BAR 4').to.equal(BARS[4] + 0x3000n);
    await enableMsix(client, devfn!, (bar) => BARS[bar], [{ address: MSI, data: 0x50 }, { address: MSI, data: 0x51 }]);
    const dev = await QtestVirtioPci.attach(client, devfn!, (bar) => BARS[bar]);
    expect(await dev.negotiate(1n << 32n)).to.equal(true);
    await dev.setConfigVector(0);
    const q = queueLayout(0x10_0000n, 16);
    await dev.setupQueue(0, q, 1);
    await dev.driverOk();

    // Read sector 5.
    await client.writel(0x20_0000, 0);
    await client.writeq(0x20_0008, 5n);
    await dev.submit(0, q, 0, [{ addr: 0x20_0000n, len: 16 }, { addr: 0x30_0000n, len: SECTOR, write: true }, { addr: 0x20_0100n, len: 1, write: true }]);
    await client.waitForMsi(0x51);
    expect(await client.readb(0x20_0100)).to.equal(0);
    const onDisk = fs.readFileSync(image());
    expect(Buffer.from(await client.read(0x30_0000, SECTOR)).equals(onDisk.subarray(5 * SECTOR, 6 * SECTOR))).to.equal(true);
    expect(router.gsiOf('disk0', 1)).to.equal(24);
    // irqfd injects MSIs synchronously when it can, else from a kernel worker: allow for the latter.
    for (let i = 0; i < 100 && !irrHas(0x51); i++) await new Promise((r) => setTimeout(r, 5));
    expect(irrHas(0x51), 'vector 0x51 pending in the LAPIC').to.equal(true);

    // Write sector 9 from guest memory, then flush.
    await client.memset(0x40_0000, SECTOR, 0x5a);
    await client.writel(0x20_0200, 1); // VIRTIO_BLK_T_OUT
    await client.writeq(0x20_0208, 9n);
    await dev.submit(0, q, 3, [{ addr: 0x20_0200n, len: 16 }, { addr: 0x40_0000n, len: SECTOR }, { addr: 0x20_0300n, len: 1, write: true }]);
    await client.waitForMsi(0x51);
    await client.writel(0x20_0400, 4); // VIRTIO_BLK_T_FLUSH
    await client.writeq(0x20_0408, 0n);
    await dev.submit(0, q, 6, [{ addr: 0x20_0400n, len: 16 }, { addr: 0x20_0500n, len: 1, write: true }]);
    await client.waitForMsi(0x51);
    expect([await client.readb(0x20_0300), await client.readb(0x20_0500)]).to.deep.equal([0, 0]);
    expect(fs.readFileSync(image()).subarray(9 * SECTOR, 10 * SECTOR).every((b) => b === 0x5a)).to.equal(true);
    expect(await dev.usedIdx(q)).to.equal(3);
  });
});
