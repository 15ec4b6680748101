// Unit tests of the ICH9 reset control register at 0xCF9.
import { expect } from 'chai';
import { ResetControl, ResetControlStateError } from '../../../devices/reset-control.js';

function setup() {
  let resets = 0;
  const rc = new ResetControl({ onReset: () => resets++ });
  const rd = () => {
    const d = new Uint8Array(1);
    rc.read(0, d);
    return d[0];
  };
  const wr = (v: number) => rc.write(0, Uint8Array.of(v));
  return { rc, rd, wr, resets: () => resets };
}

describe('reset-control', () => {
  it('resets on 0x06 and on 0x0E', () => {
    const k = setup();
    k.wr(0x06);
    expect(k.resets()).to.equal(1);
    k.wr(0x0e);
    expect(k.resets()).to.equal(2);
  });

  it('stores SYS_RST and FULL_RST without resetting, and never reads back RST_CPU', () => {
    const k = setup();
    k.wr(0x0a);
    expect(k.resets()).to.equal(0);
    expect(k.rd()).to.equal(0x0a);
    k.wr(0x06);
    expect(k.rd()).to.equal(0x02);
    k.wr(0xf1);
    expect(k.rd()).to.equal(0);
  });

  it('round-trips its state and refuses a malformed one', () => {
    const a = setup();
    a.wr(0x08);
    const b = setup();
    b.rc.restoreState(a.rc.saveState());
    expect(b.rd()).to.equal(0x08);
    expect(() => b.rc.restoreState({ value: 0x04 }))
      .to.throw(ResetControlStateError)
      .that.includes({ field: 'value' });
  });
});
