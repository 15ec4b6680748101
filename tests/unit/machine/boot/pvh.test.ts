// Unit tests of hvm_start_info: field offsets, the memory map and the initrd module entry.
import { expect } from 'chai';
import { e820Map, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START } from '../../../../machine/layout.js';
import { writeStartInfo } from '../../../../machine/boot/pvh.js';
import { fakeMemory, MiB } from './fixtures.js';

describe('boot/pvh start_info', () => {
  it('puts magic, version and the pointers at the offsets start_info.h gives', () => {
    const mem = fakeMemory(2 * MiB);
    writeStartInfo(mem, { cmdlineAddr: 0x20000, rsdpAddr: 0xe0000, memSize: 2 * MiB });
    const at = PVH_INFO_START;
    expect(mem.readU32(at + 0)).to.equal(0x336ec578);
    expect(mem.readU32(at + 4)).to.equal(1);
    expect(mem.readU32(at + 8)).to.equal(0);
    expect(mem.readU32(at + 12)).to.equal(0, 'no modules without an initrd');
    expect(mem.readU64(at + 16)).to.equal(0n);
    expect(mem.readU64(at + 24)).to.equal(0x20000n);
    expect(mem.readU64(at + 32)).to.equal(0xe0000n);
    expect(mem.readU64(at + 40)).to.equal(BigInt(PVH_MEMMAP_START));
    expect(mem.readU32(at + 48)).to.equal(e820Map(2 * MiB).length);
  });

  it('writes the memory map as 24-byte hvm_memmap_table_entry records matching the e820 map', () => {
    const memSize = 3 * 1024 * MiB; // spills above 4 GiB on q35: the map has a high-RAM entry
    const mem = fakeMemory(2 * MiB);
    writeStartInfo(mem, { cmdlineAddr: 0x20000, rsdpAddr: 0xe0000, memSize });
    const map = e820Map(memSize);
    expect(mem.readU32(PVH_INFO_START + 48)).to.equal(map.length);
    map.forEach((e, i) => {
      const at = PVH_MEMMAP_START + i * 24;
      expect([mem.readU64(at), mem.readU64(at + 8), mem.readU32(at + 16)]).to.deep.equal([BigInt(e.addr), BigInt(e.size), e.type]);
    });
    expect(map.at(-1)!.addr).to.equal(0x1_0000_0000);
  });

  it('describes the initrd as the one module', () => {
    const mem = fakeMemory(2 * MiB);
    writeStartInfo(mem, { cmdlineAddr: 0x20000, rsdpAddr: 0xe0000, memSize: 2 * MiB, initrd: { addr: 0x1f0000, size: 0x1234 } });
    expect(mem.readU32(PVH_INFO_START + 12)).to.equal(1);
    expect(mem.readU64(PVH_INFO_START + 16)).to.equal(BigInt(PVH_MODLIST_START));
    expect(mem.readU64(PVH_MODLIST_START)).to.equal(0x1f0000n);
    expect(mem.readU64(PVH_MODLIST_START + 8)).to.equal(0x1234n);
    expect(mem.readU64(PVH_MODLIST_START + 16)).to.equal(0n);
  });
});
