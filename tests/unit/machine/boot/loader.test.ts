// Unit tests of loadKernel: format detection, initrd and command line placement, the boot plan, and refused inputs.
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BootError } from '../../../../machine/errors.js';
import { CMDLINE_START, PVH_INFO_START, ZERO_PAGE_START } from '../../../../machine/layout.js';
import { loadKernel } from '../../../../machine/boot/loader.js';
import { ascii, buildBzImage, buildElf, elfNote, fakeMemory, MiB, pvhNote } from './fixtures.js';

const opts = (memSize: number, extra: { cmdline?: string; initrd?: Uint8Array } = {}) => ({
  cmdline: extra.cmdline ?? 'console=ttyS0',
  initrd: extra.initrd,
  memSize,
  rsdpAddr: 0xe0000,
});

const TEST_GUEST = fileURLToPath(new URL('../../../../../build/guest/tsvirt-test-guest.elf', import.meta.url));

describe('boot/loader', () => {
  it('boots an ELF with a PVH note through PVH, with start_info, command line and initrd', () => {
    const mem = fakeMemory(64 * MiB);
    const initrd = new Uint8Array(5000).fill(0x5a);
    const plan = loadKernel(buildElf({ notes: pvhNote(0x100000) }), mem, opts(64 * MiB, { initrd }));
    expect(plan.kind).to.equal('pvh');
    expect(plan.entry).to.equal(0x100000n);
    expect(plan.cpu.regs.rip).to.equal(0x100000n);
    expect(plan.cpu.regs.rbx).to.equal(BigInt(PVH_INFO_START));
    expect(plan.initrd).to.deep.equal({ addr: 64 * MiB - 8192, size: 5000 }, 'highest page-aligned spot');
    expect(mem.readU8(64 * MiB - 8192)).to.equal(0x5a);
    expect(mem.readU32(PVH_INFO_START)).to.equal(0x336ec578);
    expect(mem.readU64(PVH_INFO_START + 24)).to.equal(BigInt(CMDLINE_START));
    expect(ascii(mem, CMDLINE_START, 14)).to.equal('console=ttyS0\0');
    expect(plan.cmdline).to.deep.equal({ addr: CMDLINE_START, size: 14 });
  });

  it('boots a bzImage through the 64-bit entry with the zero page in RSI', () => {
    const mem = fakeMemory(64 * MiB);
    const plan = loadKernel(buildBzImage(), mem, opts(64 * MiB, { initrd: new Uint8Array(MiB) }));
    expect(plan.kind).to.equal('linux64');
    expect(plan.entry).to.equal(0x100200n);
    expect(plan.cpu.regs.rsi).to.equal(BigInt(ZERO_PAGE_START));
    expect(plan.initrd).to.deep.equal({ addr: 63 * MiB, size: MiB });
    expect(mem.readU32(ZERO_PAGE_START + 0x218)).to.equal(63 * MiB);
    expect(mem.readU32(ZERO_PAGE_START + 0x228)).to.equal(CMDLINE_START);
  });

  it('keeps a bzImage initrd below initrd_addr_max', () => {
    const plan = loadKernel(buildBzImage({ initrdAddrMax: 0x27fffff }), fakeMemory(64 * MiB), opts(64 * MiB, { initrd: new Uint8Array(4096) }));
    expect(plan.initrd!.addr + plan.initrd!.size - 1).to.be.at.most(0x27fffff);
    expect(plan.initrd!.addr).to.equal(0x27ff000);
  });

  it('refuses an initrd that does not fit above the kernel, leaving guest memory untouched', () => {
    const mem = fakeMemory(24 * MiB);
    const initrd = new Uint8Array(5 * MiB);
    // The kernel needs up to 20 MiB (pref_address 16 MiB + init_size 4 MiB), leaving 4 MiB.
    expect(() => loadKernel(buildBzImage(), mem, opts(24 * MiB, { initrd }))).to.throw(BootError, 'initrd (5 MiB) does not fit in guest memory (24 MiB)');
    expect(mem.read(0, 24 * MiB).every((b) => b === 0)).to.equal(true);
  });

  it('refuses a command line longer than the kernel accepts', () => {
    const kernel = buildBzImage({ cmdlineSize: 16 });
    expect(() => loadKernel(kernel, fakeMemory(64 * MiB), opts(64 * MiB, { cmdline: 'x'.repeat(17) }))).to.throw(BootError, /command line is 17 bytes but this kernel accepts at most 16/);
    expect(() => loadKernel(kernel, fakeMemory(64 * MiB), opts(64 * MiB, { cmdline: 'x'.repeat(16) }))).not.to.throw();
  });

  it('refuses a command line longer than its guest buffer, whatever the kernel', () => {
    const kernel = buildElf({ notes: pvhNote(0x100000) });
    expect(() => loadKernel(kernel, fakeMemory(64 * MiB), opts(64 * MiB, { cmdline: 'x'.repeat(0x10000) }))).to.throw(BootError, /at most 65535 fit/);
  });

  it('refuses an ELF without a PVH note, saying so', () => {
    const kernel = buildElf({ notes: elfNote('GNU', 3, new Uint8Array(8)) });
    expect(() => loadKernel(kernel, fakeMemory(64 * MiB), opts(64 * MiB))).to.throw(BootError, /ELF kernel has no Xen PVH entry note/);
  });

  it('refuses a file that is no kernel at all', () => {
    const junk = new TextEncoder().encode('#!/bin/sh\necho hello\n'.repeat(100));
    expect(() => loadKernel(junk, fakeMemory(64 * MiB), opts(64 * MiB))).to.throw(BootError, 'kernel is neither a bzImage nor an ELF with a PVH entry note');
  });

  it('refuses empty and tiny kernel files clearly', () => {
    expect(() => loadKernel(new Uint8Array(0), fakeMemory(4 * MiB), opts(4 * MiB))).to.throw(BootError, 'kernel image is empty');
    expect(() => loadKernel(Uint8Array.of(1, 2, 3), fakeMemory(4 * MiB), opts(4 * MiB))).to.throw(BootError, /neither a bzImage nor an ELF .* \(only 3 bytes\)/);
    expect(() => loadKernel(Uint8Array.of(0x7f, 0x45, 0x4c, 0x46, 2, 1), fakeMemory(4 * MiB), opts(4 * MiB))).to.throw(BootError, /ELF kernel: .*truncated/);
  });

  it('loads the compiled test guest when it has been built', function () {
    if (!existsSync(TEST_GUEST)) {
      console.log(`      skipped: ${TEST_GUEST} is not built yet`);
      this.skip();
    }
    const mem = fakeMemory(64 * MiB);
    const plan = loadKernel(new Uint8Array(readFileSync(TEST_GUEST)), mem, opts(64 * MiB));
    expect(plan.kind).to.equal('pvh');
    expect(Number(plan.entry)).to.be.within(0x100000, 64 * MiB);
    expect(plan.cpu.regs.rip).to.equal(plan.entry);
    expect(plan.kernel.addr).to.be.at.least(0x100000);
  });
});
