// Unit tests of the MP table: floating pointer, configuration table checksum, and the processor and interrupt entries.
import { expect } from 'chai';
import { BootError } from '../../../../machine/errors.js';
import { IOAPIC_START, LAPIC_START, MPTABLE_START } from '../../../../machine/layout.js';
import { buildMpTable } from '../../../../machine/boot/mptable.js';
import { ascii, fakeMemory, MiB, sum8 } from './fixtures.js';

function build(cpus: number) {
  const mem = fakeMemory(2 * MiB);
  buildMpTable(mem, cpus);
  const config = mem.readU32(MPTABLE_START + 4);
  const length = mem.readU16(config + 4);
  const entries: { type: number; at: number }[] = [];
  for (let at = config + 44; at < config + length; at += mem.readU8(at) === 0 ? 20 : 8) entries.push({ type: mem.readU8(at), at });
  return { mem, config, length, entries };
}

describe('boot/mptable', () => {
  it('writes a checksummed floating pointer pointing at a checksummed configuration table', () => {
    const { mem, config, length, entries } = build(2);
    expect(ascii(mem, MPTABLE_START, 4)).to.equal('_MP_');
    expect(mem.readU8(MPTABLE_START + 8)).to.equal(1, 'length in 16-byte units');
    expect(mem.readU8(MPTABLE_START + 9)).to.equal(4, 'MP spec 1.4');
    expect(sum8(mem.read(MPTABLE_START, 16))).to.equal(0);
    expect(ascii(mem, config, 4)).to.equal('PCMP');
    expect(sum8(mem.read(config, length))).to.equal(0);
    expect(mem.readU16(config + 34)).to.equal(entries.length);
    expect(mem.readU32(config + 36)).to.equal(LAPIC_START);
  });

  it('lists each vCPU by APIC id, enabled, with the bootstrap flag on the first', () => {
    const { mem, entries } = build(3);
    const cpus = entries.filter((e) => e.type === 0).map((e) => [mem.readU8(e.at + 1), mem.readU8(e.at + 3)]);
    expect(cpus).to.deep.equal([[0, 3], [1, 1], [2, 1]]);
  });

  it('routes the ISA IRQs to the IOAPIC with IRQ0 on pin 2, and wires ExtINT to LINT0 and NMI to LINT1', () => {
    const { mem, entries } = build(1);
    const bus = entries.find((e) => e.type === 1)!;
    expect(ascii(mem, bus.at + 2, 6)).to.equal('ISA   ');
    const ioapic = entries.find((e) => e.type === 2)!;
    expect([mem.readU8(ioapic.at + 3), mem.readU32(ioapic.at + 4)]).to.deep.equal([1, IOAPIC_START]);
    const routes = entries.filter((e) => e.type === 3).map((e) => [mem.readU8(e.at + 5), mem.readU8(e.at + 7)]);
    expect(routes).to.have.length(15);
    expect(routes[0]).to.deep.equal([0, 2]);
    expect(routes.find(([irq]) => irq === 2), 'IRQ2 is the cascade').to.equal(undefined);
    expect(routes.filter(([irq]) => irq !== 0).every(([irq, pin]) => irq === pin)).to.equal(true);
    const lints = entries.filter((e) => e.type === 4).map((e) => [mem.readU8(e.at + 1), mem.readU8(e.at + 6), mem.readU8(e.at + 7)]);
    expect(lints).to.deep.equal([[3, 0, 0], [1, 0xff, 1]]);
  });

  it('describes 255 vCPUs and refuses more', () => {
    expect(build(255).entries.filter((e) => e.type === 0)).to.have.length(255);
    expect(() => buildMpTable(fakeMemory(2 * MiB), 256)).to.throw(BootError, /256 vCPUs \(1 to 255\)/);
    expect(() => buildMpTable(fakeMemory(2 * MiB), 0)).to.throw(BootError);
  });
});
