// Unit tests of virtio-blk through the PCI transport, driven like a guest driver, with an in-memory backend.
import { expect } from 'chai';
import { StateError } from '../../../../machine/errors.js';
import {
  SECTOR_SIZE, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
  VirtioBlock, VirtioBlockStateError, type BlockBackend,
} from '../../../../devices/virtio/block.js';
import { VirtioPciDevice } from '../../../../devices/virtio/pci-transport.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT } from '../../../../devices/virtio/queue.js';
import {
  VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_STATUS_DEVICE_NEEDS_RESET, feature, hasFeature,
} from '../../../../devices/virtio/spec.js';
import { DriverRing, FakeDriver, FakeRam, RecordingMsiSink, type Desc } from './fake-driver.js';

const DISK_SECTORS = 64;

/** A disk in an array; operations can be held and released one by one to reorder completions. */
class MemDisk implements BlockBackend {
  readonly data = new Uint8Array(DISK_SECTORS * SECTOR_SIZE).map((_, i) => (i * 7) & 0xff);
  flushes = 0;
  hold = false;
  fail = false;
  private held: (() => void)[] = [];
  get size(): number {
    return this.data.length;
  }
  private gate(): Promise<void> {
    if (this.fail) return Promise.reject(new Error('EIO'));
    return this.hold ? new Promise((resolve) => this.held.push(resolve)) : Promise.resolve();
  }
  async read(offset: number, into: Uint8Array[]): Promise<void> {
    await this.gate();
    for (const b of into) {
      b.set(this.data.subarray(offset, offset + b.length));
      offset += b.length;
    }
  }
  async write(offset: number, from: Uint8Array[]): Promise<void> {
    await this.gate();
    for (const b of from) {
      this.data.set(b, offset);
      offset += b.length;
    }
  }
  async flush(): Promise<void> {
    await this.gate();
    this.flushes++;
  }
  release(index: number): void {
    this.held.splice(index, 1)[0]();
  }
}

const BASE_FEATURES = feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_BLK_F_FLUSH) | feature(VIRTIO_BLK_F_SEG_MAX) |
  feature(VIRTIO_BLK_F_BLK_SIZE) | feature(VIRTIO_RING_F_INDIRECT_DESC);

function setup(opts: { readonly?: boolean; eventIdx?: boolean; serial?: string } = {}) {
  const ram = new FakeRam();
  const disk = new MemDisk();
  const msi = new RecordingMsiSink();
  const blk = new VirtioBlock({ memory: ram.memory, backend: disk, readonly: opts.readonly, serial: opts.serial ?? 'tsvirt-disk-0', queueSize: 16 });
  const log: string[] = [];
  const dev = new VirtioPciDevice(blk, { memory: ram.memory, msi, log: (m) => log.push(m) });
  const driver = new FakeDriver(dev);
  const ring = new DriverRing(ram, 16);
  driver.enableMsix(2);
  let features = BASE_FEATURES | (opts.eventIdx ? feature(VIRTIO_RING_F_EVENT_IDX) : 0n);
  if (opts.readonly) features |= feature(VIRTIO_BLK_F_RO);
  driver.negotiate(features);
  driver.setupQueue(0, ring, 0);
  driver.driverOk();

  /** Builds a request: header, optional data buffer, status byte. Returns where things are. */
  const request = (type: number, sector: number, data?: { len: number; write: boolean; fill?: number }) => {
    const header = new Uint8Array(16);
    new DataView(header.buffer).setUint32(0, type, true);
    new DataView(header.buffer).setBigUint64(8, BigInt(sector), true);
    const hdr = ram.put(header);
    const descs: Desc[] = [{ addr: hdr, len: 16 }];
    let dataAddr = 0;
    if (data) {
      dataAddr = ram.alloc(data.len, 512);
      ram.bytes.fill(data.fill ?? 0, dataAddr, dataAddr + data.len);
      descs.push({ addr: dataAddr, len: data.len, write: data.write });
    }
    const status = ram.put([0xee]);
    descs.push({ addr: status, len: 1, write: true });
    const head = ring.add(descs);
    return { head, hdr, dataAddr, status, descs };
  };
  const status = (at: number) => ram.bytes[at];
  return { ram, disk, msi, blk, dev, driver, ring, request, status, log };
}

describe('virtio-blk', () => {
  describe('configuration', () => {
    it('reports capacity in 512-byte sectors, seg_max and blk_size', () => {
      const { driver } = setup();
      expect(driver.readDeviceConfig(0, 4)).to.equal(DISK_SECTORS);
      expect(driver.readDeviceConfig(4, 4)).to.equal(0);
      expect(driver.readDeviceConfig(12, 4)).to.equal(14);
      expect(driver.readDeviceConfig(20, 4)).to.equal(512);
    });

    it('offers RO only for a read-only disk, with FLUSH, SEG_MAX, BLK_SIZE and the ring features', () => {
      const rw = setup().driver.deviceFeatures();
      const ro = setup({ readonly: true }).driver.deviceFeatures();
      for (const bit of [VIRTIO_F_VERSION_1, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC]) {
        expect(hasFeature(rw, bit), `bit ${bit}`).to.equal(true);
      }
      expect(hasFeature(rw, VIRTIO_BLK_F_RO)).to.equal(false);
      expect(hasFeature(ro, VIRTIO_BLK_F_RO)).to.equal(true);
    });
  });

  describe('requests', () => {
    it('reads sectors into guest memory and completes with OK and an interrupt', async () => {
      const { ram, disk, blk, driver, ring, msi, request, status } = setup();
      const r = request(VIRTIO_BLK_T_IN, 2, { len: 1024, write: true });
      driver.kick(0);
      await blk.drain();
      expect(ram.bytes.subarray(r.dataAddr, r.dataAddr + 1024)).to.deep.equal(disk.data.subarray(1024, 2048));
      expect(status(r.status)).to.equal(VIRTIO_BLK_S_OK);
      expect(ring.usedIdx()).to.equal(1);
      expect(ring.usedElem(0)).to.deep.equal({ id: r.head, len: 1025 });
      expect(msi.vectors()).to.deep.equal([0]);
    });

    it('marks the pages of a read request dirty for migration', async () => {
      const { ram, blk, driver, request } = setup();
      const r = request(VIRTIO_BLK_T_IN, 0, { len: 512, write: true });
      ram.memory.startDirtyTracking();
      driver.kick(0);
      await blk.drain();
      const bitmap = ram.memory.takeDirtyBitmap(0);
      const page = r.dataAddr >>> 12;
      expect(bitmap[page >>> 5] & (1 << (page & 31))).to.not.equal(0);
    });

    it('writes guest data to the disk', async () => {
      const { disk, blk, driver, request, status } = setup();
      const r = request(VIRTIO_BLK_T_OUT, 3, { len: 512, write: false, fill: 0xab });
      driver.kick(0);
      await blk.drain();
      expect(status(r.status)).to.equal(VIRTIO_BLK_S_OK);
      expect(disk.data.subarray(1536, 2048).every((b) => b === 0xab)).to.equal(true);
    });

    it('accepts a header split across two descriptors and requests through an indirect table', async () => {
      const { ram, disk, blk, driver, ring, status } = setup();
      const header = new Uint8Array(16);
      new DataView(header.buffer).setBigUint64(8, 1n, true);
      const h1 = ram.put(header.subarray(0, 8));
      const h2 = ram.put(header.subarray(8));
      const data = ram.alloc(512);
      const st = ram.put([0xee]);
      const table = ring.indirectTable([{ addr: h1, len: 8 }, { addr: h2, len: 8 }, { addr: data, len: 512, write: true }, { addr: st, len: 1, write: true }]);
      ring.add([{ addr: table, len: 64, flags: VIRTQ_DESC_F_INDIRECT }]);
      driver.kick(0);
      await blk.drain();
      expect(status(st)).to.equal(VIRTIO_BLK_S_OK);
      expect(ram.bytes.subarray(data, data + 512)).to.deep.equal(disk.data.subarray(512, 1024));
    });

    it('flushes the backend', async () => {
      const { disk, blk, driver, request, status } = setup();
      const r = request(VIRTIO_BLK_T_FLUSH, 0);
      driver.kick(0);
      await blk.drain();
      expect(status(r.status)).to.equal(VIRTIO_BLK_S_OK);
      expect(disk.flushes).to.equal(1);
    });

    it('returns the serial zero-padded to 20 bytes for GET_ID', async () => {
      const { ram, blk, driver, request, status, ring } = setup({ serial: 'disk-7' });
      const r = request(VIRTIO_BLK_T_GET_ID, 0, { len: 20, write: true, fill: 0xff });
      driver.kick(0);
      await blk.drain();
      expect(status(r.status)).to.equal(VIRTIO_BLK_S_OK);
      const id = ram.bytes.subarray(r.dataAddr, r.dataAddr + 20);
      expect(Buffer.from(id.subarray(0, 6)).toString()).to.equal('disk-7');
      expect(id.subarray(6).every((b) => b === 0)).to.equal(true);
      expect(ring.usedElem(0).len).to.equal(21);
    });

    it('cuts a serial longer than 20 bytes', async () => {
      const { ram, blk, driver, request } = setup({ serial: 'abcdefghijklmnopqrstuvwxyz' });
      const r = request(VIRTIO_BLK_T_GET_ID, 0, { len: 20, write: true });
      driver.kick(0);
      await blk.drain();
      expect(Buffer.from(ram.bytes.subarray(r.dataAddr, r.dataAddr + 20)).toString()).to.equal('abcdefghijklmnopqrst');
    });

    it('answers UNSUPP for request types it does not implement', async () => {
      const { blk, driver, request, status } = setup();
      const r = request(11 /* DISCARD */, 0, { len: 16, write: false });
      driver.kick(0);
      await blk.drain();
      expect(status(r.status)).to.equal(VIRTIO_BLK_S_UNSUPP);
    });

    it('fails writes to a read-only disk with IOERR and leaves the disk alone', async () => {
      const { disk, blk, driver, request, status } = setup({ readonly: true });
      const before = disk.data.slice();
      const r = request(VIRTIO_BLK_T_OUT, 0, { len: 512, write: false, fill: 1 });
      driver.kick(0);
      await blk.drain();
      expect(status(r.status)).to.equal(VIRTIO_BLK_S_IOERR);
      expect(disk.data).to.deep.equal(before);
    });

    it('fails requests beyond the capacity or of partial sectors with IOERR', async () => {
      const { blk, driver, request, status } = setup();
      const past = request(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, { len: 1024, write: true });
      const huge = request(VIRTIO_BLK_T_OUT, 2 ** 60, { len: 512, write: false });
      const partial = request(VIRTIO_BLK_T_IN, 0, { len: 100, write: true });
      driver.kick(0);
      await blk.drain();
      expect([past, huge, partial].map((r) => status(r.status))).to.deep.equal([1, 1, 1]);
    });

    it('fails a request with IOERR when the backend does', async () => {
      const { disk, blk, driver, request, status } = setup();
      disk.fail = true;
      const r = request(VIRTIO_BLK_T_IN, 0, { len: 512, write: true });
      driver.kick(0);
      await blk.drain();
      expect(status(r.status)).to.equal(VIRTIO_BLK_S_IOERR);
    });

    it('completes requests out of order', async () => {
      const { disk, blk, driver, request, ring } = setup();
      disk.hold = true;
      const a = request(VIRTIO_BLK_T_IN, 0, { len: 512, write: true });
      const b = request(VIRTIO_BLK_T_IN, 1, { len: 512, write: true });
      driver.kick(0);
      expect(blk.inflightCount).to.equal(2);
      disk.release(1);
      disk.release(0);
      await blk.drain();
      expect([ring.usedElem(0).id, ring.usedElem(1).id]).to.deep.equal([b.head, a.head]);
    });

    it('refuses to save with requests in flight, and drains them', async () => {
      const { disk, blk, driver, request } = setup();
      disk.hold = true;
      request(VIRTIO_BLK_T_FLUSH, 0);
      driver.kick(0);
      expect(() => blk.saveState()).to.throw(StateError, /drain/);
      const drained = blk.drain();
      disk.release(0);
      await drained;
      expect(blk.saveState()).to.deep.equal({ capacity: String(DISK_SECTORS) });
    });

    it('suppresses interrupts with EVENT_IDX until used_event is reached', async () => {
      const { blk, driver, ring, msi, request } = setup({ eventIdx: true });
      ring.setUsedEvent(2);
      for (let i = 0; i < 4; i++) request(VIRTIO_BLK_T_FLUSH, 0);
      driver.kick(0);
      await blk.drain();
      expect(ring.usedIdx()).to.equal(4);
      // The first completion always notifies; then only crossing used_event (2) does.
      expect(msi.vectors()).to.deep.equal([0, 0]);
      expect(ring.availEvent()).to.equal(4);
    });
  });

  describe('malformed descriptors', () => {
    /** Publishes a malformed chain built by `build`, kicks, and checks NEEDS_RESET with memory untouched. */
    async function expectNeedsReset(reason: string, build: (s: ReturnType<typeof setup>) => void): Promise<void> {
      const s = setup();
      build(s);
      const before = s.ram.snapshot();
      s.driver.kick(0);
      await s.blk.drain();
      expect(s.driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.not.equal(0);
      expect(s.log.join('\n')).to.include(`virtqueue: ${reason}:`);
      expect(s.msi.vectors()).to.deep.equal([]); // config vector not assigned: no message, no crash
      expect(s.ram.bytes).to.deep.equal(before);
      expect(s.disk.flushes).to.equal(0);
    }

    it('ends a descriptor loop in NEEDS_RESET', () => expectNeedsReset('loop', ({ ring, ram }) => {
      const hdr = ram.alloc(16);
      ring.setDesc(0, { addr: hdr, len: 16, flags: VIRTQ_DESC_F_NEXT, next: 1 });
      ring.setDesc(1, { addr: hdr, len: 16, flags: VIRTQ_DESC_F_NEXT, next: 0 });
      ring.publish(0);
    }));

    it('ends an out-of-range descriptor index in NEEDS_RESET', () => expectNeedsReset('index-out-of-range', ({ ring, ram }) => {
      ring.setDesc(0, { addr: ram.alloc(16), len: 16, flags: VIRTQ_DESC_F_NEXT, next: 99 });
      ring.publish(0);
    }));

    it('ends a buffer outside guest memory in NEEDS_RESET', () => expectNeedsReset('buffer-outside-memory', ({ ring, ram }) => {
      ring.add([{ addr: ram.alloc(16), len: 16 }, { addr: 0x4000_0000, len: 512, write: true }, { addr: ram.alloc(1), len: 1, write: true }]);
    }));

    it('ends a wrapping buffer length in NEEDS_RESET', () => expectNeedsReset('length-wrap', ({ ring, ram }) => {
      ring.add([{ addr: ram.alloc(16), len: 16 }, { addr: 0xffff_ffff_ffff_fe00n, len: 0x400, write: true }, { addr: ram.alloc(1), len: 1, write: true }]);
    }));

    it('ends a nested indirect table in NEEDS_RESET', () => expectNeedsReset('nested-indirect', ({ ring, ram }) => {
      const inner = ring.indirectTable([{ addr: ram.alloc(16), len: 16 }]);
      const outer = ring.indirectTable([{ addr: inner, len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
      ring.add([{ addr: outer, len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
    }));

    it('ends an indirect table whose length is not a multiple of 16 in NEEDS_RESET', () => expectNeedsReset('indirect-length', ({ ring, ram }) => {
      const table = ring.indirectTable([{ addr: ram.alloc(16), len: 16 }, { addr: ram.alloc(1), len: 1, write: true }]);
      ring.add([{ addr: table, len: 24, flags: VIRTQ_DESC_F_INDIRECT }]);
    }));

    it('ends a readable descriptor after a writable one in NEEDS_RESET', () => expectNeedsReset('readable-after-writable', ({ ring, ram }) => {
      ring.add([{ addr: ram.alloc(512), len: 512, write: true }, { addr: ram.alloc(16), len: 16 }, { addr: ram.alloc(1), len: 1, write: true }]);
    }));

    it('ends a zero-length status descriptor in NEEDS_RESET', () => expectNeedsReset('request-shape', ({ ring, ram }) => {
      ring.add([{ addr: ram.alloc(16), len: 16 }, { addr: ram.alloc(512), len: 512 }, { addr: ram.alloc(1), len: 0, write: true }]);
    }));

    it('ends a header shorter than 16 bytes in NEEDS_RESET', () => expectNeedsReset('request-shape', ({ ring, ram }) => {
      ring.add([{ addr: ram.alloc(8), len: 8 }, { addr: ram.alloc(1), len: 1, write: true }]);
    }));

    it('raises the config vector on NEEDS_RESET and serves again after a reset', async () => {
      const s = setup();
      s.driver.write(0x10, 2, 1);
      s.ring.add([{ addr: s.ram.alloc(8), len: 8 }]);
      s.driver.kick(0);
      expect(s.msi.vectors()).to.deep.equal([1]);
      const ring = new DriverRing(s.ram, 16);
      s.driver.negotiate(BASE_FEATURES);
      s.driver.setupQueue(0, ring, 0);
      s.driver.driverOk();
      expect(s.driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.equal(0);
      const st = s.ram.put([0xee]);
      ring.add([{ addr: s.ram.put(new Uint8Array(16).fill(0).map((_, i) => (i === 0 ? VIRTIO_BLK_T_FLUSH : 0))), len: 16 }, { addr: st, len: 1, write: true }]);
      s.driver.kick(0);
      await s.blk.drain();
      expect(s.status(st)).to.equal(VIRTIO_BLK_S_OK);
    });
  });

  describe('reset and state', () => {
    it('drops the completion of a request that was in flight across a device reset', async () => {
      const { disk, blk, driver, request, ring, status } = setup();
      disk.hold = true;
      const r = request(VIRTIO_BLK_T_FLUSH, 0);
      driver.kick(0);
      driver.setStatus(0);
      disk.release(0);
      await blk.drain();
      expect(ring.usedIdx()).to.equal(0);
      expect(status(r.status)).to.equal(0xee);
    });

    it('round-trips through the transport and keeps serving on the destination', async () => {
      const src = setup();
      const first = src.request(VIRTIO_BLK_T_FLUSH, 0);
      src.driver.kick(0);
      await src.blk.drain();
      const saved = JSON.parse(JSON.stringify(src.dev.saveState()));

      const ram = src.ram;
      const disk = src.disk;
      const blk = new VirtioBlock({ memory: ram.memory, backend: disk, serial: 'x', queueSize: 16 });
      const msi = new RecordingMsiSink();
      const dev = new VirtioPciDevice(blk, { memory: ram.memory, msi });
      dev.restoreState(saved);
      expect(dev.saveState()).to.deep.equal(saved);
      expect(src.status(first.status)).to.equal(VIRTIO_BLK_S_OK);
      const r = src.request(VIRTIO_BLK_T_IN, 4, { len: 512, write: true });
      dev.notify(0);
      await blk.drain();
      expect(src.status(r.status)).to.equal(VIRTIO_BLK_S_OK);
      expect(src.ring.usedIdx()).to.equal(2);
      expect(msi.vectors()).to.deep.equal([0]);
    });

    it('refuses a snapshot taken with a different disk size', () => {
      const { blk } = setup();
      expect(() => blk.restoreState({ capacity: '65' })).to.throw(VirtioBlockStateError, /65 sectors/);
      expect(() => blk.restoreState({ capacity: 64 })).to.throw(VirtioBlockStateError);
    });
  });
});
