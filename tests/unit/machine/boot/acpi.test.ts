// Unit tests of the ACPI tables: checksums, the RSDP/XSDT/RSDT chain, and the FADT, MADT, MCFG and DSDT contents.
import { expect } from 'chai';
import { GuestMemory } from '../../../../devices/guest-memory.js';
import { BootError } from '../../../../machine/errors.js';
import { ACPI_RSDP_START, ACPI_TABLES_END, IOAPIC_START, LAPIC_START, PCIE_ECAM_START } from '../../../../machine/layout.js';
import { buildAcpiTables } from '../../../../machine/boot/acpi.js';
import { ascii, fakeMemory, MiB, sum8 } from './fixtures.js';

interface Table {
  addr: number;
  signature: string;
  length: number;
  bytes: Uint8Array;
}

function table(mem: GuestMemory, addr: number): Table {
  const length = mem.readU32(addr + 4);
  return { addr, signature: ascii(mem, addr, 4), length, bytes: mem.read(addr, length) };
}

function build(cpus = 4) {
  const mem = fakeMemory(2 * MiB);
  const { rsdpAddr } = buildAcpiTables(mem, { cpus, memSize: 2 * MiB });
  const xsdt = table(mem, Number(mem.readU64(rsdpAddr + 24)));
  const described = Array.from({ length: (xsdt.length - 36) / 8 }, (_, i) => table(mem, Number(mem.readU64(xsdt.addr + 36 + i * 8))));
  const find = (sig: string) => described.find((t) => t.signature === sig)!;
  const fadt = find('FACP');
  return { mem, rsdpAddr, xsdt, described, fadt, madt: find('APIC'), mcfg: find('MCFG'), dsdt: table(mem, mem.readU32(fadt.addr + 40)) };
}

function indexOf(haystack: Uint8Array, needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

const u16 = (t: Table, off: number) => t.bytes[off] | (t.bytes[off + 1] << 8);
const u32 = (t: Table, off: number) => new DataView(t.bytes.buffer).getUint32(off, true);
const u64 = (t: Table, off: number) => new DataView(t.bytes.buffer).getBigUint64(off, true);

describe('boot/acpi', () => {
  it('writes a revision 2 RSDP at ACPI_RSDP_START with both checksums right', () => {
    const { mem, rsdpAddr, xsdt } = build();
    expect(rsdpAddr).to.equal(ACPI_RSDP_START);
    const rsdp = mem.read(rsdpAddr, 36);
    expect(ascii(mem, rsdpAddr, 8)).to.equal('RSD PTR ');
    expect(ascii(mem, rsdpAddr + 9, 6)).to.equal('TSVIRT');
    expect(rsdp[15]).to.equal(2);
    expect(mem.readU32(rsdpAddr + 20)).to.equal(36);
    expect(sum8(rsdp.subarray(0, 20))).to.equal(0);
    expect(sum8(rsdp)).to.equal(0);
    expect(xsdt.signature).to.equal('XSDT');
    expect(table(mem, mem.readU32(rsdpAddr + 16)).signature).to.equal('RSDT');
  });

  it('lists FADT, MADT and MCFG in both the XSDT and the RSDT, every table checksummed', () => {
    const { mem, rsdpAddr, xsdt, described, dsdt } = build();
    expect(described.map((t) => t.signature)).to.deep.equal(['FACP', 'APIC', 'MCFG']);
    const rsdt = table(mem, mem.readU32(rsdpAddr + 16));
    expect(Array.from({ length: (rsdt.length - 36) / 4 }, (_, i) => u32(rsdt, 36 + i * 4))).to.deep.equal(described.map((t) => t.addr));
    for (const t of [xsdt, rsdt, dsdt, ...described]) {
      expect(sum8(t.bytes), `${t.signature} checksum`).to.equal(0);
      expect(ascii(mem, t.addr + 10, 6), `${t.signature} OEM id`).to.equal('TSVIRT');
      expect(t.addr).to.be.at.least(ACPI_RSDP_START);
      expect(t.addr + t.length).to.be.at.most(ACPI_TABLES_END);
    }
  });

  it('describes the ICH9 PM block in the FADT', () => {
    const { fadt, dsdt } = build();
    expect(fadt.bytes[8]).to.be.oneOf([5, 6]);
    expect(fadt.length).to.equal(276);
    expect(u16(fadt, 46)).to.equal(9, 'SCI_INT');
    expect(u32(fadt, 48)).to.equal(0, 'SMI_CMD: ACPI is always enabled');
    expect(u32(fadt, 56)).to.equal(0x600, 'PM1a_EVT_BLK');
    expect(u32(fadt, 64)).to.equal(0x604, 'PM1a_CNT_BLK');
    expect(u32(fadt, 76)).to.equal(0x608, 'PM_TMR_BLK');
    expect(u32(fadt, 80)).to.equal(0x620, 'GPE0_BLK');
    expect([...fadt.bytes.subarray(88, 93)]).to.deep.equal([4, 2, 0, 4, 16], 'PM1_EVT, PM1_CNT, PM2_CNT, PM_TMR, GPE0 lengths');
    const flags = u32(fadt, 112);
    expect(flags & (1 << 10), 'RESET_REG_SUP').to.not.equal(0);
    expect(flags & (1 << 8), 'TMR_VAL_EXT: the timer is 24 bits').to.equal(0);
    expect(flags & (1 << 4), 'PWR_BUTTON clear: fixed power button').to.equal(0);
    const bootArch = u16(fadt, 109);
    expect(bootArch & 0b110).to.equal(0b110, '8042 present, VGA not present');
    expect([...fadt.bytes.subarray(116, 120)]).to.deep.equal([1, 8, 0, 0], 'reset register: system I/O, 8 bits');
    expect(u64(fadt, 120)).to.equal(0xcf9n);
    expect(fadt.bytes[128]).to.equal(0x06, 'reset value');
    expect(u32(fadt, 40)).to.equal(dsdt.addr);
    expect(u64(fadt, 140)).to.equal(BigInt(dsdt.addr), 'X_DSDT');
    expect([fadt.bytes[172], fadt.bytes[173], u64(fadt, 176)]).to.deep.equal([1, 16, 0x604n], 'X_PM1a_CNT_BLK');
    expect([fadt.bytes[208], fadt.bytes[209], u64(fadt, 212)]).to.deep.equal([1, 32, 0x608n], 'X_PM_TMR_BLK');
  });

  it('points the FADT at a 64-byte aligned FACS', () => {
    const { mem, fadt } = build();
    const facs = u32(fadt, 36);
    expect(facs % 64).to.equal(0);
    expect(ascii(mem, facs, 4)).to.equal('FACS');
    expect(u64(fadt, 132)).to.equal(BigInt(facs));
  });

  it('lists one enabled local APIC per vCPU, the IOAPIC, the ISA overrides and LINT1 NMI in the MADT', () => {
    const { madt } = build(3);
    expect(u32(madt, 36)).to.equal(LAPIC_START);
    expect(u32(madt, 40) & 1).to.equal(1, 'PCAT_COMPAT');
    const entries: { type: number; at: number }[] = [];
    for (let at = 44; at < madt.length; at += madt.bytes[at + 1]) entries.push({ type: madt.bytes[at], at });
    const lapics = entries.filter((e) => e.type === 0);
    expect(lapics.map((e) => [madt.bytes[e.at + 2], madt.bytes[e.at + 3], u32(madt, e.at + 4)])).to.deep.equal([[0, 0, 1], [1, 1, 1], [2, 2, 1]]);
    const ioapic = entries.find((e) => e.type === 1)!;
    expect([madt.bytes[ioapic.at + 2], u32(madt, ioapic.at + 4), u32(madt, ioapic.at + 8)]).to.deep.equal([0, IOAPIC_START, 0]);
    const overrides = entries.filter((e) => e.type === 2).map((e) => [madt.bytes[e.at + 3], u32(madt, e.at + 4), u16(madt, e.at + 8)]);
    expect(overrides).to.deep.equal([[0, 2, 0], [9, 9, 0x0d]]);
    const nmi = entries.find((e) => e.type === 4)!;
    expect([madt.bytes[nmi.at + 2], madt.bytes[nmi.at + 5]]).to.deep.equal([0xff, 1]);
  });

  it('describes the ECAM window for buses 0-255 in the MCFG', () => {
    const { mcfg } = build();
    expect(mcfg.length).to.equal(60);
    expect(u64(mcfg, 44)).to.equal(BigInt(PCIE_ECAM_START));
    expect([u16(mcfg, 52), mcfg.bytes[54], mcfg.bytes[55]]).to.deep.equal([0, 0, 255]);
  });

  it('puts \\_S5, the PCIe host bridge, the ECAM reservation and the ISA devices in the DSDT', () => {
    const { dsdt } = build();
    expect(dsdt.signature).to.equal('DSDT');
    expect(indexOf(dsdt.bytes, [0x08, 0x5c, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0, 0, 0, 0])).to.be.above(35, '\\_S5 = {0,0,0,0}');
    const eisa = (b: number[]) => indexOf(dsdt.bytes, [0x0c, ...b]);
    expect(eisa([0x41, 0xd0, 0x0a, 0x08]), 'PNP0A08').to.be.above(0);
    expect(eisa([0x41, 0xd0, 0x0a, 0x03]), 'PNP0A03').to.be.above(0);
    expect(eisa([0x41, 0xd0, 0x0c, 0x02]), 'PNP0C02').to.be.above(0);
    expect(eisa([0x41, 0xd0, 0x05, 0x01]), 'PNP0501').to.be.above(0);
    expect(eisa([0x41, 0xd0, 0x0b, 0x00]), 'PNP0B00').to.be.above(0);
    expect(eisa([0x41, 0xd0, 0x03, 0x03]), 'PNP0303').to.be.above(0);
    expect(indexOf(dsdt.bytes, [0x86, 9, 0, 1, 0, 0, 0, 0xb0, 0, 0, 0, 0x10]), 'ECAM Memory32Fixed').to.be.above(0);
    expect(indexOf(dsdt.bytes, [0x88, 13, 0, 2, 0x0c, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 1]), 'bus 0-255').to.be.above(0);
    expect(indexOf(dsdt.bytes, [0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8, 0x22, 0x10, 0]), 'COM1 0x3f8/8, IRQ 4').to.be.above(0);
    expect(indexOf(dsdt.bytes, [0x47, 1, 0x70, 0, 0x70, 0, 1, 2, 0x22, 0, 1]), 'RTC 0x70/2, IRQ 8').to.be.above(0);
    // DWordMemory 0xC0000000-0xFEBFFFFF
    expect(indexOf(dsdt.bytes, [0, 0, 0, 0xc0, 0xff, 0xff, 0xbf, 0xfe]), 'MMIO32 window').to.be.above(0);
  });

  it('describes 255 vCPUs and refuses 0 or 256', () => {
    expect(build(255).madt.length).to.equal(44 + 255 * 8 + 12 + 20 + 6);
    expect(() => buildAcpiTables(fakeMemory(2 * MiB), { cpus: 256, memSize: 2 * MiB })).to.throw(BootError, /256 vCPUs/);
    expect(() => buildAcpiTables(fakeMemory(2 * MiB), { cpus: 0, memSize: 2 * MiB })).to.throw(BootError);
  });
});
