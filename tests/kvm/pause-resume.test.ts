// Pausing and resuming the VM from the host (QMP stop/cont) keeps the guest's heartbeat sequence and clock consistent.

import { expect } from 'chai';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from '../harness/guest.js';
import { QmpClient } from '../harness/qmp-client.js';
import { requireKvm } from '../harness/skip.js';
import { collectHeartbeats, VmmProcess } from '../harness/tsvirt-process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pause and resume from the host', function () {
  this.timeout(60000);
  before(requireKvm);
  let vm: VmmProcess | undefined;
  let qmp: QmpClient | undefined;
  afterEach(async () => {
    qmp?.close();
    await vm?.kill();
  });

  for (const smp of [1, 2]) {
    it(`keeps the heartbeat sequence intact across a 1.5 s pause, with a gap as long as the pause (-smp ${smp})`, async () => {
      const sock = path.join(os.tmpdir(), `tsvirt-pause-${process.pid}-${smp}.sock`);
      vm = VmmProcess.tsvirt(['-kernel', testGuest(), '-m', '128', '-smp', String(smp), '-qmp', `unix:${sock},server,nowait`]);
      const beats = collectHeartbeats(vm);
      await vm.waitFor(/HB seq=3 /);
      qmp = await QmpClient.connect(sock);
      await qmp.run('qmp_capabilities');

      await qmp.run('stop');
      const pausedAt = performance.now();
      expect((await qmp.run('query-status')).status).to.equal('paused');
      const beforePause = beats.length;
      await sleep(1500);
      expect(beats.length, 'no heartbeat while paused').to.be.at.most(beforePause + 1);
      const resumedAt = performance.now();
      await qmp.run('cont');
      expect((await qmp.run('query-status')).status).to.equal('running');
      await qmp.waitEvent('STOP');
      await qmp.waitEvent('RESUME');
      const last = beats[beats.length - 1].seq;
      await vm.waitFor(new RegExp(`HB seq=${last + 5} `));

      // Sequence: consecutive, nothing lost or repeated.
      beats.forEach((b, i) => expect(b.seq).to.equal(beats[0].seq + i));
      // The largest gap between consecutive beats spans the pause, and is about as long as it.
      let gapIndex = 1;
      for (let i = 1; i < beats.length; i++) if (beats[i].at - beats[i - 1].at > beats[gapIndex].at - beats[gapIndex - 1].at) gapIndex = i;
      const hostGap = beats[gapIndex].at - beats[gapIndex - 1].at;
      const pause = resumedAt - pausedAt;
      expect(beats[gapIndex - 1].at).to.be.below(pausedAt + 200);
      expect(hostGap).to.be.within(pause - 50, pause + 400);
      // The guest's clock (kvmclock) kept time through the pause: its gap matches the host's within 0.2 s.
      const guestGapMs = Number(beats[gapIndex].t - beats[gapIndex - 1].t) / 1e6;
      expect(guestGapMs).to.be.within(hostGap - 200, hostGap + 200);
      // Elsewhere the beats stay about 100 ms apart in guest time.
      for (let i = 1; i < beats.length; i++) {
        if (i === gapIndex) continue;
        const d = Number(beats[i].t - beats[i - 1].t) / 1e6;
        expect(d).to.be.within(80, 300);
      }
    });
  }
});
