// Live upgrade: a guest moves to a different build of tsvirt on the same host; the stream's version rule decides.

import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../harness/paths.js';
import { requireKvm } from '../harness/skip.js';
import { VmFleet, waitMigration } from '../harness/migration.js';

/**
 * Builds the next release: a copy of this build whose migration stream format has the next minor version. It lives
 * under build/ so it resolves the same node_modules.
 */
function newerBuild(): string {
  const root = path.join(repoRoot, 'build', 'upgrade-next');
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  fs.cpSync(path.join(repoRoot, 'dist'), path.join(root, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(root, 'package.json'));
  const format = path.join(root, 'dist', 'migration', 'format.js');
  const src = fs.readFileSync(format, 'utf8');
  const bumped = src.replace(/export const FORMAT_MINOR = (\d+);/, (_, minor: string) => `export const FORMAT_MINOR = ${Number(minor) + 1};`);
  if (bumped === src) throw new Error('could not bump FORMAT_MINOR in the copied build');
  fs.writeFileSync(format, bumped);
  return path.join(root, 'dist', 'machine', 'main.js');
}

describe('live upgrade to another tsvirt build', function () {
  this.timeout(90000);
  let newer: string;
  before(function () {
    requireKvm.call(this);
    newer = newerBuild();
  });
  let fleet: VmFleet;
  beforeEach(() => (fleet = new VmFleet()));
  afterEach(async () => fleet.cleanup());

  it('moves a running guest from this build to one with the next stream minor version, handing memory over', async () => {
    const uri = `unix:${fleet.sock('upgrade')}`;
    const dst = await fleet.start(['-incoming', uri], { main: newer, mem: '512' });
    const src = await fleet.start([], { mem: '512', append: 'console=ttyS0 dirty_mib=32 dirty_rate=0' });
    await src.proc.waitFor(/HB seq=3 .*sweeps=/);
    await src.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    await src.qmp.run('migrate', { uri });
    const info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status, info['error-desc']).to.equal('completed');
    dst.proc.send('check\r');
    await dst.proc.waitFor(/CHECK OK/, 20000);
  });

  it('refuses to move from the newer build back to this older one, before the guest is paused', async () => {
    const uri = `unix:${fleet.sock('downgrade')}`;
    const dst = await fleet.start(['-incoming', uri], { mem: '512' });
    const src = await fleet.start([], { main: newer, mem: '512' });
    await src.proc.waitFor(/HB seq=2 /);
    await src.qmp.run('migrate', { uri });
    const info = await waitMigration(src, ['completed', 'failed']);
    expect(info.status).to.equal('failed');
    expect(info['error-desc']).to.match(/format \d+\.\d+ is newer than this tsvirt reads/);
    expect(info.ram.transferred).to.be.below(64 * 1024);
    expect(src.qmp.events.some((e) => e.event === 'STOP')).to.equal(false);
    expect((await src.qmp.run('query-status')).status).to.equal('running');
    const exit = await dst.proc.waitExit(10000);
    expect(exit.code).to.not.equal(0);
    expect(dst.proc.stderr).to.match(/is newer than this tsvirt reads/);
  });
});
