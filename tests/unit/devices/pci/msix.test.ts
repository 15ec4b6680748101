// Unit tests of MSI-X: table programming, delivery, per-vector and function masking, pending bits, state.
import { expect } from 'chai';
import { PCI_CAP_ID_MSIX, PciConfigSpace } from '../../../../devices/pci/config-space.js';
import { MSIX_ENTRY_SIZE, MsixStateError, MsixTable, type MsiSink } from '../../../../devices/pci/msix.js';

class Sink implements MsiSink {
  signals: [number, bigint, number][] = [];
  updates: [number, boolean][] = [];
  signal(vector: number, address: bigint, data: number): void {
    this.signals.push([vector, address, data]);
  }
  update(vector: number, _address: bigint, _data: number, masked: boolean): void {
    this.updates.push([vector, masked]);
  }
}

function setup(vectors = 4) {
  const sink = new Sink();
  const msix = new MsixTable(vectors, sink);
  const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
  const cap = msix.attach(config, 1);
  config.seal();
  config.write(0x04, Uint8Array.of(0x04, 0)); // Bus Master Enable: MSI-X messages are memory writes
  const ctl = (v: number) => {
    config.write(cap + 2, Uint8Array.of(v & 0xff, v >> 8));
    msix.configWritten();
  };
  const entry = (v: number, address: bigint, data: number, masked: boolean) => {
    const b = new Uint8Array(16);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(0, address, true);
    dv.setUint32(8, data, true);
    dv.setUint32(12, masked ? 1 : 0, true);
    msix.write(MSIX_ENTRY_SIZE * v, b.subarray(0, 8));
    msix.write(MSIX_ENTRY_SIZE * v + 8, b.subarray(8, 12));
    msix.write(MSIX_ENTRY_SIZE * v + 12, b.subarray(12, 16));
  };
  const rd32 = (off: number) => {
    const d = new Uint8Array(4);
    msix.read(off, d);
    return new DataView(d.buffer).getUint32(0, true);
  };
  return { sink, msix, config, cap, ctl, entry, rd32 };
}

describe('pci msix', () => {
  it('advertises table size and the BAR offsets of table and PBA', () => {
    const { config, cap, msix } = setup(4);
    expect(config.getU8(cap)).to.equal(PCI_CAP_ID_MSIX);
    expect(config.getU16(cap + 2) & 0x7ff).to.equal(3);
    expect(config.getU32(cap + 4)).to.equal(0 | 1);
    expect(config.getU32(cap + 8)).to.equal(0x800 | 1);
    expect(msix.regionSize).to.equal(0x1000);
  });

  it('starts with every vector masked and nothing pending', () => {
    const { rd32 } = setup();
    expect(rd32(12)).to.equal(1);
    expect(rd32(0x800)).to.equal(0);
  });

  it('refuses to deliver while MSI-X is disabled, so the caller falls back to INTx', () => {
    const { msix, sink, entry } = setup();
    entry(0, 0xfee0_0000n, 0x41, false);
    expect(msix.signal(0)).to.equal(false);
    expect(sink.signals).to.deep.equal([]);
  });

  it('delivers the programmed message of an unmasked vector', () => {
    const { msix, sink, entry, ctl } = setup();
    entry(2, 0xfee0_1000n, 0x4041, false);
    ctl(0x8000);
    expect(msix.signal(2)).to.equal(true);
    expect(sink.signals).to.deep.equal([[2, 0xfee0_1000n, 0x4041]]);
  });

  it('holds a masked vector pending and delivers it when unmasked', () => {
    const { msix, sink, entry, ctl, rd32 } = setup();
    ctl(0x8000);
    entry(1, 0xfee0_0000n, 0x42, true);
    msix.signal(1);
    expect(sink.signals).to.deep.equal([]);
    expect(rd32(0x800)).to.equal(0b10);
    entry(1, 0xfee0_0000n, 0x42, false);
    expect(sink.signals).to.deep.equal([[1, 0xfee0_0000n, 0x42]]);
    expect(rd32(0x800)).to.equal(0);
  });

  it('holds vectors pending under the function mask and delivers them when it clears', () => {
    const { msix, sink, entry, ctl } = setup();
    entry(0, 0xfee0_0000n, 0x40, false);
    ctl(0x8000 | 0x4000);
    msix.signal(0);
    expect(sink.signals).to.have.length(0);
    expect(msix.isPending(0)).to.equal(true);
    ctl(0x8000);
    expect(sink.signals).to.deep.equal([[0, 0xfee0_0000n, 0x40]]);
  });

  it('keeps the PBA read-only and the reserved vector-control bits zero', () => {
    const { msix, rd32 } = setup();
    msix.write(0x800, Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    expect(rd32(0x800)).to.equal(0);
    msix.write(12, Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    expect(rd32(12)).to.equal(1);
  });

  it('tells the sink when a route changes', () => {
    const { sink, entry, ctl } = setup(1);
    entry(0, 0xfee0_0000n, 0x40, false);
    ctl(0x8000);
    expect(sink.updates.at(-1)).to.deep.equal([0, false]);
  });

  it('round-trips table and pending bits', () => {
    const a = setup();
    a.entry(3, 0xfee0_2000n, 0x99, true);
    a.ctl(0x8000);
    a.msix.signal(3);
    const b = setup();
    b.config.restoreState(a.config.saveState());
    b.msix.restoreState(JSON.parse(JSON.stringify(a.msix.saveState())));
    expect(b.msix.saveState()).to.deep.equal(a.msix.saveState());
    b.entry(3, 0xfee0_2000n, 0x99, false);
    expect(b.sink.signals).to.deep.equal([[3, 0xfee0_2000n, 0x99]]);
  });

  it('refuses a snapshot for another table size or with reserved bits', () => {
    const { msix } = setup(4);
    const state = msix.saveState();
    expect(() => setup(2).msix.restoreState(state)).to.throw(MsixStateError);
    state.entries[0].control = 2;
    expect(() => setup(4).msix.restoreState(state)).to.throw(MsixStateError, /reserved/);
  });

  it('returns to power-on on reset', () => {
    const { msix, entry, ctl } = setup();
    ctl(0x8000);
    entry(0, 0xfee0_0000n, 1, true);
    msix.signal(0);
    msix.reset();
    expect(msix.isPending(0)).to.equal(false);
    expect(msix.isMasked(0)).to.equal(true);
  });
});
