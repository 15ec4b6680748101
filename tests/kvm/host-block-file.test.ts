// On real KVM guest memory: the raw disk backend reads and writes straight into views of RAM from allocateRam, read-only and O_DIRECT included.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BlockFileError, RawBlockFile } from '../../machine/host/block-file.js';
import { directIoAlignment } from '../../machine/host/libc-extra.js';
import { Kvm } from '../../machine/kvm/system.js';
import type { VmFd } from '../../machine/kvm/vm.js';
import { addressOf } from '../../machine/kvm/libc.js';
import { allocateRam, freeRam, type Ram } from '../../machine/memory.js';
import { requireKvm, skipBecause } from '../harness/skip.js';

const DISK_SIZE = 1 << 20;

function pattern(len: number, seed: number): Uint8Array {
  return new Uint8Array(len).map((_, i) => (i * 31 + seed) & 0xff);
}

describe('host: raw block file backend on guest memory', function () {
  this.timeout(20000);
  let dir: string;
  let image: string;
  let kvm: Kvm | undefined;
  let vm: VmFd | undefined;
  let ram: Ram | undefined;
  const files: RawBlockFile[] = [];

  before(function () {
    requireKvm.call(this);
    kvm = Kvm.open();
    vm = kvm.createVm();
    ram = allocateRam(vm, 16 << 20);
  });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-blk-'));
    image = path.join(dir, 'disk.raw');
    fs.writeFileSync(image, pattern(DISK_SIZE, 1));
  });

  afterEach(() => {
    for (const f of files.splice(0)) f.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  after(() => {
    if (ram) freeRam(ram.backings);
    vm?.close();
    kvm?.close();
  });

  const open = (opts: { readonly?: boolean; direct?: boolean } = {}) => {
    const f = RawBlockFile.open(image, opts);
    files.push(f);
    return f;
  };

  it('reads into several guest-memory views with one request, in order', async () => {
    const f = open();
    expect(f.size).to.equal(DISK_SIZE);
    const mem = ram!.memory;
    const views = [mem.writableSlice(0x10_0000, 512), mem.writableSlice(0x20_0000 + 100, 1000), mem.writableSlice(0x30_0000, 4096)];
    await f.read(4096, views);
    const want = pattern(DISK_SIZE, 1);
    expect(Buffer.from(mem.read(0x10_0000, 512)).equals(want.subarray(4096, 4608))).to.equal(true);
    expect(Buffer.from(mem.read(0x20_0000 + 100, 1000)).equals(want.subarray(4608, 5608))).to.equal(true);
    expect(Buffer.from(mem.read(0x30_0000, 4096)).equals(want.subarray(5608, 9704))).to.equal(true);
  });

  it('writes from guest-memory views and flushes them to the file', async () => {
    const f = open();
    const mem = ram!.memory;
    mem.write(0x40_0000, pattern(3000, 9));
    mem.write(0x50_0000, pattern(1096, 17));
    await f.write(8192, [mem.slice(0x40_0000, 3000), mem.slice(0x50_0000, 1096)]);
    await f.flush();
    const onDisk = fs.readFileSync(image);
    expect(onDisk.subarray(8192, 11192).equals(pattern(3000, 9))).to.equal(true);
    expect(onDisk.subarray(11192, 12288).equals(pattern(1096, 17))).to.equal(true);
    expect(onDisk.subarray(0, 8192).equals(pattern(DISK_SIZE, 1).subarray(0, 8192))).to.equal(true);
  });

  it('fills zeros for the part of a read past the end of the file', async () => {
    const f = open();
    const view = ram!.memory.writableSlice(0x60_0000, 1024);
    view.fill(0xaa);
    await f.read(DISK_SIZE - 512, [view]);
    expect(Buffer.from(view.subarray(0, 512)).equals(pattern(DISK_SIZE, 1).subarray(DISK_SIZE - 512))).to.equal(true);
    expect(view.subarray(512).every((b) => b === 0)).to.equal(true);
  });

  it('moves more views than IOV_MAX in one request', async () => {
    const f = open();
    const views = Array.from({ length: 1500 }, (_, i) => ram!.memory.writableSlice(0x70_0000 + i * 512, 512));
    await f.read(0, views);
    expect(Buffer.from(ram!.memory.read(0x70_0000, 1500 * 512)).equals(pattern(DISK_SIZE, 1).subarray(0, 1500 * 512))).to.equal(true);
  });

  it('refuses writes when opened readonly, and the file stays as it was', async () => {
    const f = open({ readonly: true });
    let err: unknown;
    try {
      await f.write(0, [ram!.memory.slice(0, 512)]);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(BlockFileError);
    expect((err as Error).message).to.equal(`-drive file=${image}: the image is read-only`);
    await f.flush();
    expect(fs.readFileSync(image).equals(pattern(DISK_SIZE, 1))).to.equal(true);
  });

  it('names a missing file as the command line did', () => {
    const missing = path.join(dir, 'nope.raw');
    expect(() => RawBlockFile.open(missing)).to.throw(BlockFileError, `-drive file=${missing}: no such file`);
    try {
      RawBlockFile.open(missing);
    } catch (e) {
      expect((e as BlockFileError).reason).to.equal('no such file');
    }
  });

  describe('direct=on', () => {
    beforeEach(function () {
      const align = directIoAlignment(os.tmpdir());
      if (align && align.memory === 0 && align.offset === 0) skipBecause(this, `${os.tmpdir()} does not support O_DIRECT`);
      try {
        fs.closeSync(fs.openSync(image, fs.constants.O_RDONLY | fs.constants.O_DIRECT));
      } catch (e) {
        skipBecause(this, `O_DIRECT open on ${os.tmpdir()} failed: ${(e as Error).message}`);
      }
    });

    it('reads and writes page-aligned guest memory without a bounce buffer', async () => {
      const f = open({ direct: true });
      expect(f.offsetAlign).to.be.greaterThan(1);
      const mem = ram!.memory;
      const view = mem.writableSlice(0x80_0000, 8192);
      expect(addressOf(view) % 4096n).to.equal(0n);
      await f.read(4096, [view]);
      expect(Buffer.from(view).equals(pattern(DISK_SIZE, 1).subarray(4096, 4096 + 8192))).to.equal(true);
      mem.write(0x90_0000, pattern(4096, 5));
      await f.write(0, [mem.slice(0x90_0000, 4096)]);
      await f.flush();
      expect(fs.readFileSync(image).subarray(0, 4096).equals(pattern(4096, 5))).to.equal(true);
      expect(f.bounced).to.equal(0);
    });

    it('bounces only requests with an unaligned guest buffer, and gets the same bytes', async () => {
      const f = open({ direct: true });
      const mem = ram!.memory;
      // A guest buffer at an odd address and of an odd length: O_DIRECT would refuse it.
      const odd = mem.writableSlice(0xa0_0000 + 3, 700);
      const rest = mem.writableSlice(0xa1_0000, 324);
      await f.read(1024, [odd, rest]);
      const want = pattern(DISK_SIZE, 1);
      expect(Buffer.from(odd).equals(want.subarray(1024, 1724))).to.equal(true);
      expect(Buffer.from(rest).equals(want.subarray(1724, 2048))).to.equal(true);
      mem.write(0xb0_0000 + 1, pattern(100, 77));
      // An unaligned offset and length too: the partial blocks around it keep their bytes.
      await f.write(5000, [mem.slice(0xb0_0000 + 1, 100)]);
      await f.flush();
      const disk = fs.readFileSync(image);
      expect(disk.subarray(5000, 5100).equals(pattern(100, 77))).to.equal(true);
      expect(disk.subarray(4608, 5000).equals(want.subarray(4608, 5000))).to.equal(true);
      expect(disk.subarray(5100, 5632).equals(want.subarray(5100, 5632))).to.equal(true);
      expect(f.bounced).to.equal(2);
    });

    it('refuses an image whose size is not a multiple of the O_DIRECT block', () => {
      fs.truncateSync(image, DISK_SIZE - 100);
      expect(() => open({ direct: true })).to.throw(BlockFileError, /direct=on needs a size that is a multiple of \d+ bytes/);
    });
  });
});
