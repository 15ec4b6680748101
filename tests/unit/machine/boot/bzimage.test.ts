// Unit tests of the bzImage path: header checks, the protected-mode load address, and boot_params field offsets.
import { expect } from 'chai';
import { BootError } from '../../../../machine/errors.js';
import { CMDLINE_START, e820Map, HIMEM_START, ZERO_PAGE_START } from '../../../../machine/layout.js';
import { loadBzImage, parseBzImage, writeZeroPage } from '../../../../machine/boot/bzimage.js';
import { ascii, buildBzImage, fakeMemory, MiB } from './fixtures.js';

describe('boot/bzimage', () => {
  it('loads the protected-mode kernel at 1 MiB and enters it 0x200 bytes in', () => {
    const file = buildBzImage();
    const mem = fakeMemory(32 * MiB);
    const loaded = loadBzImage(parseBzImage(file), mem, 32 * MiB);
    expect(loaded.entry).to.equal(0x100200n);
    expect([...mem.read(HIMEM_START, 16)]).to.deep.equal([...file.subarray(5 * 512, 5 * 512 + 16)]);
    // A relocatable kernel decompresses at pref_address, so it needs RAM up to pref_address + init_size.
    expect(loaded.end).to.equal(0x1000000 + 0x400000);
  });

  it('treats setup_sects 0 as 4', () => {
    const image = parseBzImage(buildBzImage({ setupSects: 0 }));
    expect(image.protectedMode.length).to.equal(4096);
    expect(image.protectedMode[0]).to.equal(1);
  });

  it('fills boot_params at the offsets the boot protocol gives', () => {
    const file = buildBzImage();
    const mem = fakeMemory(32 * MiB);
    const image = parseBzImage(file);
    writeZeroPage(mem, image, { cmdlineAddr: CMDLINE_START, rsdpAddr: 0xe0000, memSize: 32 * MiB, initrd: { addr: 0x1e00000, size: 0x5000 } });
    const zp = ZERO_PAGE_START;
    expect(ascii(mem, zp + 0x202, 4)).to.equal('HdrS', 'setup header copied');
    expect(mem.readU16(zp + 0x206)).to.equal(0x020f);
    expect(mem.readU16(zp + 0x1fe)).to.equal(0xaa55);
    expect(mem.readU8(zp + 0x210)).to.equal(0xff, 'type_of_loader');
    expect(mem.readU8(zp + 0x211)).to.equal(0x81, 'loadflags LOADED_HIGH | CAN_USE_HEAP');
    expect(mem.readU16(zp + 0x224)).to.equal(0xfe00, 'heap_end_ptr');
    expect(mem.readU32(zp + 0x228)).to.equal(CMDLINE_START, 'cmd_line_ptr');
    expect(mem.readU32(zp + 0x218)).to.equal(0x1e00000, 'ramdisk_image');
    expect(mem.readU32(zp + 0x21c)).to.equal(0x5000, 'ramdisk_size');
    expect(mem.readU64(zp + 0x070)).to.equal(0xe0000n, 'acpi_rsdp_addr');
    const map = e820Map(32 * MiB);
    expect(mem.readU8(zp + 0x1e8)).to.equal(map.length, 'e820_entries');
    map.forEach((e, i) => {
      const at = zp + 0x2d0 + i * 20;
      expect([mem.readU64(at), mem.readU64(at + 8), mem.readU32(at + 16)]).to.deep.equal([BigInt(e.addr), BigInt(e.size), e.type]);
    });
    expect(mem.readU32(zp + 0x2d0 + map.length * 20 + 16)).to.equal(0, 'nothing after the last entry');
  });

  it('refuses a boot protocol older than 2.12', () => {
    expect(() => parseBzImage(buildBzImage({ protocol: 0x020b }))).to.throw(BootError, /boot protocol 2\.11 is too old: tsvirt needs 2\.12 or later/);
  });

  it('refuses a kernel without the 64-bit entry', () => {
    expect(() => parseBzImage(buildBzImage({ xloadflags: 0x02 }))).to.throw(BootError, /no 64-bit entry point \(XLF_KERNEL_64/);
  });

  it('refuses a bzImage cut off inside its setup code', () => {
    const file = buildBzImage().subarray(0, 5 * 512);
    expect(() => parseBzImage(file)).to.throw(BootError, /truncated: its setup code takes 2560 bytes but the file has 2560/);
  });

  it('refuses a setup header length that does not fit the protocol', () => {
    const file = buildBzImage();
    file[0x201] = 0x20;
    expect(() => parseBzImage(file)).to.throw(BootError, /setup header ends at 0x222/);
  });

  it('refuses a guest too small for the kernel to decompress in', () => {
    const image = parseBzImage(buildBzImage());
    expect(() => loadBzImage(image, fakeMemory(16 * MiB), 16 * MiB)).to.throw(BootError, /needs guest RAM up to 0x1400000 \(20 MiB\) .* guest has 16 MiB/);
  });
});
