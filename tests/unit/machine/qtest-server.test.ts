// Unit tests of the qtest server and client over a real unix socket, against buses and RAM without KVM (and a virtio-blk PCI function driven like a guest).
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Bus, type BusDevice } from '../../../devices/bus.js';
import { GuestMemory } from '../../../devices/guest-memory.js';
import { PciRootBus, type PciFunction } from '../../../devices/pci/host-bridge.js';
import { VirtioBlock, type BlockBackend } from '../../../devices/virtio/block.js';
import { VirtioPciDevice } from '../../../devices/virtio/pci-transport.js';
import { QtestClient, QtestClientError } from '../../../machine/qtest/client.js';
import { InterruptRecorder } from '../../../machine/qtest/interrupts.js';
import { QtestServer } from '../../../machine/qtest/server.js';
import {
  QtestVirtioPci, enableMemoryAndBusMaster, enableMsix, findPciFunction, mapBar, queueLayout, sizeBar,
} from '../../../machine/qtest/virtio-driver.js';
import type { QtestTarget } from '../../../machine/qtest/session.js';

const MMIO_DEV = 0xfed0_0000;
const RAM_SIZE = 0x10_0000;

/** A register file: 16 bytes, reads return what was written; a write to offset 0xf raises/lowers IRQ 5. */
function registers(onWrite: (offset: number, data: Uint8Array) => void = () => {}): BusDevice & { bytes: Uint8Array } {
  const bytes = new Uint8Array(16);
  return {
    bytes,
    read: (o, d) => d.set(bytes.subarray(o, o + d.length)),
    write: (o, d) => {
      bytes.set(d, o);
      onWrite(o, d);
    },
  };
}

function socketPath(tag: string): string {
  return path.join(os.tmpdir(), `tsvirt-qtest-${process.pid}-${tag}.sock`);
}

describe('qtest server', function () {
  this.timeout(10000);
  let server: QtestServer;
  let client: QtestClient;
  let recorder: InterruptRecorder;
  let pioDev: ReturnType<typeof registers>;
  let mmioDev: ReturnType<typeof registers>;
  let memory: GuestMemory;
  const sock = socketPath('basic');

  beforeEach(async () => {
    recorder = new InterruptRecorder();
    const irq5 = recorder.line(5);
    const msi = recorder.msiSink();
    pioDev = registers();
    mmioDev = registers((o, d) => {
      if (o === 0xf) irq5.set(d[0] !== 0);
      if (o === 0xe) msi.signal(0, 0xfee0_0000n, d[0]);
    });
    const pio = new Bus('pio');
    pio.register(0x510, 16, pioDev, 'regs');
    const mmio = new Bus('mmio');
    mmio.register(MMIO_DEV, 16, mmioDev, 'regs');
    memory = new GuestMemory([{ gpa: 0, size: RAM_SIZE, bytes: new Uint8Array(RAM_SIZE) }]);
    server = await QtestServer.listen(sock, { pio, mmio, memory, interrupts: recorder });
    client = await QtestClient.connect(sock);
  });

  afterEach(async () => {
    client.close();
    await server.close();
    fs.rmSync(sock, { force: true });
  });

  it('does port I/O of every size through the pio bus', async () => {
    await client.outl(0x510, 0x1234_5678);
    expect(await client.inl(0x510)).to.equal(0x1234_5678);
    expect(await client.inw(0x512)).to.equal(0x1234);
    await client.outb(0x511, 0xab);
    expect(await client.inb(0x511)).to.equal(0xab);
    expect([...pioDev.bytes.subarray(0, 4)]).to.deep.equal([0x78, 0xab, 0x34, 0x12]);
  });

  it('reads all-ones from an unmapped port, as a guest would', async () => {
    expect(await client.inw(0x7000)).to.equal(0xffff);
  });

  it('sends sized accesses to an MMIO device when one is mapped, else to guest RAM', async () => {
    await client.writel(MMIO_DEV, 0xdead_beef);
    expect(await client.readl(MMIO_DEV)).to.equal(0xdead_beef);
    expect(memory.readU32(0)).to.equal(0);
    await client.writeq(0x2000, 0x0102_0304_0506_0708n);
    expect(memory.readU64(0x2000)).to.equal(0x0102_0304_0506_0708n);
    expect(await client.readq(0x2000)).to.equal(0x0102_0304_0506_0708n);
    expect(await client.readw(0x2002)).to.equal(0x0506);
  });

  it('reads, writes and memsets guest RAM in bulk (hex and base64)', async () => {
    await client.write(0x3000, Uint8Array.from([1, 2, 3, 4, 5]));
    expect([...memory.read(0x3000, 5)]).to.deep.equal([1, 2, 3, 4, 5]);
    expect([...(await client.read(0x3001, 3))]).to.deep.equal([2, 3, 4]);
    await client.memset(0x3000, 2, 0xee);
    expect([...memory.read(0x3000, 3)]).to.deep.equal([0xee, 0xee, 3]);
    expect(await client.command('b64read 0x3000 3')).to.equal(Buffer.from([0xee, 0xee, 3]).toString('base64'));
    await client.command(`b64write 0x3100 2 ${Buffer.from([9, 8]).toString('base64')}`);
    expect([...memory.read(0x3100, 2)]).to.deep.equal([9, 8]);
  });

  it('does bulk accesses outside RAM as aligned device accesses', async () => {
    await client.write(MMIO_DEV + 1, Uint8Array.from([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]));
    expect([...mmioDev.bytes.subarray(0, 8)]).to.deep.equal([0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
    expect([...(await client.read(MMIO_DEV, 8))]).to.deep.equal([0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
  });

  it('answers FAIL with a reason and keeps serving', async () => {
    let err: unknown;
    try {
      await client.command('frobnicate 1');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(QtestClientError);
    expect((err as Error).message).to.equal("frobnicate 1: FAIL Unknown command 'frobnicate'");
    await client.command('outb 0x80 0x1ff').then(() => expect.fail('accepted'), (e: Error) => expect(e.message).to.match(/does not fit/));
    expect(await client.command('endianness')).to.equal('little');
  });

  it('reports ISA line changes as IRQ lines once intercepted, and their current level on request', async () => {
    await client.writeb(MMIO_DEV + 0xf, 1);
    expect(client.events).to.deep.equal([]);
    expect(await client.irqLevel(5)).to.equal(true);
    await client.irqIntercept();
    await client.writeb(MMIO_DEV + 0xf, 0);
    await client.writeb(MMIO_DEV + 0xf, 0);
    await client.writeb(MMIO_DEV + 0xf, 2);
    await client.waitForIrq(5, false);
    await client.waitForIrq(5, true);
    expect(client.events).to.deep.equal([]);
    expect(await client.irqLevel(5)).to.equal(true);
  });

  it('reports MSI messages with address and data, and counts them', async () => {
    await client.irqIntercept();
    await client.writeb(MMIO_DEV + 0xe, 0x41);
    expect(await client.waitForMsi(0x41)).to.deep.equal({ kind: 'msi', address: 0xfee0_0000n, data: 0x41 });
    expect(await client.msiCount()).to.equal(1);
    expect(await client.command('msi_last')).to.equal('0xfee00000 0x41');
  });

  it('pipelines commands and answers them in order', async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => client.outb(0x510, i).then(() => client.inb(0x510))));
    expect(answers).to.have.length(50);
    expect(await client.inb(0x510)).to.equal(49);
  });
});

describe('qtest server in connect mode (-mod-test)', () => {
  const sock = socketPath('connect');
  afterEach(() => fs.rmSync(sock, { force: true }));

  it('connects to the test driver, serves it, and reports the disconnect', async () => {
    const listener = net.createServer();
    await new Promise<void>((r) => listener.listen(sock, r));
    const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
    const target: QtestTarget = {
      pio: new Bus('pio'),
      mmio: new Bus('mmio'),
      memory: new GuestMemory([{ gpa: 0, size: 4096, bytes: new Uint8Array(4096) }]),
    };
    let disconnected!: () => void;
    const gone = new Promise<void>((r) => (disconnected = r));
    const server = await QtestServer.connect(sock, target, { onDisconnect: () => disconnected() });
    const client = new QtestClient(await accepted);
    await client.writel(0x10, 7);
    expect(await client.readl(0x10)).to.equal(7);
    await client.command('msi_count').then(() => expect.fail('accepted'), (e: Error) => expect(e.message).to.match(/records no interrupts/));
    client.close();
    await gone;
    await server.close();
    await new Promise<void>((r) => listener.close(() => r()));
  });
});

// --- A virtio-blk PCI function, enumerated and used through qtest the way a guest driver does ----

const VIRTIO_VENDOR = 0x1af4;
const VIRTIO_BLK_MODERN = 0x1042;
const BARS: Record<number, bigint> = { 1: 0xe000_0000n, 4: 0xe001_0000n };
const MSI = 0xfee0_0000n;

describe('qtest driving a virtio-blk PCI function like a guest driver', function () {
  this.timeout(10000);
  const sock = socketPath('virtio');
  const disk = new Uint8Array(64 * 1024).map((_, i) => (i * 7) & 0xff);
  let server: QtestServer;
  let client: QtestClient;

  before(async () => {
    const memory = new GuestMemory([{ gpa: 0, size: RAM_SIZE, bytes: new Uint8Array(RAM_SIZE) }]);
    const backend: BlockBackend = {
      size: disk.length,
      read: async (offset, into) => {
        let at = offset;
        for (const v of into) {
          v.set(disk.subarray(at, at + v.length));
          at += v.length;
        }
      },
      write: async () => {},
      flush: async () => {},
    };
    const recorder = new InterruptRecorder();
    const pio = new Bus('pio');
    const mmio = new Bus('mmio');
    // What the machine builder does on a BAR change: move the BAR's region on the MMIO bus.
    const pci = new PciRootBus((device: PciFunction, bar, oldAddr, newAddr) => {
      if (oldAddr !== null) mmio.unregister(Number(oldAddr));
      const region = device.barRegion(bar);
      if (newAddr !== null && region) mmio.register(Number(newAddr), device.config.bar(bar)!.size, region, `bar${bar}`);
    });
    pio.register(0xcf8, 8, pci.configIo, 'pci-config');
    const blk = new VirtioPciDevice(new VirtioBlock({ memory, backend }), { memory, msi: recorder.msiSink() });
    pci.add(3, 0, blk, 'disk0');
    server = await QtestServer.listen(sock, { pio, mmio, memory, interrupts: recorder });
    client = await QtestClient.connect(sock);
    await client.irqIntercept();
  });

  after(async () => {
    client.close();
    await server.close();
    fs.rmSync(sock, { force: true });
  });

  it('finds the function by scanning bus 0 through CF8/CFC', async () => {
    expect(await findPciFunction(client, VIRTIO_VENDOR, VIRTIO_BLK_MODERN)).to.equal(3 << 3);
    expect(await findPciFunction(client, VIRTIO_VENDOR, 0x1041)).to.equal(undefined);
  });

  it('sizes and maps its BARs, enables MSI-X and reads a sector with the completion signalled by MSI', async () => {
    const devfn = 3 << 3;
    expect(await sizeBar(client, devfn, 4)).to.deep.equal({ size: 0x4000, is64: true });
    for (const bar of [1, 4]) await mapBar(client, devfn, bar, BARS[bar], bar === 4);
    await enableMemoryAndBusMaster(client, devfn);
    await enableMsix(client, devfn, (bar) => BARS[bar], [{ address: MSI, data: 0x40 }, { address: MSI, data: 0x41 }]);
    const dev = await QtestVirtioPci.attach(client, devfn, (bar) => BARS[bar]);
    expect(await dev.negotiate(1n << 32n)).to.equal(true);
    await dev.setConfigVector(0);
    const q = queueLayout(0x10000n, 8);
    await dev.setupQueue(0, q, 1);
    await dev.driverOk();
    expect(await dev.notifyAddress(0)).to.equal(BARS[4] + 0x3000n);
    // One request: read sector 3 into 0x20000 (header, data, status).
    await client.writel(0x13000, 0); // VIRTIO_BLK_T_IN
    await client.writeq(0x13008, 3n);
    await client.writeb(0x13100, 0xff);
    await dev.submit(0, q, 0, [{ addr: 0x13000n, len: 16 }, { addr: 0x20000n, len: 512, write: true }, { addr: 0x13100n, len: 1, write: true }]);
    const msi = await client.waitForMsi(0x41);
    expect(msi.address).to.equal(MSI);
    expect(await dev.usedIdx(q)).to.equal(1);
    expect(await client.readb(0x13100)).to.equal(0);
    expect([...(await client.read(0x20000, 512))]).to.deep.equal([...disk.subarray(3 * 512, 4 * 512)]);
  });
});
