// Unit tests of the ICH9 ACPI PM block: PM timer, sleep control, power button and SCI, GPE0, access widths, state.
import { expect } from 'chai';
import { AcpiPm, AcpiPmStateError } from '../../../devices/acpi-pm.js';
import { RecordingIrqLine } from '../../../devices/irq.js';
import { dataToNumber, numberToData } from '../../../devices/bus.js';

const STS = 0x00;
const EN = 0x02;
const CNT = 0x04;
const TMR = 0x08;
const GPE0_STS = 0x20;
const GPE0_EN = 0x28;
const PWRBTN = 0x0100;
const HZ = 3_579_545n;

/** The first ns at which the timer has counted `ticks`. */
const nsForTicks = (ticks: bigint) => (ticks * 1_000_000_000n + HZ - 1n) / HZ;

function setup(startNs = 123_456_789n) {
  const clock = { ns: startNs };
  const sci = new RecordingIrqLine();
  const logs: string[] = [];
  let powerOffs = 0;
  const pm = new AcpiPm({ sci, clock: () => clock.ns, onPowerOff: () => powerOffs++, log: (m) => logs.push(m) });
  const rd = (off: number, size: number) => {
    const d = new Uint8Array(size);
    pm.read(off, d);
    return dataToNumber(d);
  };
  const wr = (off: number, size: number, v: number) => {
    const d = new Uint8Array(size);
    numberToData(d, v);
    pm.write(off, d);
  };
  return { clock, sci, logs, pm, rd, wr, powerOffs: () => powerOffs };
}

describe('acpi-pm', () => {
  describe('PM timer', () => {
    it('counts at 3.579545 MHz from zero', () => {
      const { clock, rd } = setup();
      const t0 = clock.ns;
      expect(rd(TMR, 4)).to.equal(0);
      clock.ns = t0 + 1_000_000_000n;
      expect(rd(TMR, 4)).to.equal(3_579_545);
      clock.ns = t0 + 1_000n;
      expect(rd(TMR, 4)).to.equal(3);
    });

    it('wraps at 24 bits', () => {
      const { clock, rd } = setup();
      const t0 = clock.ns;
      clock.ns = t0 + nsForTicks((1n << 24n) - 1n);
      expect(rd(TMR, 4)).to.equal(0xff_ffff);
      clock.ns = t0 + nsForTicks((1n << 24n) + 100n);
      expect(rd(TMR, 4)).to.equal(100);
    });

    it('reads the timer byte by byte at any offset', () => {
      const { clock, rd } = setup();
      clock.ns += nsForTicks(0x12_3456n);
      expect([rd(TMR, 1), rd(TMR + 1, 1), rd(TMR + 2, 1), rd(TMR + 3, 1)]).to.deep.equal([0x56, 0x34, 0x12, 0]);
      expect(rd(TMR + 1, 2)).to.equal(0x1234);
    });

    it('sets TMR_STS when bit 23 toggles, cleared by writing 1', () => {
      const { clock, rd, wr } = setup();
      const t0 = clock.ns;
      expect(rd(STS, 2) & 1).to.equal(0);
      clock.ns = t0 + nsForTicks(1n << 23n);
      expect(rd(STS, 2) & 1).to.equal(1);
      wr(STS, 2, 1);
      expect(rd(STS, 2) & 1).to.equal(0);
    });
  });

  describe('sleep control', () => {
    it('reads SCI_EN as 1 whatever is written', () => {
      const { rd, wr } = setup();
      expect(rd(CNT, 2)).to.equal(0x0001);
      wr(CNT, 2, 0x1400);
      expect(rd(CNT, 2)).to.equal(0x1401);
    });

    it('powers off on SLP_EN with SLP_TYP 0', () => {
      const k = setup();
      k.wr(CNT, 2, 0x2000);
      expect(k.powerOffs()).to.equal(1);
      k.wr(CNT + 1, 1, 0x20);
      expect(k.powerOffs()).to.equal(2);
      expect(k.rd(CNT, 2) & 0x2000).to.equal(0);
    });

    it('ignores other SLP_TYP values with a log line, and SLP_TYP without SLP_EN', () => {
      const k = setup();
      k.wr(CNT, 2, 0x0400 | 0x2000);
      k.wr(CNT, 2, 0x1400 | 0x2000);
      k.wr(CNT, 2, 0x0000);
      expect(k.powerOffs()).to.equal(0);
      expect(k.logs).to.have.length(2);
      expect(k.logs[0]).to.match(/SLP_TYP 1/);
    });
  });

  describe('power button and SCI', () => {
    it('sets PWRBTN_STS but leaves the SCI low while PWRBTN_EN is clear', () => {
      const { pm, sci, rd } = setup();
      pm.pressPowerButton();
      expect(rd(STS, 2) & PWRBTN).to.equal(PWRBTN);
      expect(sci.level).to.equal(false);
    });

    it('raises the SCI when the button is pressed with PWRBTN_EN set, and lowers it on write-1-to-clear', () => {
      const { pm, sci, rd, wr } = setup();
      wr(EN, 2, PWRBTN);
      pm.pressPowerButton();
      expect(sci.level).to.equal(true);
      wr(STS, 2, 0x0001); // another bit: PWRBTN_STS stays
      expect(rd(STS, 2) & PWRBTN).to.equal(PWRBTN);
      expect(sci.level).to.equal(true);
      wr(STS, 2, PWRBTN);
      expect(rd(STS, 2) & PWRBTN).to.equal(0);
      expect(sci.level).to.equal(false);
    });

    it('raises the SCI when PWRBTN_EN is set after the press', () => {
      const { pm, sci, wr } = setup();
      pm.pressPowerButton();
      wr(EN, 2, PWRBTN);
      expect(sci.level).to.equal(true);
      wr(EN, 2, 0);
      expect(sci.level).to.equal(false);
    });

    it('returns STS | EN << 16 for a 32-bit read at PM1a_STS and splits 32-bit writes the same way', () => {
      const { pm, rd, wr } = setup();
      pm.pressPowerButton();
      wr(STS, 4, PWRBTN << 16);
      expect(rd(STS, 4)).to.equal((PWRBTN << 16) | PWRBTN);
    });

    it('drives the SCI from GPE0 status and enable, write-1-to-clear', () => {
      const { pm, sci, rd, wr } = setup();
      pm.raiseGpe(9);
      expect(rd(GPE0_STS, 4)).to.equal(1 << 9);
      expect(sci.level).to.equal(false);
      wr(GPE0_EN + 1, 1, 0x02);
      expect(sci.level).to.equal(true);
      wr(GPE0_STS, 2, 1 << 9);
      expect(sci.level).to.equal(false);
      expect(rd(GPE0_EN, 2)).to.equal(1 << 9);
    });
  });

  describe('state', () => {
    it('round-trips and continues the timer from the saved count on another clock', () => {
      const a = setup();
      a.wr(EN, 2, PWRBTN);
      a.pm.pressPowerButton();
      a.wr(GPE0_EN, 1, 0x81);
      a.clock.ns += nsForTicks(1000n);
      const state = a.pm.saveState();
      expect(JSON.parse(JSON.stringify(state))).to.deep.equal(state);
      expect(state.timer).to.equal(1000);

      const b = setup(9_999_999_999n);
      b.pm.restoreState(state);
      expect(b.pm.saveState()).to.deep.equal(state);
      expect(b.sci.level).to.equal(true);
      b.clock.ns += nsForTicks(500n);
      expect(b.rd(TMR, 4)).to.be.within(1499, 1501);
    });

    it('refuses a malformed state, naming the field', () => {
      const { pm } = setup();
      const good = pm.saveState();
      expect(() => pm.restoreState({ ...good, timer: 1 << 24 })).to.throw(AcpiPmStateError, /timer/);
      expect(() => pm.restoreState({ ...good, gpe0Enable: [0] }))
        .to.throw(AcpiPmStateError)
        .that.includes({ field: 'gpe0Enable' });
      expect(() => pm.restoreState({ ...good, gpe0Status: [0, 0, 0, 0, 0, 0, 0, 0x100] }))
        .to.throw(AcpiPmStateError)
        .that.includes({ field: 'gpe0Status[7]' });
      expect(() => pm.restoreState({ ...good, pm1Control: 0x2000 })).to.throw(AcpiPmStateError, /pm1Control/);
    });
  });
});
