// `quit` over QMP against a running VM: the reply, then SHUTDOWN to every negotiated client, then the process exits
// with 0 and its QMP socket file is gone.

import { expect } from 'chai';
import * as fs from 'node:fs';
import { qmpFixture, RawQmp, startQmpVm } from '../harness/qmp-raw.js';
import { requireKvm } from '../harness/skip.js';

describe('QMP quit on a running VM', function () {
  this.timeout(30000);
  before(requireKvm);
  const q = qmpFixture();
  const connect = async (path: string) => {
    const r = await RawQmp.connect(path);
    q.track(r);
    return r;
  };

  it('answers {"return": {}}, sends SHUTDOWN {guest: false, reason: host-qmp-quit}, exits with 0 and removes the socket file', async () => {
    const vm = await startQmpVm(q.fleet());
    await vm.proc.waitFor(/HB seq=1 /);
    const c = await connect(vm.qmpPath);
    const other = await connect(vm.qmpPath);
    const silent = await connect(vm.qmpPath);
    await c.run('qmp_capabilities');
    await other.run('qmp_capabilities');
    expect(fs.statSync(vm.qmpPath).isSocket()).to.equal(true);

    await c.write('{"execute": "quit", "id": "bye"}');
    expect(await c.reply()).to.deep.equal({ return: {}, id: 'bye' });
    const shutdown = await c.waitEvent('SHUTDOWN');
    expect(shutdown.data).to.deep.equal({ guest: false, reason: 'host-qmp-quit' });
    // Byte-exact: the reply line first, then the event.
    const replyAt = c.lines.indexOf('{"return": {}, "id": "bye"}\r\n');
    const eventAt = c.lines.findIndex((l) => /^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "SHUTDOWN", "data": \{"guest": false, "reason": "host-qmp-quit"\}\}\r\n$/.test(l));
    expect(replyAt).to.be.greaterThan(0);
    expect(eventAt).to.equal(replyAt + 1);
    // Every negotiated client hears it; the one that never negotiated does not.
    expect((await other.waitEvent('SHUTDOWN')).data).to.deep.equal({ guest: false, reason: 'host-qmp-quit' });
    expect((await vm.qmp.waitEvent('SHUTDOWN')).data).to.deep.equal({ guest: false, reason: 'host-qmp-quit' });

    const exit = await vm.proc.waitExit(10000);
    expect(exit, `stderr: ${vm.proc.stderr}`).to.deep.equal({ code: 0, signal: null });
    expect(fs.existsSync(vm.qmpPath), 'QMP socket file after exit').to.equal(false);
    await Promise.all([c.closed, other.closed, silent.closed]);
    expect(silent.events).to.deep.equal([]);
    for (const x of [c, other]) expect(x.events.map((e) => e.event)).to.deep.equal(['SHUTDOWN']);
    for (const x of [c, other, silent]) expect(x.wireErrors).to.deep.equal([]);
    // Nobody listens there any more.
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      import('node:net').then((net) => {
        const s = net.connect(vm.qmpPath);
        s.once('connect', () => {
          s.destroy();
          resolve(undefined);
        });
        s.once('error', (e) => resolve(e));
      });
    });
    expect(err?.code).to.equal('ENOENT');
  });

  it('quits the same way when a client that never negotiated sends HMP quit', async () => {
    const vm = await startQmpVm(q.fleet());
    await vm.proc.waitFor(/HB seq=1 /);
    const c = await connect(vm.qmpPath);
    expect(await c.cmd('human-monitor-command', { 'command-line': 'quit' }, 7)).to.deep.equal({ return: '', id: 7 });
    expect((await vm.qmp.waitEvent('SHUTDOWN')).data).to.deep.equal({ guest: false, reason: 'host-qmp-quit' });
    expect(await vm.proc.waitExit(10000)).to.deep.equal({ code: 0, signal: null });
    expect(fs.existsSync(vm.qmpPath)).to.equal(false);
    await c.closed;
    expect(c.events).to.deep.equal([]);
  });
});
