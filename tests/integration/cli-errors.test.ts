// Bad command lines and bad boot images end tsvirt with one clear line naming the problem and a non-zero exit.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest, debianBzImage } from '../harness/guest.js';
import { tsvirtMain } from '../harness/paths.js';
import { requireKvm, skipBecause } from '../harness/skip.js';

function tsvirt(args: string[], prefix: string[] = []): { status: number | null; stderr: string; stdout: string } {
  const cmd = prefix.length ? prefix[0] : process.execPath;
  const full = prefix.length ? [...prefix.slice(1), process.execPath, tsvirtMain, ...args] : [tsvirtMain, ...args];
  const r = spawnSync(cmd, full, { encoding: 'utf8', timeout: 20000, input: '' });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

/** Asserts a single-line error matching `re` and a non-zero exit. */
function expectOneLineError(r: { status: number | null; stderr: string }, re: RegExp): void {
  expect(r.status, r.stderr).to.not.equal(0);
  expect(r.status).to.not.equal(null);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).to.have.length(1);
  expect(lines[0]).to.match(/^tsvirt: /);
  expect(lines[0]).to.match(re);
  expect(r.stderr).to.not.match(/\n\s+at /); // no stack trace
}

describe('tsvirt command-line and boot-image errors', function () {
  this.timeout(30000);
  let dir: string;
  before(function () {
    requireKvm.call(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-cli-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('names -m when the memory size is 0', () => {
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-m', '0']), /-m: .*greater than 0/);
  });

  it('names -smp when the CPU count is 0', () => {
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-smp', '0']), /-smp: .*at least 1/);
  });

  it('names -smp when the CPU count is over what KVM and the xAPIC allow', () => {
    // KVM here allows 1024 vCPUs; tsvirt's MADT/MP table carry 8-bit APIC ids, so 255 is the lower limit that applies.
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-smp', '1025', '-m', '64']), /-smp: CPU count 1025 exceeds the maximum of 255/);
  });

  it('names an unknown option', () => {
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-frobnicate', 'yes']), /-frobnicate/);
  });

  it('names -kernel when the kernel file does not exist', () => {
    expectOneLineError(tsvirt(['-kernel', path.join(dir, 'missing'), '-m', '64']), /-kernel: cannot read .*missing: no such file/);
  });

  it('refuses a kernel that is neither a bzImage nor an ELF', () => {
    const f = path.join(dir, 'garbage');
    fs.writeFileSync(f, Buffer.alloc(64 * 1024, 0x5a));
    expectOneLineError(tsvirt(['-kernel', f, '-m', '64']), /neither a bzImage nor an ELF with a PVH entry note/);
  });

  it('refuses an ELF without a PVH entry note', () => {
    // The test guest with its Xen note's type changed from 18 (PHYS32_ENTRY) to 99: a valid ELF that is not PVH.
    const elf = Buffer.from(fs.readFileSync(testGuest()));
    const xen = elf.indexOf(Buffer.from('Xen\0'));
    expect(xen).to.be.greaterThan(12);
    expect(elf.readUInt32LE(xen - 4)).to.equal(18);
    elf.writeUInt32LE(99, xen - 4);
    const f = path.join(dir, 'no-pvh.elf');
    fs.writeFileSync(f, elf);
    expectOneLineError(tsvirt(['-kernel', f, '-m', '64']), /no PVH entry note|neither a bzImage nor an ELF with a PVH entry note|PVH/);
  });

  it('refuses an ELF that is not an executable kernel', () => {
    expectOneLineError(tsvirt(['-kernel', '/bin/true', '-m', '64']), /ELF kernel: not an executable/);
  });

  it('refuses a truncated ELF kernel', () => {
    const f = path.join(dir, 'truncated.elf');
    fs.writeFileSync(f, fs.readFileSync(testGuest()).subarray(0, 200));
    expectOneLineError(tsvirt(['-kernel', f, '-m', '64']), /extends past the end of the file/);
  });

  it('refuses a truncated bzImage', function () {
    const bz = debianBzImage();
    if (!bz) skipBecause(this, 'Debian bzImage not fetched (make kernel)');
    const f = path.join(dir, 'truncated.bz');
    fs.writeFileSync(f, fs.readFileSync(bz).subarray(0, 100 * 1024));
    expectOneLineError(tsvirt(['-kernel', f, '-m', '64']), /bzImage truncated/);
  });

  it('refuses an initrd larger than guest memory', () => {
    const f = path.join(dir, 'big.initrd');
    fs.writeFileSync(f, Buffer.alloc(80 * 1024 * 1024));
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-m', '64', '-initrd', f]), /initrd .*does not fit/);
  });

  it('names -drive when the disk image does not exist', () => {
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-m', '64', '-drive', `file=${path.join(dir, 'nodisk.img')},id=d0`, '-device', 'virtio-blk-pci,drive=d0,addr=0x3']),
      /^tsvirt: -drive: id=d0,file=.*nodisk\.img: no such file$/);
  });

  it('names -device when it refers to a drive that was never defined', () => {
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-m', '64', '-device', 'virtio-blk-pci,drive=nope,addr=0x3']), /-device: .*unknown drive 'nope'/);
  });

  it('names -device when two devices claim one PCI address', () => {
    const img = path.join(dir, 'a.img');
    fs.writeFileSync(img, Buffer.alloc(1 << 20));
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-m', '64', '-drive', `file=${img},id=a`, '-drive', `file=${img},id=b`,
      '-device', 'virtio-blk-pci,drive=a,id=da,addr=0x3', '-device', 'virtio-blk-pci,drive=b,id=db,addr=0x3']), /-device: virtio-blk-pci 'da' and virtio-blk-pci 'db' are both at pcie.0 slot 0x3 function 0/);
  });

  it('says so when /dev/kvm cannot be opened', function () {
    const setpriv = spawnSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).stdout.trim();
    if (!setpriv || process.getuid?.() !== 0) skipBecause(this, 'needs root and setpriv to drop privileges');
    expectOneLineError(tsvirt(['-kernel', testGuest(), '-m', '64'], [setpriv, '--reuid=65534', '--regid=65534', '--clear-groups']), /\/dev\/kvm.*(permission denied|EACCES)/i);
  });
});
