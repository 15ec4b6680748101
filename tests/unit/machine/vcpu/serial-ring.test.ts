// Unit tests of the COM1 fast path's shared ring: order across the wrap, refusals, wake-ups, sequence numbers, and a real worker thread writing while main drains.
import { expect } from 'chai';
import { Worker } from 'node:worker_threads';
import {
  FAST_PATH_ALLOWED, PUB, PUBLICATION_BYTES, RING, ringBufferBytes, seqBefore, SerialRingReader, SerialRingWriter,
} from '../../../../machine/vcpu/serial-ring.js';

const LSR_IDLE = 0x60;

function setup(capacity = 16) {
  const publication = new SharedArrayBuffer(PUBLICATION_BYTES);
  const pub = new Int32Array(publication);
  const ring = new SharedArrayBuffer(ringBufferBytes(capacity));
  const ctl = new Int32Array(ring, 0, 32);
  const writer = new SerialRingWriter(publication, ring);
  const reader = new SerialRingReader(ring);
  const allow = () => Atomics.store(pub, PUB.STATE, FAST_PATH_ALLOWED | LSR_IDLE);
  allow();
  /** Takes everything pending as a string. */
  const drain = () => {
    const out = new Uint8Array(reader.refresh());
    reader.takeAll(out, 0);
    reader.release();
    return Buffer.from(out).toString('latin1');
  };
  return { publication, pub, ring, ctl, writer, reader, allow, drain };
}

const bytes = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));

describe('serial fast-path ring', () => {
  it('hands written bytes to the reader in order, also across the wrap', () => {
    const { writer, drain } = setup(16);
    let expected = '';
    let got = '';
    for (let round = 0; round < 10; round++) {
      const text = `line ${round}\n`;
      const src = bytes(`xx${text}`);
      for (let i = 0; i < text.length; i++) expect(writer.write(src, 2 + i, 1)).to.equal(true);
      expected += text;
      got += drain();
    }
    expect(got).to.equal(expected);
  });

  it('takes a string write (rep outsb) whole or not at all', () => {
    const { writer, reader, drain } = setup(16);
    expect(writer.write(bytes('0123456789'), 0, 10)).to.equal(true);
    expect(writer.write(bytes('abcdefg'), 0, 7)).to.equal(false); // 10 + 7 > 16
    expect(reader.counts().ringFull).to.equal(1);
    expect(writer.write(bytes('abcdef'), 0, 6)).to.equal(true);
    expect(drain()).to.equal('0123456789abcdef');
  });

  it('refuses writes while the fast path is not published, and leaves the ring untouched', () => {
    const { pub, writer, reader, ctl } = setup();
    Atomics.store(pub, PUB.STATE, 0);
    expect(writer.write(bytes('a'), 0, 1)).to.equal(false);
    expect(reader.refresh()).to.equal(0);
    expect(Atomics.load(ctl, RING.BUSY)).to.equal(0);
    expect(reader.counts()).to.deep.equal({ thrWrites: 0, lsrReads: 0, ringFull: 0 });
  });

  it('falls back once the ring is full, and takes bytes again once main has drained', () => {
    const { writer, reader, drain } = setup(4);
    for (let i = 0; i < 4; i++) expect(writer.write(bytes('abcd'), i, 1)).to.equal(true);
    expect(writer.write(bytes('e'), 0, 1)).to.equal(false);
    expect(reader.counts()).to.deep.equal({ thrWrites: 4, lsrReads: 0, ringFull: 1 });
    expect(drain()).to.equal('abcd');
    expect(writer.write(bytes('e'), 0, 1)).to.equal(true);
    expect(drain()).to.equal('e');
  });

  it('wakes the reader only when a write finds the ring emptied', () => {
    const { writer, reader, ctl } = setup();
    const wake = () => Atomics.load(ctl, RING.WAKE);
    writer.write(bytes('a'), 0, 1);
    expect(wake()).to.equal(1);
    writer.write(bytes('b'), 0, 1); // main has not taken 'a' yet: it is already woken
    expect(wake()).to.equal(1);
    reader.refresh();
    reader.takeAll(new Uint8Array(2), 0);
    expect(reader.release()).to.equal(true);
    writer.write(bytes('c'), 0, 1);
    expect(wake()).to.equal(2);
  });

  it('tells the reader to read again when bytes arrived between its refresh and its release (no lost wake-up)', () => {
    const { writer, reader, ctl } = setup();
    writer.write(bytes('a'), 0, 1);
    expect(reader.refresh()).to.equal(1);
    reader.take();
    writer.write(bytes('b'), 0, 1); // sees 'a' still unreleased: no wake
    expect(Atomics.load(ctl, RING.WAKE)).to.equal(1);
    expect(reader.release()).to.equal(false);
    expect(reader.refresh()).to.equal(1);
    expect(reader.take()).to.equal('b'.charCodeAt(0));
    expect(reader.release()).to.equal(true);
  });

  it('stamps bytes with sequence numbers from the machine-wide counter', () => {
    const a = setup();
    const ringB = new SharedArrayBuffer(ringBufferBytes(16));
    const writerB = new SerialRingWriter(a.publication, ringB);
    const readerB = new SerialRingReader(ringB);
    a.writer.write(bytes('x'), 0, 1);
    writerB.write(bytes('yz'), 0, 2);
    a.writer.write(bytes('w'), 0, 1);
    a.reader.refresh();
    readerB.refresh();
    const seqs = [a.reader.peekSeq(), readerB.peekSeq()];
    a.reader.take();
    readerB.take();
    seqs.push(readerB.peekSeq(), a.reader.peekSeq());
    expect(seqs).to.deep.equal([0, 1, 2, 3]);
    expect(Atomics.load(a.pub, PUB.SEQ)).to.equal(4);
  });

  it('orders sequence numbers across the 2^32 wrap', () => {
    expect(seqBefore(1, 2)).to.equal(true);
    expect(seqBefore(2, 1)).to.equal(false);
    expect(seqBefore(0x7fffffff, 0x7fffffff + 1 | 0)).to.equal(true);
    expect(seqBefore(-1, 0)).to.equal(true);
    expect(seqBefore(5, 5)).to.equal(false);
  });

  it('refuses a buffer whose capacity is not a power of two', () => {
    expect(() => new SerialRingReader(new SharedArrayBuffer(ringBufferBytes(12)))).to.throw(RangeError, /power of two/);
  });

  it('delivers every byte in order while a worker thread writes and main drains on wake-ups', async function () {
    this.timeout(20000);
    const { ring, publication, reader } = setup(256);
    const total = 100_000;
    const ringModule = new URL('../../../../machine/vcpu/serial-ring.js', import.meta.url).href;
    // The worker writes byte i = i mod 251 as fast as it can, retrying 1 ms later while the ring is full.
    const worker = new Worker(
      `const { workerData } = require('node:worker_threads');
       import(workerData.ringModule).then(({ SerialRingWriter }) => {
         const w = new SerialRingWriter(workerData.publication, workerData.ring);
         const b = new Uint8Array(1);
         const nap = new Int32Array(new SharedArrayBuffer(4));
         for (let i = 0; i < workerData.total; i++) { b[0] = i % 251; while (!w.write(b, 0, 1)) Atomics.wait(nap, 0, 0, 1); }
       });`,
      { eval: true, workerData: { ringModule, publication, ring, total } },
    );
    const exited = new Promise((resolve) => worker.on('exit', resolve));
    const { ctl, index } = reader.wakeSlot;
    let received = 0;
    let lostWakeups = 0;
    let seen = Atomics.load(ctl, index);
    const deadline = Date.now() + 15000;
    while (received < total && Date.now() < deadline) {
      // A writer that fills an empty ring always wakes us: a timed-out wait with bytes still to come would be a lost wake-up.
      const w = Atomics.waitAsync(ctl, index, seen, 2000);
      if (w.async && (await w.value) === 'timed-out') lostWakeups++;
      seen = Atomics.load(ctl, index);
      for (;;) {
        const n = reader.refresh();
        for (let i = 0; i < n; i++) {
          const b = reader.take();
          if (b !== received % 251) throw new Error(`byte ${received} is ${b}, expected ${received % 251}`);
          received++;
        }
        if (reader.release()) break;
      }
    }
    await exited;
    expect(received).to.equal(total);
    expect(lostWakeups).to.equal(0);
    expect(reader.counts().thrWrites).to.equal(total);
  });
});
