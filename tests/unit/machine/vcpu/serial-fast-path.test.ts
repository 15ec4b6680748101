// Unit tests of the COM1 fast path with a real UART model: what main publishes, what the worker answers itself, and that the model sees every byte in order before anything else.
import { expect } from 'chai';
import { Worker } from 'node:worker_threads';
import { Bus } from '../../../../devices/bus.js';
import { RecordingIrqLine } from '../../../../devices/irq.js';
import { Serial8250 } from '../../../../devices/serial-8250.js';
import { SerialFastPath } from '../../../../machine/vcpu/serial-fast-path.js';
import { SerialFastPathWorker } from '../../../../machine/vcpu/serial-fast-path-worker.js';
import { RING } from '../../../../machine/vcpu/serial-ring.js';

const COM1 = 0x3f8;
const THR = COM1;
const IER = COM1 + 1;
const FCR = COM1 + 2;
const LCR = COM1 + 3;
const LSR = COM1 + 5;
const IN = 0;
const OUT = 1;

function setup(vcpus = 1) {
  const irq = new RecordingIrqLine();
  let output = '';
  const uart = new Serial8250(irq, (b) => (output += Buffer.from(b).toString('latin1')));
  const fast = new SerialFastPath(uart, COM1);
  const bus = new Bus('pio');
  bus.register(COM1, 8, fast.busDevice, 'serial0');
  fast.publish();
  // One "worker" per vCPU, with its own kvm_run-like data page.
  const workers = Array.from({ length: vcpus }, () => {
    const { channel, reader } = fast.attach();
    return { worker: new SerialFastPathWorker(channel), channel, reader, run: new Uint8Array(64) };
  });
  /** What a vCPU's byte OUT does: the worker answers it, or it is posted (drain, then the bus). */
  const outb = (vcpu: number, port: number, value: number) => {
    const w = workers[vcpu];
    w.run[8] = value;
    if (w.worker.io(OUT, port, 1, 1, w.run, 8)) return 'fast';
    fast.drain();
    bus.write(port, Uint8Array.of(value));
    return 'slow';
  };
  const inb = (vcpu: number, port: number) => {
    const w = workers[vcpu];
    if (w.worker.io(IN, port, 1, 1, w.run, 8)) return { value: w.run[8], path: 'fast' };
    fast.drain();
    const d = new Uint8Array(1);
    bus.read(port, d);
    return { value: d[0], path: 'slow' };
  };
  const print = (vcpu: number, text: string) => {
    for (const c of Buffer.from(text, 'latin1')) outb(vcpu, THR, c);
  };
  return { irq, uart, fast, bus, workers, outb, inb, print, output: () => output };
}

describe('serial fast path', () => {
  describe('publication', () => {
    it('allows the fast path for a power-on UART, with THRE and TEMT', () => {
      const { fast } = setup();
      expect(fast.published).to.deep.equal({ allowed: true, lsr: 0x60 });
    });

    it('withdraws it as soon as a posted access sets DLAB, and restores it when DLAB is cleared', () => {
      const { fast, outb } = setup();
      outb(0, LCR, 0x83);
      expect(fast.published.allowed).to.equal(false);
      expect(outb(0, THR, 0x01), 'divisor latch write').to.equal('slow');
      outb(0, LCR, 0x03);
      expect(fast.published.allowed).to.equal(true);
    });

    it('keeps the slow path for a guest that enables THR-empty interrupts (as Linux does)', () => {
      const { fast, outb, inb, print, output } = setup();
      outb(0, IER, 0x02);
      expect(fast.published.allowed).to.equal(false);
      expect(outb(0, THR, 0x41)).to.equal('slow');
      expect(inb(0, LSR).path).to.equal('slow');
      print(0, 'BC');
      expect(output()).to.equal('ABC');
    });

    it('reports DR through the fast path only once the owner has published the input, and clears it after RBR is read', () => {
      const { uart, fast, outb, inb } = setup();
      outb(0, FCR, 0x01);
      uart.enqueueInput(Uint8Array.of(0x0d));
      expect(inb(0, LSR)).to.deep.equal({ value: 0x60, path: 'fast' }); // not published yet: as if read just before
      fast.publish();
      expect(inb(0, LSR)).to.deep.equal({ value: 0x61, path: 'fast' });
      expect(inb(0, THR)).to.deep.equal({ value: 0x0d, path: 'slow' }); // RBR reads are always posted
      expect(inb(0, LSR)).to.deep.equal({ value: 0x60, path: 'fast' });
    });
  });

  describe('the worker side', () => {
    it('answers only byte-wide THR writes and LSR reads of its own UART', () => {
      const { workers } = setup();
      const { worker, run } = workers[0];
      expect(worker.io(OUT, THR, 2, 1, run, 0), 'word write').to.equal(false);
      expect(worker.io(OUT, COM1 + 7, 1, 1, run, 0), 'scratch register').to.equal(false);
      expect(worker.io(OUT, LSR, 1, 1, run, 0), 'write to LSR').to.equal(false);
      expect(worker.io(IN, THR, 1, 1, run, 0), 'RBR read').to.equal(false);
      expect(worker.io(IN, LSR, 1, 2, run, 0), 'rep insb from LSR').to.equal(false);
      expect(worker.io(IN, 0x2f8 + 5, 1, 1, run, 0), 'COM2').to.equal(false);
      expect(worker.io(IN, LSR, 1, 1, run, 0)).to.equal(true);
      expect(worker.io(OUT, THR, 1, 1, run, 0)).to.equal(true);
      expect(workers[0].reader.counts()).to.deep.equal({ thrWrites: 1, lsrReads: 1, ringFull: 0 });
    });

    it('falls back to the slow path when the ring is full, and the output stays in order', () => {
      const { fast, outb, output, workers } = setup();
      const text = Array.from({ length: 5000 }, (_, i) => String.fromCharCode(0x20 + (i % 90))).join('');
      const paths = [...text].map((c) => outb(0, THR, c.charCodeAt(0)));
      expect(paths.filter((p) => p === 'slow').length).to.be.greaterThan(0);
      expect(workers[0].reader.counts().ringFull).to.be.greaterThan(0);
      fast.drain();
      expect(output() === text, 'output differs from what was written').to.equal(true);
    });
  });

  describe('ordering', () => {
    it('hands fast-path bytes to the model only when drained, in one output call', () => {
      const { fast, print, output } = setup();
      print(0, 'HB seq=1\n');
      expect(output()).to.equal('');
      fast.drain();
      expect(output()).to.equal('HB seq=1\n');
    });

    it('puts fast-path bytes before a posted access that follows them', () => {
      const { outb, print, output } = setup();
      print(0, 'abc');
      outb(0, LCR, 0x83); // posted: the bus device drains first
      outb(0, THR, 0x01); // DLL
      outb(0, LCR, 0x03);
      print(0, 'def');
      expect(outb(0, COM1 + 4, 0x10)).to.equal('slow'); // loopback on: posted, drains
      print(0, 'g'); // looped back, not output
      expect(output()).to.equal('abcdef');
    });

    it('merges the bytes of several vCPUs in the order they were written', () => {
      const { fast, print, output } = setup(3);
      print(0, 'a');
      print(1, 'b');
      print(2, 'c');
      print(1, 'd');
      print(0, 'e');
      fast.drain();
      expect(output()).to.equal('abcde');
    });

    it('leaves the model in the state THR writes would, so a saved state is the same with or without the fast path', () => {
      const fast = setup();
      const slow = setup();
      for (const s of [fast, slow]) {
        s.outb(0, FCR, 0xc7);
        s.outb(0, IER, 0x01);
      }
      fast.print(0, 'READY\n');
      for (const c of Buffer.from('READY\n')) slow.bus.write(THR, Uint8Array.of(c));
      fast.fast.drain(); // what pause() does before the machine saves device state
      expect(fast.uart.saveState()).to.deep.equal(slow.uart.saveState());
      expect(fast.output()).to.equal(slow.output());
      expect(fast.irq.raises).to.equal(slow.irq.raises);
    });

    it('waits, before a posted access, for a worker still between its decision and its write', async () => {
      const { fast, bus, workers } = setup(2);
      const busy = new Int32Array(workers[1].channel.ring, 0, RING.HEAD + 1);
      Atomics.store(busy, RING.BUSY, 1); // vCPU 1 read "allowed" and is about to write
      const go = new Int32Array(new SharedArrayBuffer(4));
      // Another thread clears BUSY 50 ms after the go signal, as the worker would once its byte is in the ring.
      const releaser = new Worker(
        `const { workerData: { ring, go } } = require('node:worker_threads');
         const g = new Int32Array(go); Atomics.wait(g, 0, 0);
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
         Atomics.store(new Int32Array(ring), ${RING.BUSY}, 0);`,
        { eval: true, workerData: { ring: workers[1].channel.ring, go: go.buffer } },
      );
      await new Promise((resolve) => releaser.once('online', resolve));
      const start = performance.now();
      Atomics.store(go, 0, 1);
      Atomics.notify(go, 0);
      bus.write(LCR, Uint8Array.of(0x83));
      expect(performance.now() - start).to.be.at.least(40);
      expect(Atomics.load(busy, RING.BUSY)).to.equal(0);
      expect(fast.published.allowed).to.equal(false);
      await new Promise((resolve) => releaser.once('exit', resolve));
    });

    it('does not wait for a worker that has exited', () => {
      const { fast, bus, workers } = setup(2);
      Atomics.store(new Int32Array(workers[1].channel.ring), RING.BUSY, 1); // left set by a worker that died mid-write
      fast.detach(workers[1].reader);
      bus.write(LCR, Uint8Array.of(0x83));
      expect(fast.published.allowed).to.equal(false);
    });
  });
});
