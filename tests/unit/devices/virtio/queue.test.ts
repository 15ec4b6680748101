// Unit tests of the split virtqueue: chain validation against hostile descriptors, used ring, event-idx rules, migration state.
import { expect } from 'chai';
import { GuestMemory } from '../../../../devices/guest-memory.js';
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, Virtqueue, VirtqueueError, VirtqueueStateError,
  type VirtqueueErrorReason,
} from '../../../../devices/virtio/queue.js';
import { DriverRing, FakeRam } from './fake-driver.js';

const SIZE = 8;

function setup(opts: { eventIdx?: boolean; indirect?: boolean; ram?: FakeRam } = {}) {
  const ram = opts.ram ?? new FakeRam();
  const ring = new DriverRing(ram, SIZE);
  const q = new Virtqueue(ram.memory, 16);
  q.size = SIZE;
  q.descTable = BigInt(ring.desc);
  q.availRing = BigInt(ring.avail);
  q.usedRing = BigInt(ring.used);
  q.ready = true;
  q.activate(opts.eventIdx ?? false, opts.indirect ?? true);
  return { ram, ring, q };
}

function expectReason(fn: () => unknown, reason: VirtqueueErrorReason): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(VirtqueueError);
    expect((e as VirtqueueError).reason).to.equal(reason);
    expect((e as VirtqueueError).code).to.equal('ERR_VIRTQUEUE');
    return;
  }
  expect.fail(`expected a VirtqueueError '${reason}'`);
}

describe('virtio queue', () => {
  describe('popping chains', () => {
    it('returns null from an empty ring', () => {
      const { q } = setup();
      expect(q.pop()).to.equal(null);
    });

    it('splits a chain into readable then writable buffers', () => {
      const { ring, q } = setup();
      const head = ring.add([{ addr: 0x8000, len: 16 }, { addr: 0x9000, len: 100 }, { addr: 0xa000, len: 1, write: true }]);
      const chain = q.pop()!;
      expect(chain.head).to.equal(head);
      expect(chain.readable).to.deep.equal([{ gpa: 0x8000, len: 16 }, { gpa: 0x9000, len: 100 }]);
      expect(chain.writable).to.deep.equal([{ gpa: 0xa000, len: 1 }]);
      expect([chain.readableLength, chain.writableLength]).to.deep.equal([116, 1]);
      expect(q.pop()).to.equal(null);
    });

    it('follows an indirect table when INDIRECT_DESC was negotiated', () => {
      const { ring, q } = setup({ indirect: true });
      const table = ring.indirectTable([{ addr: 0x8000, len: 16 }, { addr: 0x9000, len: 8, write: true }]);
      ring.add([{ addr: table, len: 32, flags: VIRTQ_DESC_F_INDIRECT }]);
      const chain = q.pop()!;
      expect(chain.readable).to.deep.equal([{ gpa: 0x8000, len: 16 }]);
      expect(chain.writable).to.deep.equal([{ gpa: 0x9000, len: 8 }]);
    });

    it('accepts direct descriptors followed by one indirect descriptor', () => {
      const { ring, q } = setup();
      const table = ring.indirectTable([{ addr: 0x9000, len: 8, write: true }]);
      ring.add([{ addr: 0x8000, len: 16 }, { addr: table, len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
      const chain = q.pop()!;
      expect(chain.readable).to.deep.equal([{ gpa: 0x8000, len: 16 }]);
      expect(chain.writable).to.deep.equal([{ gpa: 0x9000, len: 8 }]);
    });

    it('splits a buffer that straddles two RAM regions', () => {
      const a = new Uint8Array(0x10000);
      const b = new Uint8Array(0x10000);
      const memory = new GuestMemory([{ gpa: 0, size: a.length, bytes: a }, { gpa: 0x10000, size: b.length, bytes: b }]);
      const ram = Object.assign(new FakeRam(0x10000), { memory, bytes: a });
      const { ring, q } = setup({ ram });
      ring.add([{ addr: 0xff00, len: 0x200 }]);
      expect(q.pop()!.readable).to.deep.equal([{ gpa: 0xff00, len: 0x100 }, { gpa: 0x10000, len: 0x100 }]);
    });

    it('gives a chain back with undoPop', () => {
      const { ring, q } = setup();
      const head = ring.add([{ addr: 0x8000, len: 4 }]);
      q.pop();
      q.undoPop();
      expect(q.pending()).to.equal(1);
      expect(q.pop()!.head).to.equal(head);
    });
  });

  describe('refusing malformed chains', () => {
    it('refuses a head index beyond the queue size', () => {
      const { ring, q } = setup();
      ring.publish(SIZE + 3);
      expectReason(() => q.pop(), 'index-out-of-range');
    });

    it('refuses a next index beyond the queue size', () => {
      const { ring, q } = setup();
      ring.setDesc(0, { addr: 0x8000, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 200 });
      ring.publish(0);
      expectReason(() => q.pop(), 'index-out-of-range');
    });

    it('refuses a descriptor loop', () => {
      const { ring, q } = setup();
      ring.setDesc(0, { addr: 0x8000, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 1 });
      ring.setDesc(1, { addr: 0x8000, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 0 });
      ring.publish(0);
      expectReason(() => q.pop(), 'loop');
    });

    it('refuses a loop inside an indirect table', () => {
      const { ring, q } = setup();
      const table = ring.indirectTable([{ addr: 0x8000, len: 4 }, { addr: 0x8000, len: 4 }]);
      ring.setDesc(1, { addr: 0x8000, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 0 }, table);
      ring.add([{ addr: table, len: 32, flags: VIRTQ_DESC_F_INDIRECT }]);
      expectReason(() => q.pop(), 'loop');
    });

    it('refuses a buffer outside guest memory', () => {
      const { ring, q } = setup();
      ring.add([{ addr: 0xfff00, len: 0x200 }]);
      expectReason(() => q.pop(), 'buffer-outside-memory');
    });

    it('refuses a buffer whose length wraps the address space', () => {
      const { ring, q } = setup();
      ring.add([{ addr: 0xffff_ffff_ffff_f000n, len: 0x2000 }]);
      expectReason(() => q.pop(), 'length-wrap');
    });

    it('refuses a readable descriptor after a writable one', () => {
      const { ring, q } = setup();
      ring.add([{ addr: 0x8000, len: 4, write: true }, { addr: 0x9000, len: 4 }]);
      expectReason(() => q.pop(), 'readable-after-writable');
    });

    it('refuses a nested indirect table', () => {
      const { ring, q } = setup();
      const inner = ring.indirectTable([{ addr: 0x8000, len: 4 }]);
      const outer = ring.indirectTable([{ addr: inner, len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
      ring.add([{ addr: outer, len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
      expectReason(() => q.pop(), 'nested-indirect');
    });

    it('refuses an indirect descriptor that also chains on, which could visit a table twice', () => {
      const { ring, q } = setup();
      const table = ring.indirectTable([{ addr: 0x8000, len: 4 }]);
      ring.add([{ addr: table, len: 16, flags: VIRTQ_DESC_F_INDIRECT }, { addr: table, len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
      expectReason(() => q.pop(), 'indirect-with-next');
    });

    for (const len of [0, 20]) {
      it(`refuses an indirect table of ${len} bytes`, () => {
        const { ring, q } = setup();
        const table = ring.indirectTable([{ addr: 0x8000, len: 4 }, { addr: 0x8000, len: 4 }]);
        ring.add([{ addr: table, len, flags: VIRTQ_DESC_F_INDIRECT }]);
        expectReason(() => q.pop(), 'indirect-length');
      });
    }

    it('refuses an indirect table placed outside guest memory', () => {
      const { ring, q } = setup();
      ring.add([{ addr: 0x7fff_0000, len: 32, flags: VIRTQ_DESC_F_INDIRECT }]);
      expectReason(() => q.pop(), 'buffer-outside-memory');
    });

    it('refuses an indirect descriptor when INDIRECT_DESC was not negotiated', () => {
      const { ring, q } = setup({ indirect: false });
      const table = ring.indirectTable([{ addr: 0x8000, len: 4 }]);
      ring.add([{ addr: table, len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
      expectReason(() => q.pop(), 'indirect-not-negotiated');
    });

    it('refuses an indirect table longer than the chain limit', () => {
      const { ram, ring, q } = setup();
      const table = ram.alloc(16 * 1025, 16);
      ring.add([{ addr: table, len: 16 * 1025, flags: VIRTQ_DESC_F_INDIRECT }]);
      expectReason(() => q.pop(), 'chain-too-long');
    });

    it('refuses a chain describing more than 4 GiB', () => {
      const big = 0xffff_0000;
      const bytes = new Uint8Array(0);
      const ram = new FakeRam();
      const memory = new GuestMemory([
        { gpa: 0, size: ram.bytes.length, bytes: ram.bytes },
        // A region whose host view is never touched: only the bounds matter here.
        { gpa: 0x1_0000_0000, size: 2 * big, bytes },
      ]);
      const { ring, q } = setup({ ram: Object.assign(ram, { memory }) });
      ring.add([{ addr: 0x1_0000_0000, len: big }, { addr: 0x1_0000_0000 + big, len: big }]);
      expectReason(() => q.pop(), 'chain-too-long');
    });

    it('refuses an avail index more than a ring ahead', () => {
      const { ram, ring, q } = setup();
      new DataView(ram.bytes.buffer).setUint16(ring.avail + 2, SIZE + 1, true);
      expectReason(() => q.pop(), 'avail-index');
    });
  });

  describe('activation', () => {
    it('refuses rings outside guest memory or misaligned, and sizes that are not powers of two', () => {
      const ram = new FakeRam();
      const q = new Virtqueue(ram.memory, 16);
      q.ready = true;
      q.descTable = 0xfff80n;
      expectReason(() => q.activate(false, false), 'ring-outside-memory');
      q.descTable = 0x1008n;
      expectReason(() => q.activate(false, false), 'ring-outside-memory');
      q.descTable = 0x1000n;
      q.size = 12;
      expectReason(() => q.activate(false, false), 'bad-queue-size');
      q.size = 32;
      expectReason(() => q.activate(false, false), 'bad-queue-size');
    });

    it('stays idle when the driver did not enable it', () => {
      const ram = new FakeRam();
      const q = new Virtqueue(ram.memory, 16);
      q.activate(false, false);
      expect(q.isLive).to.equal(false);
      expect(q.pop()).to.equal(null);
    });
  });

  describe('used ring and notifications', () => {
    it('writes used entries and the used index, marking the pages dirty', () => {
      const { ram, ring, q } = setup();
      const head = ring.add([{ addr: 0x8000, len: 4, write: true }]);
      const chain = q.pop()!;
      ram.memory.startDirtyTracking();
      q.pushUsed(chain.head, 4);
      expect(ring.usedIdx()).to.equal(1);
      expect(ring.usedElem(0)).to.deep.equal({ id: head, len: 4 });
      const bitmap = ram.memory.takeDirtyBitmap(0);
      const page = ring.used >>> 12;
      expect(bitmap[page >>> 5] & (1 << (page & 31))).to.not.equal(0);
    });

    it('notifies unless the driver set NO_INTERRUPT, without EVENT_IDX', () => {
      const { ring, q } = setup();
      ring.add([{ addr: 0x8000, len: 4 }]);
      q.pushUsed(q.pop()!.head, 0);
      expect(q.needsNotification()).to.equal(true);
      ring.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
      expect(q.needsNotification()).to.equal(false);
    });

    it('suppresses notifications until used_event is crossed, with EVENT_IDX', () => {
      const { ring, q } = setup({ eventIdx: true });
      for (let i = 0; i < 4; i++) ring.add([{ addr: 0x8000, len: 4 }]);
      ring.setUsedEvent(2); // interrupt me once the third entry is used
      q.pushUsed(q.pop()!.head, 0);
      expect(q.needsNotification()).to.equal(true); // the first check always notifies
      q.pushUsed(q.pop()!.head, 0);
      expect(q.needsNotification()).to.equal(false);
      q.pushUsed(q.pop()!.head, 0);
      expect(q.needsNotification()).to.equal(true);
      q.pushUsed(q.pop()!.head, 0);
      expect(q.needsNotification()).to.equal(false);
    });

    it('publishes avail_event so the driver kicks only for new buffers, with EVENT_IDX', () => {
      const { ring, q } = setup({ eventIdx: true });
      ring.add([{ addr: 0x8000, len: 4 }]);
      ring.add([{ addr: 0x8000, len: 4 }]);
      q.pop();
      expect(ring.availEvent()).to.equal(1);
      q.pop();
      expect(q.pop()).to.equal(null);
      expect(ring.availEvent()).to.equal(2);
    });
  });

  describe('state', () => {
    it('round-trips and continues from the saved indices', () => {
      const { ram, ring, q } = setup({ eventIdx: true });
      ring.add([{ addr: 0x8000, len: 4 }]);
      q.pushUsed(q.pop()!.head, 0);
      q.needsNotification();
      const saved = JSON.parse(JSON.stringify(q.saveState()));
      const copy = new Virtqueue(ram.memory, 16);
      copy.restoreState(saved);
      expect(copy.saveState()).to.deep.equal(q.saveState());
      copy.activate(true, true);
      const head = ring.add([{ addr: 0x9000, len: 8 }]);
      expect(copy.pop()!.head).to.equal(head);
      copy.pushUsed(head, 0);
      expect(ring.usedIdx()).to.equal(2);
    });

    it('refuses a snapshot with bad fields', () => {
      const { q } = setup();
      const good = q.saveState();
      for (const [k, v] of [['nextAvail', 70000], ['descTable', 12], ['ready', 1], ['size', 65536]] as const) {
        expect(() => new Virtqueue(new FakeRam().memory, 16).restoreState({ ...good, [k]: v } as never))
          .to.throw(VirtqueueStateError).with.property('field', k);
      }
    });

    it('returns to power-on on reset', () => {
      const { q } = setup();
      q.reset();
      expect(q.saveState()).to.deep.equal(new Virtqueue(new FakeRam().memory, 16).saveState());
      expect(q.isLive).to.equal(false);
    });
  });
});
