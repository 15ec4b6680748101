// Unit tests of the boot vCPU state: PVH protected mode and Linux long mode, the GDT they load and the identity page tables.
import { expect } from 'chai';
import { GuestMemory } from '../../../../devices/guest-memory.js';
import { BOOT_GDT_START, BOOT_STACK_POINTER, PML4_START, PVH_INFO_START, ZERO_PAGE_START } from '../../../../machine/layout.js';
import { gdtEntry, segmentFromGdt, setupBootCpu, type Segment } from '../../../../machine/boot/cpu-setup.js';
import { fakeMemory, MiB } from './fixtures.js';

/** Walks 4-level page tables the way the CPU does (2 MiB pages only), returning the physical address. */
function translate(mem: GuestMemory, cr3: bigint, va: bigint): bigint {
  const pml4e = mem.readU64(Number(cr3) + Number((va >> 39n) & 0x1ffn) * 8);
  expect(pml4e & 1n, 'PML4 entry present').to.equal(1n);
  const pdpte = mem.readU64(Number(pml4e & ~0xfffn) + Number((va >> 30n) & 0x1ffn) * 8);
  expect(pdpte & 1n, 'PDPT entry present').to.equal(1n);
  const pde = mem.readU64(Number(pdpte & ~0xfffn) + Number((va >> 21n) & 0x1ffn) * 8);
  expect(pde & 0x81n, 'PD entry present, 2 MiB page').to.equal(0x81n);
  return (pde & ~0x1fffffn & 0xffff_ffff_ffffn) | (va & 0x1fffffn);
}

function gdtSlot(mem: GuestMemory, selector: number): bigint {
  return mem.readU64(BOOT_GDT_START + selector);
}

const flat = (seg: Segment) => ({ base: seg.base, limit: seg.limit, present: seg.present, s: seg.s, g: seg.g, unusable: seg.unusable });

describe('boot/cpu-setup', () => {
  it('encodes GDT descriptors as the hardware reads them', () => {
    expect(gdtEntry(0xa09b, 0, 0xfffff)).to.equal(0x00af9b000000ffffn);
    expect(gdtEntry(0xc093, 0, 0xfffff)).to.equal(0x00cf93000000ffffn);
    expect(gdtEntry(0x008b, 0x12345678, 0x67)).to.equal(0x12008b3456780067n);
    const seg = segmentFromGdt(gdtEntry(0x008b, 0x12345678, 0x67), 0x18);
    expect(seg).to.include({ base: 0x12345678n, limit: 0x67, type: 0xb, s: 0, present: 1, g: 0, selector: 0x18 });
  });

  it('enters a PVH kernel in flat 32-bit protected mode with paging off and EBX at start_info', () => {
    const mem = fakeMemory(2 * MiB);
    const { regs, sregs } = setupBootCpu(mem, 'pvh', 0x1000c0n);
    expect(regs).to.include({ rip: 0x1000c0n, rbx: BigInt(PVH_INFO_START), rflags: 0x2n });
    expect(sregs.cr0).to.equal(0x11n, 'PE | ET');
    expect([sregs.cr3, sregs.cr4, sregs.efer]).to.deep.equal([0n, 0n, 0n]);
    expect(sregs.cs).to.include({ selector: 0x08, type: 0xb, db: 1, l: 0 });
    for (const seg of [sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss]) {
      expect(seg).to.include({ selector: 0x10, type: 0x3, db: 1 });
      expect(flat(seg)).to.deep.equal({ base: 0n, limit: 0xffffffff, present: 1, s: 1, g: 1, unusable: 0 });
    }
    expect(flat(sregs.cs)).to.deep.equal({ base: 0n, limit: 0xffffffff, present: 1, s: 1, g: 1, unusable: 0 });
  });

  it('gives KVM a usable busy TSS and an unusable LDT', () => {
    for (const kind of ['pvh', 'linux64'] as const) {
      const { sregs } = setupBootCpu(fakeMemory(2 * MiB), kind, 0x100000n);
      expect(sregs.tr).to.include({ type: 0xb, s: 0, present: 1, unusable: 0, limit: 0x67 });
      expect(sregs.ldt.unusable).to.equal(1);
    }
  });

  it('loads segment registers that match the GDT it writes', () => {
    for (const kind of ['pvh', 'linux64'] as const) {
      const mem = fakeMemory(2 * MiB);
      const { sregs } = setupBootCpu(mem, kind, 0x100000n);
      expect(sregs.gdt).to.deep.equal({ base: BigInt(BOOT_GDT_START), limit: 31 });
      for (const seg of [sregs.cs, sregs.ds, sregs.tr]) {
        expect(segmentFromGdt(gdtSlot(mem, seg.selector), seg.selector)).to.deep.equal(seg);
      }
    }
  });

  it('enters a bzImage in long mode with __BOOT_CS 0x10, __BOOT_DS 0x18 and boot_params in RSI', () => {
    const mem = fakeMemory(2 * MiB);
    const { regs, sregs } = setupBootCpu(mem, 'linux64', 0x100200n);
    expect(regs).to.include({ rip: 0x100200n, rsi: BigInt(ZERO_PAGE_START), rsp: BigInt(BOOT_STACK_POINTER), rflags: 0x2n });
    expect(sregs.cs).to.include({ selector: 0x10, l: 1, db: 0, type: 0xb, present: 1 });
    expect(sregs.ds).to.include({ selector: 0x18, type: 0x3, present: 1 });
    expect(sregs.ss.selector).to.equal(0x18);
    expect(sregs.cr0).to.equal(0x80000011n, 'PE | ET | PG');
    expect(sregs.cr4).to.equal(0x20n, 'PAE');
    expect(sregs.efer).to.equal(0x500n, 'LME | LMA');
    expect(sregs.cr3).to.equal(BigInt(PML4_START));
  });

  it('identity-maps the first 4 GiB with 2 MiB pages', () => {
    const mem = fakeMemory(2 * MiB);
    const { sregs } = setupBootCpu(mem, 'linux64', 0x100200n);
    for (const va of [0n, 0x7000n, 0x100200n, 0x3fe0_1234n, 0x8000_0000n, 0xfee0_0020n, 0xffff_ffffn]) {
      expect(translate(mem, sregs.cr3, va)).to.equal(va);
    }
    expect(mem.readU64(PML4_START + 8)).to.equal(0n, 'nothing mapped above 512 GiB');
  });

  it('writes no page tables for PVH', () => {
    const mem = fakeMemory(2 * MiB);
    setupBootCpu(mem, 'pvh', 0x100000n);
    expect(mem.readU64(PML4_START)).to.equal(0n);
  });
});
