// Unit tests of the ELF reader and PVH note lookup: ELF32/ELF64, notes in segments or sections, and every malformed-file error.
import { expect } from 'chai';
import { BootError } from '../../../../machine/errors.js';
import { loadElf, parseElf } from '../../../../machine/boot/elf.js';
import { findPvhEntry } from '../../../../machine/boot/pvh.js';
import { buildElf, elfNote, fakeMemory, MiB, phdr64, pvhNote } from './fixtures.js';

function setU64(file: Uint8Array, offset: number, value: number): Uint8Array {
  new DataView(file.buffer).setBigUint64(offset, BigInt(value), true);
  return file;
}

describe('boot/elf', () => {
  it('finds the PVH entry in a PT_NOTE segment of an ELF64 kernel, after other notes', () => {
    const notes = Uint8Array.from([...elfNote('GNU', 3, new Uint8Array(20)), ...pvhNote(0x1000c0)]);
    const file = buildElf({ notes });
    const elf = parseElf(file);
    expect(elf.elfClass).to.equal(64);
    expect(findPvhEntry(file, elf)).to.equal(0x1000c0);
  });

  it('reads ELF32 kernels and their PVH note', () => {
    const file = buildElf({ elfClass: 32, notes: pvhNote(0x100400) });
    const elf = parseElf(file);
    expect(elf.elfClass).to.equal(32);
    expect(elf.programHeaders.map((p) => p.type)).to.deep.equal([1, 4]);
    expect(findPvhEntry(file, elf)).to.equal(0x100400);
  });

  it('falls back to SHT_NOTE sections when no segment holds the note', () => {
    for (const elfClass of [32, 64] as const) {
      const file = buildElf({ elfClass, notes: pvhNote(0x100800), notesIn: 'section' });
      const elf = parseElf(file);
      expect(elf.programHeaders.some((p) => p.type === 4)).to.equal(false);
      expect(findPvhEntry(file, elf)).to.equal(0x100800);
    }
  });

  it('accepts an 8-byte PVH entry descriptor as older kernels emit it', () => {
    const file = buildElf({ notes: pvhNote(0x1234000n, 8) });
    expect(findPvhEntry(file, parseElf(file))).to.equal(0x1234000);
  });

  it('reports no PVH entry when the kernel has none', () => {
    const file = buildElf({ notes: elfNote('Linux', 1, new Uint8Array(4)) });
    expect(findPvhEntry(file, parseElf(file))).to.equal(undefined);
    const bare = buildElf();
    expect(findPvhEntry(bare, parseElf(bare))).to.equal(undefined);
  });

  it('refuses a PVH entry that is not a 32-bit address, or a descriptor of the wrong size', () => {
    const high = buildElf({ notes: pvhNote(0x1_0000_0000n, 8) });
    expect(() => findPvhEntry(high, parseElf(high))).to.throw(BootError, /not a 32-bit address/);
    const odd = buildElf({ notes: elfNote('Xen', 18, new Uint8Array(2)) });
    expect(() => findPvhEntry(odd, parseElf(odd))).to.throw(BootError, /2-byte descriptor/);
  });

  it('loads PT_LOAD segments at p_paddr and zero-fills memory beyond the file size', () => {
    const mem = fakeMemory(4 * MiB);
    mem.writableSlice(0x100000, 0x3000).fill(0xaa);
    const file = buildElf({
      segments: [
        { paddr: 0x100000, data: Uint8Array.of(1, 2, 3, 4), memsz: 0x1000 },
        { paddr: 0x200000, data: Uint8Array.of(9, 8, 7), memsz: 3 },
      ],
    });
    const range = loadElf(file, parseElf(file), mem);
    expect(range).to.deep.equal({ start: 0x100000, end: 0x200003 });
    expect([...mem.read(0x100000, 6)]).to.deep.equal([1, 2, 3, 4, 0, 0]);
    expect(mem.readU8(0x100fff)).to.equal(0);
    expect(mem.readU8(0x101000)).to.equal(0xaa);
    expect([...mem.read(0x200000, 3)]).to.deep.equal([9, 8, 7]);
  });

  describe('malformed files', () => {
    it('refuses a truncated ELF header', () => {
      expect(() => parseElf(buildElf().subarray(0, 40))).to.throw(BootError, /header truncated \(40 bytes, ELF64 needs 64\)/);
      expect(() => parseElf(Uint8Array.of(0x7f, 0x45, 0x4c, 0x46))).to.throw(BootError, /truncated/);
    });

    it('refuses a program header table that runs past the end of the file', () => {
      const file = buildElf();
      expect(() => parseElf(file.subarray(0, 64 + 30))).to.throw(BootError, /program header table of 1 entries .* extends past the end of the file \(94 bytes\)/);
    });

    it('refuses a segment whose contents lie outside the file', () => {
      const file = setU64(buildElf(), phdr64(0, 'offset'), 0x10000);
      expect(() => loadElf(file, parseElf(file), fakeMemory(4 * MiB))).to.throw(BootError, /segment 0 \(offset 0x10000, 3 bytes\) extends past the end of the file/);
    });

    it('refuses a segment whose file size exceeds its memory size', () => {
      const file = setU64(buildElf(), phdr64(0, 'memsz'), 2);
      expect(() => loadElf(file, parseElf(file), fakeMemory(4 * MiB))).to.throw(BootError, /file size 3 larger than its memory size 2/);
    });

    it('refuses a segment outside guest RAM without writing anything', () => {
      const mem = fakeMemory(4 * MiB);
      const file = buildElf({ segments: [{ paddr: 0x100000, data: Uint8Array.of(1) }, { paddr: 0x3ff000, data: Uint8Array.of(2), memsz: 0x2000 }] });
      expect(() => loadElf(file, parseElf(file), mem)).to.throw(BootError, /segment 1 at 0x3ff000 \(8192 bytes\) lies outside guest RAM/);
      expect(mem.readU8(0x100000)).to.equal(0);
    });

    it('refuses a segment that would overwrite the boot structures below 1 MiB', () => {
      const file = buildElf({ segments: [{ paddr: 0x7000, data: Uint8Array.of(1) }] });
      expect(() => loadElf(file, parseElf(file), fakeMemory(4 * MiB))).to.throw(BootError, /overlaps the boot area below 0x100000/);
    });

    it('refuses 64-bit fields too large to be addresses', () => {
      const file = buildElf();
      new DataView(file.buffer).setBigUint64(phdr64(0, 'paddr'), 0xffff_ffff_8100_0000n, true);
      expect(() => parseElf(file)).to.throw(BootError, /segment 0 physical address 0xffffffff81000000 is too large/);
    });

    it('refuses big-endian, non-x86 and non-executable files', () => {
      const be = buildElf();
      be[5] = 2;
      expect(() => parseElf(be)).to.throw(BootError, /not little-endian/);
      expect(() => parseElf(buildElf({ machine: 183 }))).to.throw(BootError, /not an x86 kernel \(e_machine 183\)/);
      const rel = buildElf();
      rel[16] = 1;
      expect(() => parseElf(rel)).to.throw(BootError, /not an executable/);
    });

    it('refuses a note whose sizes run past its segment', () => {
      const notes = pvhNote(0x100000);
      new DataView(notes.buffer).setUint32(4, 4096, true);
      const file = buildElf({ notes });
      expect(() => findPvhEntry(file, parseElf(file))).to.throw(BootError, /note segment 1: note at 0x[0-9a-f]+ .* runs past the end of its area/);
    });

    it('refuses a file with no loadable segment', () => {
      const file = buildElf({ segments: [], notes: pvhNote(0x100000) });
      expect(() => loadElf(file, parseElf(file), fakeMemory(4 * MiB))).to.throw(BootError, /no loadable segments/);
    });
  });
});
