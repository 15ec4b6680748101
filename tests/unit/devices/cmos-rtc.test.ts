// Unit tests of the CMOS RTC: time in BCD and binary, 12/24 hour, UIP, register C, setting the time, memory bytes, state.
import { expect } from 'chai';
import { CmosRtc, CmosStateError } from '../../../devices/cmos-rtc.js';

const GiB = 1024 ** 3;
const NOW = Date.UTC(2024, 1, 29, 13, 45, 7, 250); // a Thursday

function setup(lowMem = GiB, highMem = 0) {
  const clock = { ms: NOW };
  const rtc = new CmosRtc({ clock: () => new Date(clock.ms), lowMem, highMem });
  const rd = (reg: number) => {
    rtc.write(0, Uint8Array.of(reg));
    const d = new Uint8Array(1);
    rtc.read(1, d);
    return d[0];
  };
  const wr = (reg: number, v: number) => {
    rtc.write(0, Uint8Array.of(reg));
    rtc.write(1, Uint8Array.of(v));
  };
  const time = () => [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(rd);
  return { clock, rtc, rd, wr, time };
}

describe('cmos-rtc', () => {
  it('reads the time in BCD, 24-hour, by default', () => {
    const { rd, time } = setup();
    expect(rd(0x0b)).to.equal(0x02);
    expect(time()).to.deep.equal([0x07, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
  });

  it('reads the time in binary when register B sets DM', () => {
    const { wr, time } = setup();
    wr(0x0b, 0x06);
    expect(time()).to.deep.equal([7, 45, 13, 5, 29, 2, 24, 20]);
  });

  it('reads 12-hour time with the PM flag when register B clears 24/12', () => {
    const { clock, rd, wr } = setup();
    wr(0x0b, 0x00);
    expect(rd(0x04)).to.equal(0x81);
    clock.ms = Date.UTC(2024, 1, 29, 0, 5);
    expect(rd(0x04)).to.equal(0x12);
  });

  it('follows the injected clock, including the century', () => {
    const { clock, time } = setup();
    clock.ms = Date.UTC(1999, 11, 31, 23, 59, 59);
    expect(time()).to.deep.equal([0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19]);
    clock.ms += 1000;
    expect(time()).to.deep.equal([0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]);
  });

  it('shows UIP only in the last moments before a second ends', () => {
    const { clock, rd } = setup();
    expect(rd(0x0a)).to.equal(0x26);
    clock.ms = NOW - 250 + 999;
    expect(rd(0x0a)).to.equal(0xa6);
  });

  it('reads register D as valid RAM and time', () => {
    const { rd } = setup();
    expect(rd(0x0d)).to.equal(0x80);
  });

  it('reports update-ended in register C once a second passes, and clears it on read', () => {
    const { clock, rd } = setup();
    expect(rd(0x0c)).to.equal(0);
    clock.ms += 1000;
    expect(rd(0x0c)).to.equal(0x10);
    expect(rd(0x0c)).to.equal(0);
  });

  it('sets the guest time through SET and keeps it running from there', () => {
    const { clock, rd, wr, time } = setup();
    wr(0x0b, 0x82);
    const regs: [number, number][] = [[0x00, 0x30], [0x02, 0x15], [0x04, 0x08], [0x07, 0x31], [0x08, 0x03], [0x09, 0x25], [0x32, 0x20]];
    for (const [reg, v] of regs) wr(reg, v);
    clock.ms += 5000; // held while SET is on
    expect(rd(0x00)).to.equal(0x30);
    wr(0x0b, 0x02);
    clock.ms += 2000;
    expect(time()).to.deep.equal([0x32, 0x15, 0x08, 0x02, 0x31, 0x03, 0x25, 0x20]);
  });

  it('clears UIE when SET is turned on', () => {
    const { rd, wr } = setup();
    wr(0x0b, 0x92);
    expect(rd(0x0b)).to.equal(0x82);
  });

  it('changes one field when written while the clock runs', () => {
    const { rd, wr } = setup();
    wr(0x02, 0x10);
    expect([rd(0x00), rd(0x02), rd(0x04)]).to.deep.equal([0x07, 0x10, 0x13]);
  });

  it('keeps other NVRAM bytes as written and masks NMI through index bit 7', () => {
    const { rtc, rd, wr } = setup();
    wr(0x40, 0xab);
    wr(0x7f, 0x12);
    expect([rd(0x40), rd(0x7f)]).to.deep.equal([0xab, 0x12]);
    rtc.write(0, Uint8Array.of(0x80 | 0x40));
    expect(rtc.nmiDisabled).to.equal(true);
    const d = new Uint8Array(1);
    rtc.read(1, d);
    expect(d[0]).to.equal(0xab);
    rtc.read(0, d);
    expect(d[0]).to.equal(0xff);
  });

  it('gives the memory bytes QEMU gives for 1 GiB', () => {
    const { rd } = setup(GiB, 0);
    expect([0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35].map(rd)).to.deep.equal([
      0x80, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0x3f,
    ]);
    expect([0x5b, 0x5c, 0x5d].map(rd)).to.deep.equal([0, 0, 0]);
  });

  it('gives the memory bytes QEMU gives for 6 GiB (2 GiB low, 4 GiB high)', () => {
    const { rd } = setup(2 * GiB, 4 * GiB);
    expect([0x15, 0x16, 0x17, 0x18, 0x34, 0x35].map(rd)).to.deep.equal([0x80, 0x02, 0xff, 0xff, 0x00, 0x7f]);
    expect([0x5b, 0x5c, 0x5d].map(rd)).to.deep.equal([0x00, 0x00, 0x01]);
  });

  it('round-trips its state, keeping the guest clock offset', () => {
    const a = setup();
    a.wr(0x02, 0x10);
    a.wr(0x40, 0x99);
    a.rtc.write(0, Uint8Array.of(0x85));
    const state = a.rtc.saveState();
    expect(JSON.parse(JSON.stringify(state))).to.deep.equal(state);
    const b = setup();
    b.rtc.restoreState(state);
    expect(b.rtc.saveState()).to.deep.equal(state);
    expect(b.rtc.nmiDisabled).to.equal(true);
    expect([b.rd(0x02), b.rd(0x40)]).to.deep.equal([0x10, 0x99]);
  });

  it('refuses a malformed state, naming the field', () => {
    const { rtc } = setup();
    const good = rtc.saveState();
    expect(() => rtc.restoreState({ ...good, nvram: good.nvram.slice(1) })).to.throw(CmosStateError, /nvram/);
    const nvram = [...good.nvram];
    nvram[9] = 300;
    expect(() => rtc.restoreState({ ...good, nvram }))
      .to.throw(CmosStateError)
      .that.includes({ field: 'nvram[9]' });
    expect(() => rtc.restoreState({ ...good, offsetMs: NaN })).to.throw(CmosStateError, /offsetMs/);
    expect(() => rtc.restoreState({ ...good, index: 0x80 })).to.throw(CmosStateError, /index/);
  });
});
