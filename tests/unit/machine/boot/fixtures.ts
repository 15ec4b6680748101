// Test fixtures for the boot loaders: a fake guest memory and synthetic ELF and bzImage kernels built byte by byte.

import { GuestMemory } from '../../../../devices/guest-memory.js';

export const MiB = 1024 * 1024;

/** Guest RAM of `size` bytes at guest-physical 0, backed by a plain array. */
export function fakeMemory(size: number): GuestMemory {
  return new GuestMemory([{ gpa: 0, size, bytes: new Uint8Array(size) }]);
}

/** Sum of bytes modulo 256. */
export function sum8(bytes: Uint8Array): number {
  return bytes.reduce((s, b) => (s + b) & 0xff, 0);
}

/** ASCII text of guest bytes. */
export function ascii(mem: GuestMemory, gpa: number, len: number): string {
  return String.fromCharCode(...mem.read(gpa, len));
}

/** One ELF note entry, padded to 4 bytes as Linux emits them. */
export function elfNote(name: string, type: number, desc: Uint8Array): Uint8Array {
  const pad = (n: number) => Math.ceil(n / 4) * 4;
  const namesz = name.length + 1;
  const out = new Uint8Array(12 + pad(namesz) + pad(desc.length));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, namesz, true);
  dv.setUint32(4, desc.length, true);
  dv.setUint32(8, type, true);
  for (let i = 0; i < name.length; i++) out[12 + i] = name.charCodeAt(i);
  out.set(desc, 12 + pad(namesz));
  return out;
}

/** The Xen PHYS32_ENTRY note with a 4- or 8-byte descriptor. */
export function pvhNote(entry: number | bigint, descSize: 4 | 8 = 4): Uint8Array {
  const desc = new Uint8Array(descSize);
  const dv = new DataView(desc.buffer);
  if (descSize === 4) dv.setUint32(0, Number(entry), true);
  else dv.setBigUint64(0, BigInt(entry), true);
  return elfNote('Xen', 18, desc);
}

export interface ElfSegmentSpec {
  paddr: number;
  data: Uint8Array;
  memsz?: number;
}

export interface ElfSpec {
  elfClass?: 32 | 64;
  machine?: number;
  entry?: number;
  segments?: ElfSegmentSpec[];
  /** Note bytes (several entries allowed), placed in a PT_NOTE segment or an SHT_NOTE section. */
  notes?: Uint8Array;
  notesIn?: 'segment' | 'section';
}

/** Builds a little-endian ET_EXEC x86 ELF: header, program headers, notes, segment contents, section headers. */
export function buildElf(spec: ElfSpec = {}): Uint8Array {
  const is64 = (spec.elfClass ?? 64) === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const shentsize = is64 ? 64 : 40;
  const segments = spec.segments ?? [{ paddr: 0x100000, data: Uint8Array.of(0xf4, 0xeb, 0xfd), memsz: 0x2000 }];
  const notes = spec.notes;
  const noteSegment = notes && (spec.notesIn ?? 'segment') === 'segment';
  const noteSection = notes && spec.notesIn === 'section';
  const phnum = segments.length + (noteSegment ? 1 : 0);
  const align = (n: number) => Math.ceil(n / 8) * 8;

  let cursor = ehsize + phnum * phentsize;
  const notesOffset = cursor;
  cursor = align(cursor + (notes?.length ?? 0));
  const segOffsets = segments.map((s) => {
    const at = cursor;
    cursor = align(cursor + s.data.length);
    return at;
  });
  const shoff = noteSection ? cursor : 0;
  const shnum = noteSection ? 2 : 0;
  const total = cursor + shnum * shentsize;

  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1]);
  dv.setUint16(16, 2, true);
  dv.setUint16(18, spec.machine ?? (is64 ? 62 : 3), true);
  dv.setUint32(20, 1, true);
  const entry = spec.entry ?? 0x100000;
  const word = (at: number, v: number) => (is64 ? dv.setBigUint64(at, BigInt(v), true) : dv.setUint32(at, v, true));
  if (is64) {
    word(24, entry); word(32, ehsize); word(40, shoff);
    dv.setUint16(52, ehsize, true); dv.setUint16(54, phentsize, true); dv.setUint16(56, phnum, true);
    dv.setUint16(58, shentsize, true); dv.setUint16(60, shnum, true);
  } else {
    word(24, entry); word(28, ehsize); word(32, shoff);
    dv.setUint16(40, ehsize, true); dv.setUint16(42, phentsize, true); dv.setUint16(44, phnum, true);
    dv.setUint16(46, shentsize, true); dv.setUint16(48, shnum, true);
  }

  const phdr = (index: number, type: number, offset: number, paddr: number, filesz: number, memsz: number, palign: number) => {
    const at = ehsize + index * phentsize;
    dv.setUint32(at, type, true);
    if (is64) {
      dv.setUint32(at + 4, 5, true);
      word(at + 8, offset); word(at + 16, paddr); word(at + 24, paddr); word(at + 32, filesz); word(at + 40, memsz); word(at + 48, palign);
    } else {
      word(at + 4, offset); word(at + 8, paddr); word(at + 12, paddr); word(at + 16, filesz); word(at + 20, memsz);
      dv.setUint32(at + 24, 5, true); word(at + 28, palign);
    }
  };
  segments.forEach((s, i) => {
    phdr(i, 1, segOffsets[i], s.paddr, s.data.length, s.memsz ?? s.data.length, 0x1000);
    out.set(s.data, segOffsets[i]);
  });
  if (notes) out.set(notes, notesOffset);
  if (noteSegment) phdr(segments.length, 4, notesOffset, 0, notes.length, notes.length, 4);
  if (noteSection) {
    const at = shoff + shentsize; // section 0 stays the null section
    dv.setUint32(at + 4, 7, true);
    if (is64) { word(at + 24, notesOffset); word(at + 32, notes.length); word(at + 48, 4); }
    else { word(at + 16, notesOffset); word(at + 20, notes.length); word(at + 32, 4); }
  }
  return out;
}

/** Offset of a program header's field in a 64-bit ELF built by buildElf. */
export function phdr64(index: number, field: 'offset' | 'paddr' | 'filesz' | 'memsz'): number {
  return 64 + index * 56 + { offset: 8, paddr: 24, filesz: 32, memsz: 40 }[field];
}

export interface BzImageSpec {
  protocol?: number;
  xloadflags?: number;
  setupSects?: number;
  payload?: Uint8Array;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  prefAddress?: number;
  initSize?: number;
}

/** Builds a bzImage with the fields the boot protocol defines and a recognisable protected-mode payload. */
export function buildBzImage(spec: BzImageSpec = {}): Uint8Array {
  const setupSects = spec.setupSects ?? 4;
  const payload = spec.payload ?? Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 1) & 0xff);
  const setupSize = ((setupSects || 4) + 1) * 512;
  const out = new Uint8Array(setupSize + payload.length);
  const dv = new DataView(out.buffer);
  out[0x1f1] = setupSects;
  dv.setUint16(0x1fa, 0xffff, true); // vid_mode: normal
  dv.setUint16(0x1fe, 0xaa55, true);
  out[0x200] = 0xeb;
  out[0x201] = 0x6a; // setup header ends at 0x26c
  dv.setUint32(0x202, 0x53726448, true);
  dv.setUint16(0x206, spec.protocol ?? 0x020f, true);
  out[0x211] = 0x01; // LOADED_HIGH
  dv.setUint32(0x214, 0x100000, true);
  dv.setUint32(0x22c, spec.initrdAddrMax ?? 0x7fffffff, true);
  dv.setUint32(0x230, 0x200000, true);
  out[0x234] = 1;
  dv.setUint16(0x236, spec.xloadflags ?? 0x1b, true);
  dv.setUint32(0x238, spec.cmdlineSize ?? 2047, true);
  dv.setBigUint64(0x258, BigInt(spec.prefAddress ?? 0x1000000), true);
  dv.setUint32(0x260, spec.initSize ?? 0x400000, true);
  out.set(payload, setupSize);
  return out;
}
