// Unit tests of what the UART model tells the COM1 fast path: when THR writes and LSR reads are exact outside it, and that transmit() equals THR writes.
import { expect } from 'chai';
import { Serial8250 } from '../../../devices/serial-8250.js';
import { RecordingIrqLine } from '../../../devices/irq.js';

const THR = 0;
const IER = 1;
const IIR = 2;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const THRE_TEMT = 0x60;

function setup() {
  const irq = new RecordingIrqLine();
  const output: number[] = [];
  const outputCalls: number[] = [];
  const uart = new Serial8250(irq, (bytes) => {
    output.push(...bytes);
    outputCalls.push(bytes.length);
  });
  const rd = (off: number) => {
    const d = new Uint8Array(1);
    uart.read(off, d);
    return d[0];
  };
  const wr = (off: number, v: number) => uart.write(off, Uint8Array.of(v));
  return { irq, output, outputCalls, uart, rd, wr };
}

describe('serial-8250 fast-path support', () => {
  describe('fastPathLsr', () => {
    it('allows the fast path at power-on and reports THRE and TEMT', () => {
      const { uart, rd } = setup();
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT);
      expect(rd(LSR)).to.equal(THRE_TEMT);
    });

    it('reports DR while received bytes wait, exactly as an LSR read would', () => {
      const { uart, rd, wr } = setup();
      wr(FCR, 0x01);
      uart.enqueueInput(Uint8Array.of(0x41, 0x42));
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT | 0x01);
      expect(uart.fastPathLsr()).to.equal(rd(LSR));
      rd(THR);
      rd(THR);
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT);
    });

    it('refuses while DLAB is set, so port +0 is the divisor latch', () => {
      const { uart, wr } = setup();
      wr(LCR, 0x83);
      expect(uart.fastPathLsr()).to.equal(-1);
      wr(LCR, 0x03);
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT);
    });

    it('refuses in loopback, where THR bytes are received rather than sent', () => {
      const { uart, wr } = setup();
      wr(MCR, 0x10);
      expect(uart.fastPathLsr()).to.equal(-1);
    });

    it('refuses while the THR-empty interrupt is enabled (a THR write then drives the IRQ line)', () => {
      const { uart, wr } = setup();
      wr(IER, 0x02);
      expect(uart.fastPathLsr()).to.equal(-1);
      wr(IER, 0x01); // received-data interrupts alone do not involve THR or LSR reads
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT);
    });

    it('refuses while a sticky line error is pending, since reading LSR clears it', () => {
      const { uart, rd, wr } = setup();
      wr(MCR, 0x10);
      wr(THR, 1);
      wr(THR, 2); // overrun of the one-byte holding register
      wr(MCR, 0x00);
      expect(uart.fastPathLsr()).to.equal(-1);
      expect(rd(LSR) & 0x02).to.equal(0x02);
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT | 0x01);
    });

    it('refuses while an input-space callback is due, since any access would fire it', () => {
      const { uart, rd } = setup();
      let fired = 0;
      uart.onInputSpace(() => fired++);
      expect(uart.enqueueInput(Uint8Array.of(1, 2))).to.equal(1);
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT | 0x01); // full: nothing due yet
      uart.restoreState({ ...uart.saveState(), rxFifo: [] }); // room again without a guest access
      expect(uart.fastPathLsr()).to.equal(-1);
      rd(LSR);
      expect(fired).to.equal(1);
      expect(uart.fastPathLsr()).to.equal(THRE_TEMT);
    });
  });

  describe('transmit', () => {
    it('outputs the bytes in one call, in order', () => {
      const { uart, output, outputCalls } = setup();
      uart.transmit(Uint8Array.from([104, 105, 10]));
      expect(Buffer.from(output).toString()).to.equal('hi\n');
      expect(outputCalls).to.deep.equal([3]);
      uart.transmit(new Uint8Array(0));
      expect(outputCalls).to.deep.equal([3]);
    });

    it('leaves the same state and IRQ history as writing the bytes to THR', () => {
      const a = setup();
      const b = setup();
      for (const s of [a, b]) {
        s.wr(FCR, 0xc7);
        s.wr(IER, 0x01);
        s.uart.enqueueInput(Uint8Array.of(7));
      }
      const text = Buffer.from('HB seq=1 t=123\n');
      for (const c of text) a.wr(THR, c);
      b.uart.transmit(text);
      expect(b.uart.saveState()).to.deep.equal(a.uart.saveState());
      expect(b.output).to.deep.equal(a.output);
      expect([b.irq.level, b.irq.raises]).to.deep.equal([a.irq.level, a.irq.raises]);
      // Enabling the THR-empty interrupt afterwards behaves the same on both.
      a.wr(IER, 0x03);
      b.wr(IER, 0x03);
      expect(b.rd(IIR)).to.equal(a.rd(IIR));
    });
  });
});
