// Unit tests of the i8042 model: Linux's probe sequence, the reset paths, IRQ 1 and state round trip.
import { expect } from 'chai';
import { I8042, I8042StateError } from '../../../devices/i8042.js';
import { RecordingIrqLine } from '../../../devices/irq.js';

const OBF = 0x01;
const IBF = 0x02;
const AUXDATA = 0x20;
const TIMEOUT = 0x40;
const KEYLOCK_OFF = 0x10;

function setup() {
  let resets = 0;
  const irq = new RecordingIrqLine();
  const kbc = new I8042({ onReset: () => resets++, irq });
  const status = () => {
    const d = new Uint8Array(1);
    kbc.commandPort.read(0, d);
    return d[0];
  };
  const readData = () => {
    const d = new Uint8Array(1);
    kbc.dataPort.read(0, d);
    return d[0];
  };
  const writeCommand = (v: number) => kbc.commandPort.write(0, Uint8Array.of(v));
  const writeData = (v: number) => kbc.dataPort.write(0, Uint8Array.of(v));
  /** Linux's __i8042_command: wait for IBF clear, send, then collect each reply once OBF sets. */
  const command = (cmd: number, params: number[] = [], replies = 0): number[] => {
    expect(status() & IBF).to.equal(0);
    writeCommand(cmd);
    for (const p of params) {
      expect(status() & IBF).to.equal(0);
      writeData(p);
    }
    const out: number[] = [];
    for (let i = 0; i < replies; i++) {
      expect(status() & OBF, `reply ${i} to 0x${cmd.toString(16)}`).to.equal(OBF);
      out.push(readData());
    }
    return out;
  };
  return { kbc, irq, status, readData, writeCommand, writeData, command, resets: () => resets };
}

describe('i8042', () => {
  it('passes the probe sequence Linux runs at boot', () => {
    const { status, command } = setup();
    // i8042_controller_check: flush finds nothing waiting; the keylock is off.
    expect(status() & OBF).to.equal(0);
    expect(status() & KEYLOCK_OFF).to.equal(KEYLOCK_OFF);
    // i8042_controller_init: two identical CTR reads, then write it back with the keyboard held off.
    const [ctr] = command(0x20, [], 1);
    expect(command(0x20, [], 1)).to.deep.equal([ctr]);
    expect(ctr & 0x40).to.equal(0x40);
    command(0x60, [(ctr | 0x10) & ~0x01]);
    expect(command(0x20, [], 1)).to.deep.equal([(ctr | 0x10) & ~0x01]);
    // i8042_controller_selftest and the keyboard interface test.
    expect(command(0xaa, [], 1)).to.deep.equal([0x55]);
    expect(command(0xab, [], 1)).to.deep.equal([0x00]);
    expect(status() & 0x04).to.equal(0x04);
  });

  it('echoes the AUX loopback byte from the AUX side and toggles AUXDIS', () => {
    const { status, readData, writeCommand, writeData, command } = setup();
    writeCommand(0xd3);
    writeData(0x5a);
    expect(status() & (OBF | AUXDATA)).to.equal(OBF | AUXDATA);
    expect(readData()).to.equal(0x5a);
    expect(status() & (OBF | AUXDATA)).to.equal(0);
    command(0xa7);
    expect(command(0x20, [], 1)[0] & 0x20).to.equal(0x20);
    command(0xa8);
    expect(command(0x20, [], 1)[0] & 0x20).to.equal(0);
    command(0xad);
    expect(command(0x20, [], 1)[0] & 0x10).to.equal(0x10);
    command(0xae);
    expect(command(0x20, [], 1)[0] & 0x10).to.equal(0);
  });

  it('answers a byte for the absent keyboard with 0xFE and the timeout bit, raising IRQ 1', () => {
    const { irq, status, readData, writeData } = setup();
    writeData(0xf2);
    expect(status() & (OBF | TIMEOUT)).to.equal(OBF | TIMEOUT);
    expect(irq.level).to.equal(true);
    expect(readData()).to.equal(0xfe);
    expect(irq.level).to.equal(false);
    expect(status() & TIMEOUT).to.equal(0);
  });

  it('raises IRQ 1 for controller replies only while the command byte enables it', () => {
    const { irq, readData, command } = setup();
    command(0x60, [0x44]);
    command(0x20);
    expect(irq.level).to.equal(false);
    readData();
    command(0x60, [0x45]);
    command(0xaa);
    expect(irq.level).to.equal(true);
    readData();
    expect(irq.level).to.equal(false);
  });

  it('resets the machine on the 0xFE pulse that reboot=k sends', () => {
    const k = setup();
    k.writeCommand(0xfe);
    expect(k.resets()).to.equal(1);
    k.writeCommand(0xff); // pulses no line
    expect(k.resets()).to.equal(1);
  });

  it('resets the machine when 0xD1 clears output-port bit 0, not when it sets it', () => {
    const k = setup();
    expect(k.command(0xd0, [], 1)[0] & 0x01).to.equal(0x01);
    k.command(0xd1, [0x03]);
    expect(k.resets()).to.equal(0);
    k.command(0xd1, [0x02]);
    expect(k.resets()).to.equal(1);
  });

  it('treats a data byte after a parameterless command as keyboard data', () => {
    const k = setup();
    k.command(0xa7);
    k.writeData(0x01);
    expect(k.readData()).to.equal(0xfe);
    expect(k.command(0x20, [], 1)[0]).to.not.equal(0x01);
  });

  it('round-trips its state and re-raises IRQ 1 for a waiting byte', () => {
    const a = setup();
    a.command(0x60, [0x65]);
    a.writeCommand(0xaa);
    a.writeCommand(0xd1);
    const state = a.kbc.saveState();
    expect(JSON.parse(JSON.stringify(state))).to.deep.equal(state);
    const b = setup();
    b.kbc.restoreState(state);
    expect(b.kbc.saveState()).to.deep.equal(state);
    expect(b.irq.level).to.equal(true);
    expect(b.readData()).to.equal(0x55);
    b.writeData(0x00); // the pending 0xD1 parameter
    expect(b.resets()).to.equal(1);
  });

  it('refuses a malformed state, naming the field', () => {
    const { kbc } = setup();
    const good = kbc.saveState();
    expect(() => kbc.restoreState({ ...good, pendingCommand: 0x20 }))
      .to.throw(I8042StateError)
      .that.includes({ field: 'pendingCommand' });
    expect(() => kbc.restoreState({ ...good, status: 0x02 })).to.throw(I8042StateError, /status/);
    expect(() => kbc.restoreState({ ...good, commandByte: 1.5 })).to.throw(I8042StateError, /commandByte/);
  });
});
