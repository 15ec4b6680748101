// Unit tests of the port/MMIO bus: dispatch by range, unmapped accesses, overlap refusal.
import { expect } from 'chai';
import { Bus, BusConflictError, dataToNumber, numberToData, type BusDevice } from '../../../devices/bus.js';

class Recorder implements BusDevice {
  writes: [number, number][] = [];
  read(offset: number, data: Uint8Array): void { numberToData(data, 0x1000 + offset); }
  write(offset: number, data: Uint8Array): void { this.writes.push([offset, dataToNumber(data)]); }
}

describe('bus', () => {
  it('hands a device the offset within its range', () => {
    const bus = new Bus('pio');
    const dev = new Recorder();
    bus.register(0x3f8, 8, dev, 'com1');
    const d = new Uint8Array(2);
    expect(bus.read(0x3fa, d)).to.equal(true);
    expect(dataToNumber(d)).to.equal(0x1002);
    bus.write(0x3ff, Uint8Array.of(0x41));
    expect(dev.writes).to.deep.equal([[7, 0x41]]);
  });

  it('reads all-ones and drops writes where nothing is mapped, logging a bounded number of times', () => {
    const logs: string[] = [];
    const bus = new Bus('pio', (m) => logs.push(m), 3);
    const d = new Uint8Array(4);
    for (let i = 0; i < 10; i++) expect(bus.read(0x80, d)).to.equal(false);
    expect(dataToNumber(d)).to.equal(0xffffffff);
    expect(bus.write(0x80, d)).to.equal(false);
    expect(logs).to.have.length(3);
    expect(logs[2]).to.contain('not logged');
  });

  it('refuses a range that overlaps a registered one', () => {
    const bus = new Bus('pio');
    bus.register(0x60, 1, new Recorder(), 'i8042-data');
    expect(() => bus.register(0x5f, 2, new Recorder(), 'other')).to.throw(BusConflictError, /overlaps i8042-data/);
    bus.register(0x64, 1, new Recorder(), 'i8042-cmd');
    expect(bus.describe().map((e) => e.name)).to.deep.equal(['i8042-data', 'i8042-cmd']);
  });
});
