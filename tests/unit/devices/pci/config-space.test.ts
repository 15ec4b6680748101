// Unit tests of the PCI configuration space: ids, write masks, BAR sizing and decoding, the capability list, state.
import { expect } from 'chai';
import {
  PCI_BASE_ADDRESS_0, PCI_CAPABILITY_LIST, PCI_CAP_ID_EXP, PCI_CAP_ID_VNDR, PCI_COMMAND, PCI_COMMAND_MEMORY,
  PCI_STATUS, PCI_STATUS_CAP_LIST, PciConfigSpace, PciLayoutError, PciStateError,
} from '../../../../devices/pci/config-space.js';

function space(): PciConfigSpace {
  return new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1042, classCode: 0x010000, revisionId: 1, subsystemVendorId: 0x1af4, subsystemId: 0x1100, interruptPin: 1 });
}

function rd(c: PciConfigSpace, off: number, size: number): number {
  const d = new Uint8Array(size);
  c.read(off, d);
  return d.reduceRight((v, b) => v * 256 + b, 0);
}

function wr(c: PciConfigSpace, off: number, size: number, value: number): void {
  const d = new Uint8Array(size);
  for (let i = 0; i < size; i++) d[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  c.write(off, d);
}

describe('pci config space', () => {
  it('presents the ids, class, revision, subsystem and interrupt pin', () => {
    const c = space();
    expect(rd(c, 0, 4)).to.equal(0x1042_1af4);
    expect(rd(c, 0x08, 4)).to.equal(0x0100_0001);
    expect(rd(c, 0x2c, 4)).to.equal(0x1100_1af4);
    expect(rd(c, 0x3d, 1)).to.equal(1);
  });

  it('ignores writes to read-only registers and keeps only writable command bits', () => {
    const c = space();
    wr(c, 0, 4, 0xdeadbeef);
    expect(rd(c, 0, 4)).to.equal(0x1042_1af4);
    wr(c, PCI_COMMAND, 2, 0xffff);
    expect(rd(c, PCI_COMMAND, 2)).to.equal(0x0546);
    wr(c, 0x3c, 1, 11);
    expect(rd(c, 0x3c, 1)).to.equal(11);
  });

  it('reads all-ones beyond the space', () => {
    expect(rd(new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 }, 256), 0x100, 4)).to.equal(0xffff_ffff);
  });

  it('sizes a 32-bit BAR by writing all-ones', () => {
    const c = space();
    c.addBar(1, { size: 0x1000, is64Bit: false, prefetchable: false });
    wr(c, PCI_BASE_ADDRESS_0 + 4, 4, 0xffff_ffff);
    expect(rd(c, PCI_BASE_ADDRESS_0 + 4, 4)).to.equal(0xffff_f000);
    wr(c, PCI_BASE_ADDRESS_0 + 4, 4, 0xc000_1234);
    expect(rd(c, PCI_BASE_ADDRESS_0 + 4, 4)).to.equal(0xc000_1000);
  });

  it('sizes a 64-bit prefetchable BAR across both dwords and keeps its type bits', () => {
    const c = space();
    c.addBar(4, { size: 0x4000, is64Bit: true, prefetchable: true });
    expect(rd(c, PCI_BASE_ADDRESS_0 + 16, 4)).to.equal(0x0c);
    wr(c, PCI_BASE_ADDRESS_0 + 16, 4, 0xffff_ffff);
    wr(c, PCI_BASE_ADDRESS_0 + 20, 4, 0xffff_ffff);
    expect(rd(c, PCI_BASE_ADDRESS_0 + 16, 4)).to.equal(0xffff_c00c);
    expect(rd(c, PCI_BASE_ADDRESS_0 + 20, 4)).to.equal(0xffff_ffff);
    wr(c, PCI_BASE_ADDRESS_0 + 16, 4, 0x8000_0000);
    wr(c, PCI_BASE_ADDRESS_0 + 20, 4, 0x1);
    expect(c.barAddress(4)).to.equal(0x1_8000_0000n);
  });

  it('leaves unimplemented BARs and the ROM BAR reading zero after sizing', () => {
    const c = space();
    wr(c, PCI_BASE_ADDRESS_0, 4, 0xffff_ffff);
    wr(c, 0x30, 4, 0xffff_f800);
    expect(rd(c, PCI_BASE_ADDRESS_0, 4)).to.equal(0);
    expect(rd(c, 0x30, 4)).to.equal(0);
  });

  it('reports a BAR as decoding only with memory enabled and a real address programmed', () => {
    const c = space();
    c.addBar(1, { size: 0x1000, is64Bit: false, prefetchable: false });
    wr(c, PCI_BASE_ADDRESS_0 + 4, 4, 0xc000_0000);
    expect(c.mappedBarAddress(1)).to.equal(null);
    wr(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect(c.mappedBarAddress(1)).to.equal(0xc000_0000n);
    wr(c, PCI_BASE_ADDRESS_0 + 4, 4, 0xffff_ffff);
    expect(c.mappedBarAddress(1)).to.equal(null);
    wr(c, PCI_BASE_ADDRESS_0 + 4, 4, 0);
    expect(c.mappedBarAddress(1)).to.equal(null);
  });

  it('refuses impossible BAR layouts', () => {
    const c = space();
    expect(() => c.addBar(5, { size: 0x1000, is64Bit: true, prefetchable: false })).to.throw(PciLayoutError);
    expect(() => c.addBar(0, { size: 0x1800, is64Bit: false, prefetchable: false })).to.throw(PciLayoutError);
    c.addBar(2, { size: 0x1000, is64Bit: true, prefetchable: false });
    expect(() => c.addBar(3, { size: 0x1000, is64Bit: false, prefetchable: false })).to.throw(PciLayoutError);
  });

  it('chains capabilities from 0x34 and sets the capability-list status bit', () => {
    const c = space();
    expect(rd(c, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST).to.equal(0);
    const a = c.addCapability(PCI_CAP_ID_VNDR, new Uint8Array(14));
    const b = c.addPcieCapability();
    expect(rd(c, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST).to.equal(PCI_STATUS_CAP_LIST);
    const walk: number[] = [];
    for (let p = rd(c, PCI_CAPABILITY_LIST, 1); p; p = rd(c, p + 1, 1)) walk.push(rd(c, p, 1));
    expect(walk).to.deep.equal([PCI_CAP_ID_VNDR, PCI_CAP_ID_EXP]);
    expect([a, b]).to.deep.equal([0x40, 0x50]);
    expect((rd(c, b + 2, 2) >> 4) & 0xf).to.equal(0x9); // root-complex integrated endpoint
  });

  it('honours a capability write mask', () => {
    const c = space();
    const off = c.addCapability(PCI_CAP_ID_VNDR, Uint8Array.of(1, 2, 3), Uint8Array.of(0, 0xf0, 0));
    wr(c, off + 2, 4, 0xffff_ffff);
    expect([rd(c, off + 2, 1), rd(c, off + 3, 1), rd(c, off + 4, 1)]).to.deep.equal([1, 0xf2, 3]);
  });

  it('returns to power-on on reset', () => {
    const c = space();
    c.addBar(1, { size: 0x1000, is64Bit: false, prefetchable: false });
    c.seal();
    wr(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    wr(c, PCI_BASE_ADDRESS_0 + 4, 4, 0xc000_0000);
    c.reset();
    expect(rd(c, PCI_COMMAND, 2)).to.equal(0);
    expect(rd(c, PCI_BASE_ADDRESS_0 + 4, 4)).to.equal(0);
  });

  it('round-trips its state', () => {
    const c = space();
    c.addBar(1, { size: 0x1000, is64Bit: false, prefetchable: false });
    c.seal();
    wr(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    wr(c, PCI_BASE_ADDRESS_0 + 4, 4, 0xc000_0000);
    const other = space();
    other.addBar(1, { size: 0x1000, is64Bit: false, prefetchable: false });
    other.seal();
    other.restoreState(JSON.parse(JSON.stringify(c.saveState())));
    expect(other.mappedBarAddress(1)).to.equal(0xc000_0000n);
    expect(other.saveState()).to.deep.equal(c.saveState());
  });

  it('refuses the state of a different device', () => {
    const c = space();
    c.seal();
    const other = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
    expect(() => other.restoreState(c.saveState())).to.throw(PciStateError);
    expect(() => other.restoreState({ bytes: 'AAAA' })).to.throw(PciStateError, /4096 bytes/);
  });
});
