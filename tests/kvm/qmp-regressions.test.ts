// Bugs found while testing QMP against a running VM, kept as tests that fail until they are fixed.
//
// vCPU park race (machine/vcpu/worker.ts): a parked vCPU worker waits with
// `while (REQUEST === PAUSE) Atomics.wait(...)`. When the main thread resumes it (REQUEST = RUN) and pauses it again
// (REQUEST = PAUSE) before the worker thread has woken up, the worker sees PAUSE again, keeps waiting and never posts
// PAUSED; VcpuHandle.pause() (which resume() marked as not paused) then waits forever. Over QMP: a `stop` pipelined
// right behind a `cont` never answers, the machine's serialised state changes are blocked behind it (every later
// stop/cont/system_reset from any client hangs), and the vCPU stays parked while query-status says "running".

import { expect } from 'chai';
import { qmpFixture, RawQmp, sleep, startQmpVm } from '../harness/qmp-raw.js';
import { requireKvm } from '../harness/skip.js';

describe('QMP regressions on a running VM', function () {
  this.timeout(30000);
  before(requireKvm);
  const q = qmpFixture();

  it('answers a stop pipelined right behind a cont, and the guest keeps running afterwards (vCPU park race)', async () => {
    const vm = await startQmpVm(q.fleet());
    await vm.proc.waitFor(/HB seq=1 /);
    const c = await RawQmp.connect(vm.qmpPath);
    q.track(c);
    const pairs = 20;
    let batch = '';
    for (let i = 0; i < pairs; i++) batch += JSON.stringify({ execute: 'stop', id: 2 * i }) + JSON.stringify({ execute: 'cont', id: 2 * i + 1 });
    await c.write(batch);
    try {
      await c.nextReplies(2 * pairs, 5000);
    } catch {
      const fresh = await RawQmp.connect(vm.qmpPath);
      q.track(fresh);
      const status = await fresh.run('query-status');
      const n = vm.beats.length;
      await sleep(500);
      expect.fail(`only ${c.replies.length} of ${2 * pairs} replies after 5 s (the reply to id ${c.replies.length} never came); ` +
        `query-status from a fresh client says '${status.status}', yet the guest printed ${vm.beats.length - n} heartbeats in 500 ms`);
    }
    expect(c.replies.map((r) => r.id)).to.deep.equal([...Array(2 * pairs).keys()]);
    c.replies.forEach((r) => expect(r).to.have.property('return'));
    expect(await c.run('query-status')).to.deep.equal({ status: 'running', singlestep: false, running: true });
    const last = vm.beats.at(-1)!.seq;
    await vm.proc.waitFor(new RegExp(`HB seq=${last + 3} `), 3000);
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(Array.from({ length: 2 * pairs }, (_, i) => (i % 2 === 0 ? 'STOP' : 'RESUME')));
  });
});
