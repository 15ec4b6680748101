// The test guest uses virtio-blk disks on tsvirt: what it writes lands in the image file, and it reads what the host wrote.

import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../harness/guest.js';
import { sectorPattern } from '../harness/sector-pattern.js';
import { requireKvm } from '../harness/skip.js';
import { VmmProcess } from '../harness/tsvirt-process.js';

const MiB = 1024 * 1024;

describe('virtio-blk with the test guest', function () {
  this.timeout(60000);
  before(requireKvm);
  let dir: string;
  const vms: VmmProcess[] = [];
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-blk-'))));
  afterEach(async () => {
    await Promise.all(vms.splice(0).map((v) => v.kill()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const image = (name: string, size = 16 * MiB) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, Buffer.alloc(0));
    fs.truncateSync(p, size);
    return p;
  };
  const disk = (file: string, id: string, slot: number, extra = '') => [
    '-drive', `file=${file},id=${id}${extra}`, '-device', `virtio-blk-pci,drive=${id},id=${id}dev,addr=0x${slot.toString(16)},serial=SN-${id}`,
  ];
  const start = (args: string[], append = 'console=ttyS0') => {
    const vm = VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', '128', '-append', append, ...args]);
    vms.push(vm);
    return vm;
  };

  it('writes a pattern, flushes and powers off; the host finds the pattern in the image file', async () => {
    const img = image('d0.img');
    const vm = start(disk(img, 'd0', 3), 'console=ttyS0 blktest=0:128:7');
    await vm.waitFor(/VIRTIO 00:03\.0 blk irq=msix/);
    await vm.waitFor(/BLK 0 capacity=32768 ro=0 serial=SN-d0/);
    await vm.waitFor(/BLKWRITE OK/);
    await vm.waitFor(/BLKFLUSH OK/);
    await vm.waitFor(/BLKREAD OK/);
    vm.send('poweroff\r');
    expect((await vm.waitExit()).code).to.equal(0);
    const data = fs.readFileSync(img);
    expect(data.subarray(0, 128 * 512).equals(sectorPattern(7, 0, 128))).to.equal(true);
    expect(data.subarray(128 * 512, 129 * 512).every((b) => b === 0)).to.equal(true);
  });

  it('reads back a pattern the host wrote, and notices one it did not', async () => {
    const img = image('d0.img');
    const fd = fs.openSync(img, 'r+');
    fs.writeSync(fd, sectorPattern(9, 1000, 64), 0, 64 * 512, 1000 * 512);
    fs.closeSync(fd);
    const vm = start(disk(img, 'd0', 3));
    await vm.waitFor(/READY/);
    vm.send('blkread 0 1000 64 9\r');
    await vm.waitFor(/BLKREAD OK/);
    vm.send('blkread 0 1000 64 10\r');
    await vm.waitFor(/BLKREAD MISMATCH sector=1000/);
    vm.send('blkid 0\r');
    await vm.waitFor(/BLKID SN-d0/);
  });

  it('serves two disks at once', async () => {
    const a = image('a.img');
    const b = image('b.img', 8 * MiB);
    const vm = start([...disk(a, 'da', 3), ...disk(b, 'db', 4)], 'console=ttyS0 blktest=0:64:1 blktest=1:32:2');
    await vm.waitFor(/BLK 0 capacity=32768 ro=0 serial=SN-da/);
    await vm.waitFor(/BLK 1 capacity=16384 ro=0 serial=SN-db/);
    for (let i = 0; i < 2; i++) {
      await vm.waitFor(/BLKREAD OK/);
    }
    vm.send('poweroff\r');
    expect((await vm.waitExit()).code).to.equal(0);
    expect(fs.readFileSync(a).subarray(0, 64 * 512).equals(sectorPattern(1, 0, 64))).to.equal(true);
    expect(fs.readFileSync(b).subarray(0, 32 * 512).equals(sectorPattern(2, 0, 32))).to.equal(true);
  });

  it('fails writes to a readonly=on disk with an I/O error and leaves the image untouched', async () => {
    const img = image('ro.img');
    const vm = start(disk(img, 'd0', 3, ',readonly=on'));
    await vm.waitFor(/BLK 0 capacity=32768 ro=1/);
    await vm.waitFor(/READY/);
    vm.send('blkwrite 0 0 8 5\r');
    await vm.waitFor(/BLKWRITE ERROR status=1/);
    vm.send('blkread 0 0 1 5\r');
    await vm.waitFor(/BLKREAD MISMATCH sector=0/);
    expect(fs.readFileSync(img).every((x) => x === 0)).to.equal(true);
  });
});
