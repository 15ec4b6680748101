// A bounds-checked reader for little-endian x86 ELF32/ELF64 kernels: program headers, note entries, PT_LOAD loading.

import type { GuestMemory } from '../../devices/guest-memory.js';
import { BootError } from '../errors.js';
import { HIMEM_START } from '../layout.js';
import { hex } from './bytes.js';
import { copyToRam, isRam, zeroRam } from './ram.js';

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const ELFCLASS32 = 1;
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const EV_CURRENT = 1;
const ET_EXEC = 2;
/** e_machine values tsvirt can run. */
export const EM_386 = 3;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const SHT_NOTE = 7;
const latin1 = new TextDecoder('latin1');
/** e_phnum value meaning "the real count is elsewhere"; no kernel needs that many headers. */
const PN_XNUM = 0xffff;

/** Field offsets and sizes that differ between ELF32 and ELF64. */
export interface ElfShape {
  ehsize: number;
  phentsize: number;
  shentsize: number;
  e: { entry: number; phoff: number; shoff: number; phentsize: number; phnum: number; shentsize: number; shnum: number };
  p: { offset: number; paddr: number; filesz: number; memsz: number; align: number };
  s: { type: number; offset: number; size: number; addralign: number };
  word: 4 | 8;
}

const SHAPE32: ElfShape = {
  ehsize: 52, phentsize: 32, shentsize: 40, word: 4,
  e: { entry: 24, phoff: 28, shoff: 32, phentsize: 42, phnum: 44, shentsize: 46, shnum: 48 },
  p: { offset: 4, paddr: 12, filesz: 16, memsz: 20, align: 28 },
  s: { type: 4, offset: 16, size: 20, addralign: 32 },
};

const SHAPE64: ElfShape = {
  ehsize: 64, phentsize: 56, shentsize: 64, word: 8,
  e: { entry: 24, phoff: 32, shoff: 40, phentsize: 54, phnum: 56, shentsize: 58, shnum: 60 },
  p: { offset: 8, paddr: 24, filesz: 32, memsz: 40, align: 48 },
  s: { type: 4, offset: 24, size: 32, addralign: 48 },
};

/** One program header, with 64-bit fields already checked to fit in a JavaScript number. */
export interface ElfProgramHeader {
  readonly index: number;
  readonly type: number;
  readonly offset: number;
  readonly paddr: number;
  readonly filesz: number;
  readonly memsz: number;
  readonly align: number;
}

/** A file range holding note entries (a PT_NOTE segment or an SHT_NOTE section). */
export interface ElfNoteArea {
  readonly where: string;
  readonly offset: number;
  readonly size: number;
  readonly align: number;
}

/** One ELF note: its name without the terminating NUL, its type and its descriptor bytes. */
export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly desc: Uint8Array;
}

/** A parsed ELF header and program header table; the file itself is not copied. */
export interface ElfImage {
  readonly elfClass: 32 | 64;
  readonly machine: number;
  readonly entry: bigint;
  readonly programHeaders: readonly ElfProgramHeader[];
  readonly shape: ElfShape;
}

/** True when `file` starts with the ELF magic. */
export function isElf(file: Uint8Array): boolean {
  return file.length >= 4 && ELF_MAGIC.every((b, i) => file[i] === b);
}

function fail(message: string): never {
  throw new BootError(`ELF kernel: ${message}`);
}

function view(file: Uint8Array): DataView {
  return new DataView(file.buffer, file.byteOffset, file.byteLength);
}

/** Reads an address/offset/size field of the class's width as a number, refusing values beyond 2^53. */
function readWord(dv: DataView, offset: number, word: 4 | 8, what: string): number {
  if (word === 4) return dv.getUint32(offset, true);
  const v = dv.getBigUint64(offset, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${hex(v)} is too large`);
  return Number(v);
}

/** Checks that [offset, offset+size) lies inside the file, naming `what` if not. */
function checkInFile(file: Uint8Array, offset: number, size: number, what: string): void {
  if (offset + size > file.length) {
    fail(`${what} (offset ${hex(offset)}, ${size} bytes) extends past the end of the file (${file.length} bytes)`);
  }
}

/** Parses and validates the ELF header and program header table of a little-endian x86 kernel. */
export function parseElf(file: Uint8Array): ElfImage {
  if (!isElf(file)) fail('no ELF magic');
  if (file.length < 16) fail(`file truncated in its identification bytes (${file.length} bytes)`);
  const elfClass = file[4];
  if (elfClass !== ELFCLASS32 && elfClass !== ELFCLASS64) fail(`unknown ELF class ${elfClass}`);
  if (file[5] !== ELFDATA2LSB) fail('not little-endian');
  if (file[6] !== EV_CURRENT) fail(`unknown ELF version ${file[6]}`);
  const shape = elfClass === ELFCLASS64 ? SHAPE64 : SHAPE32;
  if (file.length < shape.ehsize) fail(`header truncated (${file.length} bytes, ELF${elfClass === ELFCLASS64 ? 64 : 32} needs ${shape.ehsize})`);

  const dv = view(file);
  const type = dv.getUint16(16, true);
  if (type !== ET_EXEC) fail(`not an executable (e_type ${type})`);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_386 && machine !== EM_X86_64) fail(`not an x86 kernel (e_machine ${machine})`);
  const entry = shape.word === 8 ? dv.getBigUint64(shape.e.entry, true) : BigInt(dv.getUint32(shape.e.entry, true));

  const phoff = readWord(dv, shape.e.phoff, shape.word, 'program header offset');
  const phnum = dv.getUint16(shape.e.phnum, true);
  const phentsize = dv.getUint16(shape.e.phentsize, true);
  if (phnum === PN_XNUM) fail('too many program headers (extended numbering is not supported)');
  if (phnum > 0 && phentsize !== shape.phentsize) fail(`program header size ${phentsize}, expected ${shape.phentsize}`);
  checkInFile(file, phoff, phnum * shape.phentsize, `program header table of ${phnum} entries`);

  const programHeaders: ElfProgramHeader[] = [];
  for (let index = 0; index < phnum; index++) {
    const at = phoff + index * shape.phentsize;
    const field = (off: number, what: string) => readWord(dv, at + off, shape.word, `segment ${index} ${what}`);
    programHeaders.push({
      index,
      type: dv.getUint32(at, true),
      offset: field(shape.p.offset, 'offset'),
      paddr: field(shape.p.paddr, 'physical address'),
      filesz: field(shape.p.filesz, 'file size'),
      memsz: field(shape.p.memsz, 'memory size'),
      align: field(shape.p.align, 'alignment'),
    });
  }
  return { elfClass: elfClass === ELFCLASS64 ? 64 : 32, machine, entry, programHeaders, shape };
}

/** The PT_LOAD segments, checked against the file: contents inside it, file size within memory size. */
export function loadSegments(file: Uint8Array, elf: ElfImage): ElfProgramHeader[] {
  const loads = elf.programHeaders.filter((ph) => ph.type === PT_LOAD && ph.memsz > 0);
  for (const ph of loads) {
    checkInFile(file, ph.offset, ph.filesz, `segment ${ph.index}`);
    if (ph.filesz > ph.memsz) fail(`segment ${ph.index} has file size ${ph.filesz} larger than its memory size ${ph.memsz}`);
  }
  if (loads.length === 0) fail('no loadable segments');
  return loads;
}

/** Guest-physical range the loaded segments span. */
export interface LoadedRange {
  readonly start: number;
  readonly end: number;
}

/** Checks every PT_LOAD segment fits in guest RAM above the boot area, then copies it to p_paddr and zero-fills the rest of p_memsz. */
export function loadElf(file: Uint8Array, elf: ElfImage, mem: GuestMemory): LoadedRange {
  const loads = loadSegments(file, elf);
  for (const ph of loads) {
    // Below 1 MiB live the zero page, start_info, page tables and firmware tables: a segment there would clobber them.
    if (ph.paddr < HIMEM_START) fail(`segment ${ph.index} at ${hex(ph.paddr)} overlaps the boot area below ${hex(HIMEM_START)}`);
    if (!isRam(mem, ph.paddr, ph.memsz)) fail(`segment ${ph.index} at ${hex(ph.paddr)} (${ph.memsz} bytes) lies outside guest RAM`);
  }
  for (const ph of loads) {
    copyToRam(mem, ph.paddr, file.subarray(ph.offset, ph.offset + ph.filesz));
    zeroRam(mem, ph.paddr + ph.filesz, ph.memsz - ph.filesz);
  }
  return {
    start: Math.min(...loads.map((ph) => ph.paddr)),
    end: Math.max(...loads.map((ph) => ph.paddr + ph.memsz)),
  };
}

/** The file ranges holding notes: PT_NOTE segments, or the SHT_NOTE sections when `sections` is set. */
export function noteAreas(file: Uint8Array, elf: ElfImage, sections: boolean): ElfNoteArea[] {
  if (!sections) {
    return elf.programHeaders
      .filter((ph) => ph.type === PT_NOTE)
      .map((ph) => ({ where: `note segment ${ph.index}`, offset: ph.offset, size: ph.filesz, align: ph.align }));
  }
  const { shape } = elf;
  const dv = view(file);
  const shoff = readWord(dv, shape.e.shoff, shape.word, 'section header offset');
  const shnum = dv.getUint16(shape.e.shnum, true);
  if (shoff === 0 || shnum === 0) return [];
  const shentsize = dv.getUint16(shape.e.shentsize, true);
  if (shentsize !== shape.shentsize) fail(`section header size ${shentsize}, expected ${shape.shentsize}`);
  checkInFile(file, shoff, shnum * shentsize, `section header table of ${shnum} entries`);
  const areas: ElfNoteArea[] = [];
  for (let index = 0; index < shnum; index++) {
    const at = shoff + index * shentsize;
    if (dv.getUint32(at + shape.s.type, true) !== SHT_NOTE) continue;
    const field = (off: number, what: string) => readWord(dv, at + off, shape.word, `section ${index} ${what}`);
    areas.push({
      where: `note section ${index}`,
      offset: field(shape.s.offset, 'offset'),
      size: field(shape.s.size, 'size'),
      align: field(shape.s.addralign, 'alignment'),
    });
  }
  return areas;
}

/** Decodes the note entries in one note area, checking each against the area and the file. */
export function readNotes(file: Uint8Array, area: ElfNoteArea): ElfNote[] {
  checkInFile(file, area.offset, area.size, area.where);
  // Notes are padded to 4 bytes even in ELF64 kernels; only an area declaring 8-byte alignment pads to 8.
  const pad = area.align === 8 ? 8 : 4;
  const roundUp = (n: number) => Math.ceil(n / pad) * pad;
  const dv = view(file);
  const notes: ElfNote[] = [];
  let at = area.offset;
  const end = area.offset + area.size;
  while (end - at >= 12) {
    const namesz = dv.getUint32(at, true);
    const descsz = dv.getUint32(at + 4, true);
    const type = dv.getUint32(at + 8, true);
    const nameAt = at + 12;
    const descAt = nameAt + roundUp(namesz);
    if (descAt + descsz > end) fail(`${area.where}: note at ${hex(at)} (name ${namesz} bytes, descriptor ${descsz} bytes) runs past the end of its area`);
    let nameEnd = nameAt + namesz;
    if (namesz > 0 && file[nameEnd - 1] === 0) nameEnd--;
    const name = latin1.decode(file.subarray(nameAt, nameEnd));
    notes.push({ name, type, desc: file.subarray(descAt, descAt + descsz) });
    at = descAt + roundUp(descsz);
  }
  return notes;
}
