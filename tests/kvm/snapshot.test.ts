// Snapshots: migrate to file:PATH saves the VM, -incoming file:PATH restores it; damaged files are refused before the guest runs.

import { expect } from 'chai';
import * as fs from 'node:fs';
import { requireKvm } from '../harness/skip.js';
import { VmFleet, waitMigration, type Vm } from '../harness/migration.js';
import { testGuest } from '../harness/guest.js';
import { VmmProcess } from '../harness/tsvirt-process.js';

describe('snapshots to a file', function () {
  this.timeout(90000);
  before(requireKvm);
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  /** A restoring destination that is expected to fail: spawned directly, since it exits before QMP comes up. */
  function restoreExpectingFailure(file: string, mem: string): VmmProcess {
    return VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', mem, '-append', 'console=ttyS0', '-incoming', `file:${file}`]);
  }

  async function save(): Promise<{ file: string; src: Vm; lastSeq: number }> {
    const file = `${fleet.dir}/vm.snap`;
    const src = await fleet.start([], { mem: '512', append: 'console=ttyS0 dirty_mib=32 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=3 .*sweeps=/);
    await src.qmp.run('migrate', { uri: `file:${file}` });
    const info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status, info['error-desc']).to.equal('completed');
    // A snapshot is a copy: the source keeps running.
    expect((await src.qmp.run('query-status')).status).to.equal('running');
    const lastSeq = src.beats.filter((b) => b.at < performance.now()).length ? src.beats[src.beats.length - 1].seq : 0;
    return { file, src, lastSeq };
  }

  it('saves a running guest and restores it twice from the same file, intact each time', async () => {
    const { file } = await save();
    expect(fs.statSync(file).size).to.be.above(32 * 1024 * 1024);
    for (let i = 0; i < 2; i++) {
      const vm = await fleet.destination(`file:${file}`, { mem: '512' });
      await vm.proc.waitFor(/HB seq=\d+ /, 10000);
      expect((await vm.qmp.run('query-status')).status).to.equal('running');
      const info = await vm.qmp.run('query-migrate');
      expect(info.status).to.equal('completed');
      vm.proc.send('check\r');
      await vm.proc.waitFor(/CHECK OK/, 30000);
      await vm.qmp.run('quit');
    }
  });

  for (const [what, damage] of [
    ['truncated', (f: string) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2))],
    ['corrupted', (f: string) => {
      const fd = fs.openSync(f, 'r+');
      const at = Math.floor(fs.statSync(f).size / 3);
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, at);
      b[0] ^= 0x40;
      fs.writeSync(fd, b, 0, 1, at);
      fs.closeSync(fd);
    }],
  ] as const) {
    it(`refuses a ${what} snapshot with a clear message before the guest starts`, async () => {
      const { file } = await save();
      damage(file);
      const proc = restoreExpectingFailure(file, '512');
      const exit = await proc.waitExit(15000);
      expect(exit.code).to.equal(1);
      expect(proc.stderr).to.match(what === 'truncated' ? /snapshot .*: (is truncated|has no snapshot trailer)/ : /snapshot .*: is corrupted \(its SHA-256 does not match\)/);
      expect(proc.output).to.not.match(/HB seq=/);
    });
  }

  it('refuses a snapshot taken with a different memory size', async () => {
    const { file } = await save();
    const proc = restoreExpectingFailure(file, '256');
    expect((await proc.waitExit(15000)).code).to.equal(1);
    expect(proc.stderr).to.match(/memory size mismatch: source 512 MiB, destination 256 MiB/);
    expect(proc.output).to.not.match(/HB seq=/);
  });
});
