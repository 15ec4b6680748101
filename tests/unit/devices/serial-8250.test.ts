// Unit tests of the 16550A UART model, register by register, with a recording IRQ line and output.
import { expect } from 'chai';
import { Serial8250, SerialStateError, SERIAL_FIFO_SIZE } from '../../../devices/serial-8250.js';
import { RecordingIrqLine } from '../../../devices/irq.js';

const THR = 0;
const IER = 1;
const IIR = 2;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

function setup() {
  const irq = new RecordingIrqLine();
  const output: number[] = [];
  const uart = new Serial8250(irq, (bytes) => output.push(...bytes));
  const rd = (off: number) => {
    const d = new Uint8Array(1);
    uart.read(off, d);
    return d[0];
  };
  const wr = (off: number, v: number) => uart.write(off, Uint8Array.of(v));
  return { irq, output, uart, rd, wr };
}

describe('serial-8250', () => {
  describe('transmit and receive', () => {
    it('sends THR writes to the output and keeps THRE and TEMT set', () => {
      const { output, rd, wr } = setup();
      for (const c of 'hi!') wr(THR, c.charCodeAt(0));
      expect(Buffer.from(output).toString()).to.equal('hi!');
      expect(rd(LSR) & 0x60).to.equal(0x60);
    });

    it('hands host input to RBR in order and clears DR when drained', () => {
      const { uart, rd, wr } = setup();
      wr(FCR, 0x01);
      expect(uart.enqueueInput(Uint8Array.of(1, 2, 3))).to.equal(3);
      expect(rd(LSR) & 0x01).to.equal(1);
      expect([rd(THR), rd(THR)]).to.deep.equal([1, 2]);
      expect(rd(LSR) & 0x01).to.equal(1);
      expect(rd(THR)).to.equal(3);
      expect(rd(LSR) & 0x01).to.equal(0);
      expect(rd(THR)).to.equal(0);
    });

    it('holds one byte without FIFO and accepts only what fits', () => {
      const { uart, rd } = setup();
      expect(uart.inputSpace()).to.equal(1);
      expect(uart.enqueueInput(Uint8Array.of(7, 8))).to.equal(1);
      expect(uart.inputSpace()).to.equal(0);
      expect(rd(THR)).to.equal(7);
    });

    it('fills the FIFO to 16 bytes and calls the space listener once the guest reads', () => {
      const { uart, rd, wr } = setup();
      wr(FCR, 0x01);
      let calls = 0;
      uart.onInputSpace(() => calls++);
      const input = new Uint8Array(20).map((_, i) => i);
      expect(uart.enqueueInput(input)).to.equal(SERIAL_FIFO_SIZE);
      expect(uart.inputSpace()).to.equal(0);
      expect(calls).to.equal(0);
      rd(THR);
      expect(calls).to.equal(1);
      expect(uart.enqueueInput(input.subarray(16))).to.equal(1);
    });

    it('lets the space listener refill the FIFO from inside the read that freed room', () => {
      const { uart, rd, wr } = setup();
      wr(FCR, 0x01);
      const pending = [...new Uint8Array(18).keys()];
      const feed = () => pending.splice(0, uart.enqueueInput(Uint8Array.from(pending)));
      uart.onInputSpace(feed);
      feed();
      const got: number[] = [];
      while (rd(LSR) & 0x01) got.push(rd(THR));
      expect(got).to.deep.equal([...new Uint8Array(18).keys()]);
    });

    it('refuses host input in loopback and wants it again once loopback ends', () => {
      const { uart, wr } = setup();
      let calls = 0;
      uart.onInputSpace(() => calls++);
      wr(MCR, 0x10);
      expect(uart.enqueueInput(Uint8Array.of(1))).to.equal(0);
      wr(MCR, 0x08);
      expect(calls).to.equal(1);
      expect(uart.inputSpace()).to.equal(1);
    });
  });

  describe('registers', () => {
    it('maps offsets 0 and 1 to the divisor latch while DLAB is set', () => {
      const { rd, wr } = setup();
      wr(IER, 0x05);
      wr(LCR, 0x83);
      expect([rd(0), rd(1)]).to.deep.equal([0x0c, 0x00]);
      wr(0, 0x01);
      wr(1, 0x02);
      expect([rd(0), rd(1)]).to.deep.equal([0x01, 0x02]);
      wr(LCR, 0x03);
      expect(rd(IER)).to.equal(0x05);
      expect(rd(LCR)).to.equal(0x03);
    });

    it('keeps only the four 16550A bits of IER', () => {
      const { rd, wr } = setup();
      wr(IER, 0xff);
      expect(rd(IER)).to.equal(0x0f);
      wr(IER, 0);
      expect(rd(IER)).to.equal(0);
    });

    it('stores the scratch register', () => {
      const { rd, wr } = setup();
      wr(SCR, 0x5a);
      expect(rd(SCR)).to.equal(0x5a);
    });

    it('reads only the first byte of a wider access', () => {
      const { uart, wr } = setup();
      wr(SCR, 0x5a);
      uart.write(LCR, Uint8Array.of(0x03, 0x1f));
      const d = new Uint8Array(2).fill(0xee);
      uart.read(SCR, d);
      expect([...d]).to.deep.equal([0x5a, 0]);
      uart.read(MCR, d);
      expect(d[0]).to.equal(0x08);
    });

    it('reports DCD, DSR and CTS outside loopback', () => {
      const { rd } = setup();
      expect(rd(MSR)).to.equal(0xb0);
    });

    it('passes Linux autoconfig: MSR reflects RTS and OUT2 in loopback', () => {
      const { rd, wr } = setup();
      wr(MCR, 0x10 | 0x0a);
      expect(rd(MSR) & 0xf0).to.equal(0x90);
      wr(MCR, 0x10 | 0x05);
      expect(rd(MSR) & 0xf0).to.equal(0x60);
    });

    it('reports a 16550A FIFO in IIR bits 6-7 only while the FIFO is enabled', () => {
      const { rd, wr } = setup();
      expect(rd(IIR)).to.equal(0x01);
      wr(FCR, 0x01);
      expect(rd(IIR)).to.equal(0xc1);
      wr(FCR, 0x00);
      expect(rd(IIR)).to.equal(0x01);
    });

    it('records modem status deltas in loopback and clears them on MSR read', () => {
      const { rd, wr } = setup();
      wr(MCR, 0x10 | 0x08);
      wr(MCR, 0x10 | 0x08 | 0x03);
      expect(rd(MSR)).to.equal(0x80 | 0x30 | 0x03);
      expect(rd(MSR)).to.equal(0xb0);
    });

    it('flags RI only on its trailing edge', () => {
      const { rd, wr } = setup();
      wr(MCR, 0x10 | 0x0b);
      rd(MSR);
      wr(MCR, 0x10 | 0x0f);
      expect(rd(MSR)).to.equal(0xf0);
      wr(MCR, 0x10 | 0x0b);
      expect(rd(MSR)).to.equal(0xb0 | 0x04);
    });
  });

  describe('loopback and overrun', () => {
    it('turns transmitted bytes into received ones in loopback without output', () => {
      const { output, rd, wr } = setup();
      wr(FCR, 0x01);
      wr(MCR, 0x10);
      wr(THR, 0x41);
      wr(THR, 0x42);
      expect(output).to.deep.equal([]);
      expect([rd(THR), rd(THR)]).to.deep.equal([0x41, 0x42]);
    });

    it('sets OE when a byte arrives with the receiver full, and clears it on LSR read', () => {
      const { rd, wr } = setup();
      wr(MCR, 0x10);
      wr(THR, 1);
      wr(THR, 2);
      expect(rd(LSR) & 0x03).to.equal(0x03);
      expect(rd(LSR) & 0x02).to.equal(0);
      expect(rd(THR)).to.equal(2);
    });

    it('loses the overrunning byte but keeps the FIFO contents', () => {
      const { rd, wr } = setup();
      wr(FCR, 0x01);
      wr(MCR, 0x10);
      for (let i = 0; i <= SERIAL_FIFO_SIZE; i++) wr(THR, i);
      expect(rd(LSR) & 0x02).to.equal(0x02);
      const got: number[] = [];
      while (rd(LSR) & 0x01) got.push(rd(THR));
      expect(got).to.deep.equal([...new Uint8Array(SERIAL_FIFO_SIZE).keys()]);
    });
  });

  describe('FIFO control', () => {
    it('flushes received data on an RX reset', () => {
      const { uart, rd, wr } = setup();
      wr(FCR, 0x01);
      uart.enqueueInput(Uint8Array.of(1, 2, 3));
      wr(FCR, 0x03);
      expect(rd(LSR) & 0x01).to.equal(0);
      expect(uart.inputSpace()).to.equal(SERIAL_FIFO_SIZE);
    });

    it('flushes both FIFOs when FIFO mode is toggled', () => {
      const { uart, rd, wr } = setup();
      uart.enqueueInput(Uint8Array.of(9));
      wr(FCR, 0x01);
      expect(rd(LSR) & 0x01).to.equal(0);
    });

    it('reports a data interrupt at the trigger level and a timeout below it', () => {
      const { irq, uart, rd, wr } = setup();
      wr(FCR, 0x81); // 8-byte trigger
      wr(IER, 0x01);
      uart.enqueueInput(new Uint8Array(7));
      expect(irq.level).to.equal(true);
      expect(rd(IIR)).to.equal(0xcc);
      uart.enqueueInput(new Uint8Array(1));
      expect(rd(IIR)).to.equal(0xc4);
      rd(THR);
      expect(rd(IIR)).to.equal(0xcc);
    });
  });

  describe('interrupts', () => {
    it('raises the line for received data and lowers it once RBR is drained', () => {
      const { irq, uart, rd, wr } = setup();
      wr(IER, 0x01);
      expect(irq.level).to.equal(false);
      uart.enqueueInput(Uint8Array.of(0x61));
      expect(irq.level).to.equal(true);
      expect(rd(IIR)).to.equal(0x04);
      rd(THR);
      expect(irq.level).to.equal(false);
      expect(rd(IIR)).to.equal(0x01);
    });

    it('raises THRI as soon as ETBEI is enabled with THR empty, as Linux probes for', () => {
      const { irq, rd, wr } = setup();
      wr(IER, 0x02);
      expect(irq.level).to.equal(true);
      expect(rd(IIR)).to.equal(0x02);
      expect(irq.level).to.equal(false);
      expect(rd(IIR)).to.equal(0x01);
      wr(IER, 0x00);
      wr(IER, 0x02);
      expect(rd(IIR)).to.equal(0x02);
    });

    it('gives a fresh THRI edge for every THR write', () => {
      const { irq, rd, wr } = setup();
      wr(IER, 0x02);
      rd(IIR);
      const before = irq.raises;
      wr(THR, 0x41);
      expect(irq.level).to.equal(true);
      expect(irq.raises).to.equal(before + 1);
      wr(THR, 0x42);
      expect(irq.raises).to.equal(before + 2);
    });

    it('does not acknowledge THRI when IIR reports a higher-priority source', () => {
      const { irq, uart, rd, wr } = setup();
      wr(IER, 0x03);
      uart.enqueueInput(Uint8Array.of(1));
      expect(rd(IIR)).to.equal(0x04);
      rd(THR);
      expect(irq.level).to.equal(true);
      expect(rd(IIR)).to.equal(0x02);
      expect(irq.level).to.equal(false);
    });

    it('orders line status above data, data above THR empty, THR empty above modem status', () => {
      const { rd, wr } = setup();
      wr(MCR, 0x10);
      wr(THR, 1);
      wr(THR, 2); // overrun with one byte held
      wr(MCR, 0x13); // loopback lines change: modem deltas
      wr(IER, 0x0f);
      expect(rd(IIR)).to.equal(0x06);
      rd(LSR);
      expect(rd(IIR)).to.equal(0x04);
      rd(THR);
      expect(rd(IIR)).to.equal(0x02);
      expect(rd(IIR)).to.equal(0x00);
      rd(MSR);
      expect(rd(IIR)).to.equal(0x01);
    });

    it('raises the interrupt with OUT2 clear, as QEMU does', () => {
      const { irq, uart, wr } = setup();
      wr(MCR, 0x00);
      wr(IER, 0x01);
      uart.enqueueInput(Uint8Array.of(1));
      expect(irq.level).to.equal(true);
    });
  });

  describe('state', () => {
    it('round-trips registers and the receive FIFO', () => {
      const a = setup();
      a.wr(LCR, 0x80);
      a.wr(0, 0x01);
      a.wr(LCR, 0x1b);
      a.wr(FCR, 0x41);
      a.wr(SCR, 0x77);
      a.wr(IER, 0x05);
      a.uart.enqueueInput(Uint8Array.of(5, 6, 7));
      const state = a.uart.saveState();
      expect(JSON.parse(JSON.stringify(state))).to.deep.equal(state);

      const b = setup();
      b.uart.restoreState(state);
      expect(b.uart.saveState()).to.deep.equal(state);
      expect([b.rd(LCR), b.rd(SCR), b.rd(IER), b.rd(IIR)]).to.deep.equal([0x1b, 0x77, 0x05, 0xcc]);
      expect([b.rd(THR), b.rd(THR), b.rd(THR)]).to.deep.equal([5, 6, 7]);
    });

    it('re-raises a pending THR interrupt after restore', () => {
      const a = setup();
      a.wr(IER, 0x02);
      const state = a.uart.saveState();
      expect(state.thrInterruptPending).to.equal(1);
      const b = setup();
      b.uart.restoreState(state);
      expect(b.irq.level).to.equal(true);
      expect(b.rd(IIR)).to.equal(0x02);
    });

    it('drives the line low after restoring a state with nothing pending', () => {
      const b = setup();
      b.wr(IER, 0x02);
      b.uart.restoreState(setup().uart.saveState());
      expect(b.irq.level).to.equal(false);
    });

    it('refuses a malformed state, naming the field, and leaves the UART untouched', () => {
      const { uart, rd, wr } = setup();
      wr(SCR, 0x11);
      const good = uart.saveState();
      const bad = (patch: object) => ({ ...good, ...patch }) as typeof good;
      expect(() => uart.restoreState(bad({ scr: 0x100 }))).to.throw(SerialStateError, /scr/);
      expect(() => uart.restoreState(bad({ ier: 0x10 }))).to.throw(SerialStateError, /ier/);
      expect(() => uart.restoreState(bad({ lcr: '3' }))).to.throw(SerialStateError, /lcr/);
      expect(() => uart.restoreState(bad({ rxFifo: [1, 2] }))).to.throw(SerialStateError, /rxFifo/);
      expect(() => uart.restoreState(bad({ fcr: 1, rxFifo: [1, 256] }))).to.throw(SerialStateError, /rxFifo\[1\]/);
      expect(() => uart.restoreState(bad({ dll: -1 })))
        .to.throw(SerialStateError)
        .that.includes({ field: 'dll', code: 'ERR_DEVICE_STATE' });
      expect(rd(SCR)).to.equal(0x11);
    });
  });
});
