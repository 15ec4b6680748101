// A real tsvirt in -mod-test mode fed every kind of malformed virtqueue over the qtest socket: the process stays up, the device sets DEVICE_NEEDS_RESET, raises a config interrupt, writes nothing, and works again after a reset.
import { expect } from 'chai';
import {
  BLK_S, BLK_T, BlkDriver, COMMON, STATUS_RUNNING, VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC, VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type RawDesc,
} from '../harness/qtest-blk.js';
import { QtestVm, SECTOR, sleep, stopAllQtestVms } from '../harness/qtest-vm.js';
import { requireKvm } from '../harness/skip.js';
import { queueLayout } from '../../machine/qtest/virtio-driver.js';

const RAM = 64 << 20;
const NEEDS_RESET = 0x40;
const CONFIG_DATA = 0x40;
const QUEUE_DATA = 0x41;
const MSI = 0xfee0_0000n;
/** Checksummed before and after each bad kick: all of low RAM the tests use (the driver's area is 1-2 MiB). */
const GUARD_START = 0;
const GUARD_LEN = 4 << 20;
const FEATURES = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC;
const N = VIRTQ_DESC_F_NEXT;
const W = VIRTQ_DESC_F_WRITE;
const I = VIRTQ_DESC_F_INDIRECT;

/** Writes `descs` at `table` 0..n-1 (next pointers as given, default i+1). */
async function descs(d: BlkDriver, table: bigint | number, list: RawDesc[]): Promise<void> {
  for (const [i, x] of list.entries()) await d.writeDesc(table, i, { next: i + 1, ...x });
}

interface BadChain {
  readonly name: string;
  /** VirtqueueErrorReason tsvirt must log. */
  readonly reason: string;
  readonly features?: bigint;
  /** Writes the bad chain and publishes it (the test kicks). */
  arrange(d: BlkDriver): Promise<void>;
}

/** Valid pieces of an IN request for sector 0: header, 512-byte buffer, status. */
function parts(d: BlkDriver) {
  const m = d.mem;
  return {
    hdr: { addr: BigInt(m.header), len: 16, flags: N },
    data: { addr: BigInt(m.data), len: SECTOR, flags: W | N },
    data2: { addr: BigInt(m.data + SECTOR), len: SECTOR, flags: W | N },
    st: { addr: BigInt(m.status), len: 1, flags: W },
  };
}

const BAD_CHAINS: BadChain[] = [
  {
    name: 'descriptor loop (1 -> 2 -> 1 among writable descriptors)', reason: 'loop',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, p.data, { ...p.data2, next: 1 }]);
      await d.publish(0);
    },
  },
  {
    name: 'descriptor whose next is itself', reason: 'loop',
    async arrange(d) {
      await descs(d, d.mem.ring.desc, [{ ...parts(d).hdr, next: 0 }]);
      await d.publish(0);
    },
  },
  {
    name: 'next index equal to the queue size', reason: 'index-out-of-range',
    async arrange(d) {
      await descs(d, d.mem.ring.desc, [{ ...parts(d).hdr, next: 16 }]);
      await d.publish(0);
    },
  },
  {
    name: 'next index 0xffff', reason: 'index-out-of-range',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, { ...p.data, next: 0xffff }]);
      await d.publish(0);
    },
  },
  {
    name: 'buffer just past the end of guest RAM', reason: 'buffer-outside-memory',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, { ...p.data, addr: BigInt(RAM) }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'buffer straddling the end of guest RAM', reason: 'buffer-outside-memory',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, { ...p.data, addr: BigInt(RAM - 256) }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'buffer on the device\'s own BAR (MMIO, not RAM)', reason: 'buffer-outside-memory',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, { ...p.data, addr: d.bars.get(4)! }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'status byte aimed at the local APIC', reason: 'buffer-outside-memory',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, p.data, { ...p.st, addr: MSI }]);
      await d.publish(0);
    },
  },
  {
    name: 'header above 4 GiB (no RAM there)', reason: 'buffer-outside-memory',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [{ ...p.hdr, addr: 0x1_0000_0000n }, p.data, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'length that wraps the 64-bit address space', reason: 'length-wrap',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, { ...p.data, addr: 0xffff_ffff_ffff_ff00n, len: 0x200 }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'length 0xffffffff from near the top of the address space', reason: 'length-wrap',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, { ...p.data, addr: 0xffff_ffff_0000_1000n, len: 0xffff_ffff }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'nested indirect table', reason: 'nested-indirect',
    async arrange(d) {
      const p = parts(d);
      const inner = d.mem.indirect + 0x400;
      await descs(d, inner, [p.data, p.st]);
      await descs(d, d.mem.indirect, [p.hdr, { addr: BigInt(inner), len: 32, flags: I }]);
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(d.mem.indirect), len: 32, flags: I }]);
      await d.publish(0);
    },
  },
  {
    name: 'indirect table length not a multiple of 16', reason: 'indirect-length',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.indirect, [p.hdr, p.data, p.st]);
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(d.mem.indirect), len: 40, flags: I }]);
      await d.publish(0);
    },
  },
  {
    name: 'indirect table of length 0', reason: 'indirect-length',
    async arrange(d) {
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(d.mem.indirect), len: 0, flags: I }]);
      await d.publish(0);
    },
  },
  {
    name: 'indirect descriptor that also has NEXT', reason: 'indirect-with-next',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.indirect, [p.hdr, p.data, p.st]);
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(d.mem.indirect), len: 48, flags: I | N, next: 1 }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'indirect table outside guest RAM', reason: 'buffer-outside-memory',
    async arrange(d) {
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(RAM), len: 48, flags: I }]);
      await d.publish(0);
    },
  },
  {
    name: 'indirect table of more than 1024 descriptors', reason: 'chain-too-long',
    async arrange(d) {
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(d.mem.indirect), len: 1025 * 16, flags: I }]);
      await d.publish(0);
    },
  },
  {
    name: 'indirect descriptor when VIRTIO_RING_F_INDIRECT_DESC was not negotiated', reason: 'indirect-not-negotiated',
    features: VIRTIO_F_VERSION_1,
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.indirect, [p.hdr, p.data, p.st]);
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(d.mem.indirect), len: 48, flags: I }]);
      await d.publish(0);
    },
  },
  {
    name: 'a writable descriptor followed by a readable one', reason: 'readable-after-writable',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, p.data, { ...p.data2, flags: N }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'a writable descriptor followed by a readable one inside an indirect table', reason: 'readable-after-writable',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.indirect, [p.hdr, p.data, { ...p.data2, flags: N }, p.st]);
      await descs(d, d.mem.ring.desc, [{ addr: BigInt(d.mem.indirect), len: 64, flags: I }]);
      await d.publish(0);
    },
  },
  {
    name: 'status descriptor of length 0 (no room for the status byte)', reason: 'request-shape',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, { ...p.st, len: 0 }]);
      await d.publish(0);
    },
  },
  {
    name: 'no writable descriptor at all', reason: 'request-shape',
    async arrange(d) {
      await descs(d, d.mem.ring.desc, [{ ...parts(d).hdr, flags: 0 }]);
      await d.publish(0);
    },
  },
  {
    name: 'header shorter than 16 bytes', reason: 'request-shape',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [{ ...p.hdr, len: 8 }, p.st]);
      await d.publish(0);
    },
  },
  {
    name: 'head index equal to the queue size in the avail ring', reason: 'index-out-of-range',
    async arrange(d) {
      const p = parts(d);
      await descs(d, d.mem.ring.desc, [p.hdr, p.data, p.st]);
      await d.publish(16);
    },
  },
  {
    name: 'head index 0xffff in the avail ring', reason: 'index-out-of-range',
    async arrange(d) {
      await d.publish(0xffff);
    },
  },
  {
    name: 'avail idx moved more than the queue size ahead', reason: 'avail-index',
    async arrange(d) {
      const idx = await d.q.readw(d.mem.ring.avail + 2n);
      await d.q.writew(d.mem.ring.avail + 2n, (idx + 17) & 0xffff);
    },
  },
];

/** Queue configurations refused when the driver sets DRIVER_OK. */
const BAD_QUEUES: { name: string; reason: string; layout: (d: BlkDriver) => ReturnType<typeof queueLayout> }[] = [
  { name: 'descriptor table outside guest RAM', reason: 'ring-outside-memory', layout: (d) => ({ ...d.mem.ring, desc: BigInt(RAM) }) },
  { name: 'used ring straddling the end of guest RAM', reason: 'ring-outside-memory', layout: (d) => ({ ...d.mem.ring, used: BigInt(RAM - 64) }) },
  { name: 'misaligned descriptor table', reason: 'ring-outside-memory', layout: (d) => ({ ...d.mem.ring, desc: d.mem.ring.desc + 8n }) },
  { name: 'queue size that is not a power of two', reason: 'bad-queue-size', layout: (d) => ({ ...d.mem.ring, size: 12 }) },
];

describe('qtest on a real tsvirt: malformed virtqueues set DEVICE_NEEDS_RESET and nothing else', function () {
  this.timeout(20000);
  let vm: QtestVm | undefined;
  let d: BlkDriver;

  before(requireKvm);

  beforeEach(async () => {
    // One process for the suite (each case starts with a device reset, as a recovering driver would); a fresh one if it died.
    if (!vm?.running) {
      await vm?.stop();
      vm = await QtestVm.start({ disks: [{ slot: 3, sectors: 64, serial: 'BAD' }] });
      d = await BlkDriver.probe(vm.client, 3 << 3, { base: 0x10_0000, configData: CONFIG_DATA, queueData: QUEUE_DATA });
    }
    await d.reset();
    vm.client.events.splice(0);
  });

  after(async () => {
    if (vm) {
      const wasRunning = vm.running;
      const exit = await vm.stop();
      expect(wasRunning).to.equal(true);
      expect(exit).to.deep.equal({ code: 0, signal: null });
    }
    await stopAllQtestVms();
  });

  /** Fills the request area the way a driver would before a request (header for IN sector 0, poisoned buffers). */
  async function stageRequest(): Promise<void> {
    const q = vm!.client;
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(BLK_T.IN, 0);
    await q.write(d.mem.header, hdr);
    await q.memset(d.mem.status, 16, 0xff);
    await q.memset(d.mem.data, 4 * SECTOR, 0xcc);
  }

  /** After the device flagged NEEDS_RESET: it stays halted until reset; then a re-initialised device reads correctly. */
  async function expectRecovers(features: bigint, guard: string, msiBefore: number, usedBefore: number): Promise<void> {
    const q = vm!.client;
    // The driver can neither clear NEEDS_RESET nor restart the device short of a reset; kicks are ignored.
    await q.writeb(d.common + BigInt(COMMON.STATUS), STATUS_RUNNING);
    expect(await d.status()).to.equal(STATUS_RUNNING | NEEDS_RESET);
    await d.kick();
    await sleep(20);
    expect(await d.usedIdx(), 'nothing completes while halted').to.equal(usedBefore);
    expect(await q.msiCount(), 'exactly one interrupt: the config change').to.equal(msiBefore + 1);
    expect(await vm!.ramHash(GUARD_START, GUARD_LEN), 'guest RAM untouched').to.equal(guard);

    await d.reset();
    expect(await d.status()).to.equal(0);
    await d.init(features);
    const r = await d.read(3);
    expect(r.status, 'a read after the reset').to.equal(BLK_S.OK);
    expect(Buffer.from(r.data!).equals(vm!.image().subarray(3 * SECTOR, 4 * SECTOR))).to.equal(true);
    expect(await d.usedIdx()).to.equal(1);
    expect(q.events, 'no stray interrupts').to.deep.equal([]);
    expect(vm!.running).to.equal(true);
  }

  async function expectNeedsReset(reason: string, logFrom: number, generation: number): Promise<void> {
    const q = vm!.client;
    const msi = await q.waitForMsi(CONFIG_DATA, 3000);
    expect(msi.address, 'config-change MSI').to.equal(MSI);
    expect(vm!.running, 'tsvirt still running').to.equal(true);
    expect(await d.status(), 'device_status').to.equal(STATUS_RUNNING | NEEDS_RESET);
    expect(await d.configGeneration(), 'config_generation moved').to.equal((generation + 1) & 0xff);
    const logged = await vm!.stderrIncludes(new RegExp(`device needs reset: virtqueue: ${reason}:`));
    const log = vm!.proc.stderr.slice(logFrom);
    expect(logged && log.includes(`virtqueue: ${reason}:`), `tsvirt logs the reason '${reason}'; new stderr: ${log}`).to.equal(true);
    expect(log.match(/device needs reset/g), 'logged once').to.have.length(1);
  }

  for (const c of BAD_CHAINS) {
    it(`${c.name}: ${c.reason}`, async () => {
      const q = vm!.client;
      const features = c.features ?? FEATURES;
      await d.init(features);
      // Some history first: one good request, so the used ring is not empty.
      expect((await d.read(1)).status).to.equal(BLK_S.OK);
      await stageRequest();
      await c.arrange(d);
      const guard = await vm!.ramHash(GUARD_START, GUARD_LEN);
      const msiBefore = await q.msiCount();
      const generation = await d.configGeneration();
      const logFrom = vm!.proc.stderr.length;

      await d.kick();
      await expectNeedsReset(c.reason, logFrom, generation);
      expect(await d.usedIdx(), 'no used entry for the bad chain').to.equal(1);
      expect(await vm!.ramHash(GUARD_START, GUARD_LEN), 'guest RAM untouched').to.equal(guard);
      await expectRecovers(features, guard, msiBefore, 1);
    });
  }

  for (const c of BAD_QUEUES) {
    it(`${c.name}: ${c.reason} at DRIVER_OK`, async () => {
      const q = vm!.client;
      await q.memset(d.mem.ring.desc, 0x3000, 0);
      expect(await d.dev.negotiate(FEATURES)).to.equal(true);
      await d.dev.setConfigVector(0);
      await d.dev.setupQueue(0, c.layout(d), 1);
      const guard = await vm!.ramHash(GUARD_START, GUARD_LEN);
      const msiBefore = await q.msiCount();
      const generation = await d.configGeneration();
      const logFrom = vm!.proc.stderr.length;
      await d.dev.driverOk();
      await expectNeedsReset(c.reason, logFrom, generation);
      await expectRecovers(FEATURES, guard, msiBefore, 0);
    });
  }
});
