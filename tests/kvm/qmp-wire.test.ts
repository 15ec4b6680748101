// QMP wire behaviour against a running VM over its real unix socket: split, batched and pipelined input, recovery
// from invalid JSON, events fanned out to several clients, and StratoVirt's documented ncat sessions verbatim.

import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import type { Vm } from '../harness/migration.js';
import { qmpFixture, RawQmp, type RawReply, sleep, startQmpVm } from '../harness/qmp-raw.js';
import { requireKvm, skipBecause } from '../harness/skip.js';

const RUNNING = { status: 'running', singlestep: false, running: true };
const PAUSED = { status: 'paused', singlestep: false, running: false };
const GREETING_LINE = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "tsvirt-0.1.0"}, "capabilities": []}}\r\n';

describe('QMP wire behaviour on a running VM', function () {
  this.timeout(30000);
  before(requireKvm);
  const q = qmpFixture();
  const connect = async (vm: Vm) => {
    const r = await RawQmp.connect(vm.qmpPath);
    q.track(r);
    return r;
  };
  const startVm = async () => {
    const vm = await startQmpVm(q.fleet());
    await vm.proc.waitFor(/HB seq=1 /);
    return vm;
  };

  it('assembles a command written byte by byte with delays (splitting a multi-byte character too)', async () => {
    const vm = await startVm();
    const c = await connect(vm);
    const bytes = Buffer.from('{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}, "id": "sp\u00e9\u2603"}\n', 'utf8');
    for (let i = 0; i < bytes.length - 2; i++) {
      await c.write(bytes.subarray(i, i + 1));
      await sleep(2);
    }
    await sleep(50);
    expect(c.replies, 'a reply before the message was complete').to.have.length(0);
    await c.write(bytes.subarray(bytes.length - 2));
    expect(await c.reply()).to.deep.equal({ return: 'VM status: running\r\n', id: 'sp\u00e9\u2603' });
    expect(c.lines.at(-1)).to.equal('{"return": "VM status: running\\r\\n", "id": "sp\\u00E9\\u2603"}\r\n');
    // Two commands whose boundary falls inside tokens, in uneven pieces.
    const two = '{"execute":"query-status","id":1}{"execute":"query-kvm","id":2}';
    for (const piece of [two.slice(0, 5), two.slice(5, 30), two.slice(30, 34), two.slice(34, 50), two.slice(50)]) {
      await c.write(piece);
      await sleep(10);
    }
    expect(await c.nextReplies(2)).to.deep.equal([{ return: RUNNING, id: 1 }, { return: { enabled: true, present: true }, id: 2 }]);
    expect(c.wireErrors).to.deep.equal([]);
  });

  it('answers several commands written in one packet, in order, including ones that change the run state', async () => {
    const vm = await startVm();
    const c = await connect(vm);
    await c.write(
      '{"execute":"query-status","id":1}{"execute":"stop","id":2}\n{"execute":"query-status","id":3} \r\n' +
      '{"execute":"human-monitor-command","arguments":{"command-line":"info status"},"id":4}' +
      '{"execute":"cont","id":5}\t{"execute":"query-status","id":6}{"execute":"nope","id":7}{"execute":"query-target","id":8}',
    );
    expect(await c.nextReplies(8)).to.deep.equal([
      { return: RUNNING, id: 1 },
      { return: {}, id: 2 },
      { return: PAUSED, id: 3 },
      { return: 'VM status: paused\r\n', id: 4 },
      { return: {}, id: 5 },
      { return: RUNNING, id: 6 },
      { id: 7, error: { class: 'CommandNotFound', desc: 'The command nope has not been found' } },
      { return: { arch: 'x86_64' }, id: 8 },
    ]);
    await vm.qmp.waitEvent('RESUME');
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
  });

  it('answers pipelined commands (sent without waiting, more than the 8-request queue) strictly in order', async () => {
    const vm = await startVm();
    const c = await connect(vm);
    // A script whose answers depend on order: what each query sees follows the stop, reset, cont and
    // migrate-set-parameters before it. (One stop/cont pair only: a stop right behind a cont hangs, see the
    // vCPU park race test in qmp-regressions.test.ts.)
    type Msg = { execute: string; arguments?: Record<string, unknown> };
    const phase = (tag: number): Msg[] => [
      { execute: 'query-status' },
      { execute: 'human-monitor-command', arguments: { 'command-line': 'info status' } },
      { execute: 'query-cpus' },
      { execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 100 + tag } },
      { execute: 'query-migrate-parameters' },
      { execute: 'nope' },
      { execute: 'query-version' },
    ];
    const script: Msg[] = [...phase(0), ...phase(1), { execute: 'stop' }, ...phase(2), { execute: 'system_reset' }, ...phase(3),
      { execute: 'cont' }, ...phase(4), ...phase(5)];
    expect(script.length).to.be.greaterThan(40);
    let running = true;
    let downtime = 300;
    const expected: RawReply[] = script.map((m, id) => {
      switch (m.execute) {
        case 'query-status': return { return: running ? RUNNING : PAUSED, id };
        case 'stop': running = false; return { return: {}, id };
        case 'cont': running = true; return { return: {}, id };
        case 'system_reset': return { return: {}, id };
        case 'human-monitor-command': return { return: `VM status: ${running ? 'running' : 'paused'}\r\n`, id };
        case 'query-cpus': return { return: [{ halted: !running }], id };
        case 'migrate-set-parameters': downtime = m.arguments!['downtime-limit'] as number; return { return: {}, id };
        case 'query-migrate-parameters': return { return: { 'downtime-limit': downtime }, id };
        case 'query-version': return { return: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsvirt-0.1.0' }, id };
        default: return { id, error: { class: 'CommandNotFound', desc: `The command ${m.execute} has not been found` } };
      }
    });
    // Every command in its own write, none awaited before the next is sent.
    const writes = script.map((m, id) => c.send({ ...m, id }));
    await Promise.all(writes);
    const replies = await c.nextReplies(script.length, 10000);
    expect(replies.map((r) => r.id)).to.deep.equal(script.map((_m, id) => id));
    replies.forEach((r, id) => {
      const what = `reply #${id} to ${JSON.stringify(script[id])}`;
      if (script[id].execute === 'query-cpus') {
        expect(r.return, what).to.have.length(1);
        expect(r.return[0].halted, what).to.equal(expected[id].return[0].halted);
      } else if (script[id].execute === 'query-migrate-parameters') {
        expect(r.return['downtime-limit'], what).to.equal(expected[id].return['downtime-limit']);
      } else {
        expect(r, what).to.deep.equal(expected[id]);
      }
    });
    // The reset came while paused: the guest rebooted once cont let it run.
    await vm.proc.waitFor(/TSVIRT-GUEST BOOT\n/);
    await vm.proc.waitFor(/HB seq=1 /);
    expect(await c.run('query-status')).to.deep.equal(RUNNING);
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESET', 'RESUME']);
    expect(vm.qmp.events[1].data).to.deep.equal({ guest: false, reason: 'host-qmp-system-reset' });
    expect(c.wireErrors).to.deep.equal([]);
  });

  it('answers invalid JSON with a GenericError and then a valid command on the same connection correctly', async () => {
    const vm = await startVm();
    const c = await connect(vm);
    await c.write('{"execute": }');
    const bad = await c.reply();
    expect(bad.error?.class).to.equal('GenericError');
    expect(bad.error?.desc).to.match(/^JSON parse error, /);
    expect(bad).to.not.have.property('id');
    await c.write('{"execute":"query-status","id":2}');
    expect(await c.reply()).to.deep.equal({ return: RUNNING, id: 2 });

    // The rest of the documented table, each followed by a good command.
    const table: [string, string | RegExp][] = [
      ['}', 'JSON parse error, expecting value'],
      ['@@@ garbage', "JSON parse error, stray '@'"],
      ['[1]', 'QMP input must be a JSON object'],
      ['42 ', 'QMP input must be a JSON object'],
      ['"str"', 'QMP input must be a JSON object'],
      ['{"execute": "stop", "arguments": []}', "QMP input member 'arguments' must be an object"],
      ['{"execute": "stop", "foo": 1}', "QMP input member 'foo' is unexpected"],
      ['{"execute": "stop", "exec-oob": "stop"}', "QMP input member 'exec-oob' is unexpected"],
      ['{"a" 1}', /^JSON parse error, /],
      ['{"execute": "stop",}', /^JSON parse error, /],
      ['{"execute": \'stop\'}', /^JSON parse error, /],
      ['{"execute": "st\xffop"}', /^JSON parse error, /],
      ['{"execute": "stop"\x00', /^JSON parse error, stray /],
    ];
    let id = 100;
    for (const [input, desc] of table) {
      await c.write(Buffer.from(input, 'latin1'));
      await c.send({ execute: 'query-status', id: ++id });
      const [err, ok] = await c.nextReplies(2);
      expect(err.error?.class, JSON.stringify(input)).to.equal('GenericError');
      if (typeof desc === 'string') expect(err.error?.desc, JSON.stringify(input)).to.equal(desc);
      else expect(err.error?.desc, JSON.stringify(input)).to.match(desc);
      // None of the refused stops ran.
      expect(ok, `after ${JSON.stringify(input)}`).to.deep.equal({ return: RUNNING, id });
    }
    // An unclosed value waits for more input; a NUL byte ends it, and the next command is answered.
    await c.write('{"execute": "stop", "arguments": {');
    await sleep(100);
    const n = c.replies.length;
    await c.write('\x00{"execute":"query-status","id":"after-reset"}');
    const [e, ok] = await c.nextReplies(2);
    expect(c.replies.length).to.equal(n + 2);
    expect(e.error?.desc).to.match(/^JSON parse error, stray /);
    expect(ok).to.deep.equal({ return: RUNNING, id: 'after-reset' });
    expect(vm.qmp.events).to.deep.equal([]);
    expect(c.wireErrors).to.deep.equal([]);
  });

  it('sends the same STOP and RESUME events to every negotiated client', async () => {
    const vm = await startVm();
    const a = await connect(vm);
    const b = await connect(vm);
    const silent = await connect(vm);
    await a.run('qmp_capabilities');
    await b.run('qmp_capabilities');
    expect(await a.run('stop')).to.deep.equal({});
    // The client that asked sees STOP before its reply.
    const stopLine = a.lines.findIndex((l) => l.includes('"event": "STOP"'));
    expect(stopLine).to.be.greaterThan(0);
    expect(stopLine).to.be.below(a.lines.length - 1);
    expect(await b.run('cont')).to.deep.equal({});
    for (const c of [a, b]) {
      await c.waitEvent('RESUME');
      expect(c.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
    }
    await vm.qmp.waitEvent('RESUME');
    // Byte-identical lines: one event, one timestamp, fanned out.
    const eventLines = (c: RawQmp) => c.lines.filter((l) => l.includes('"event"'));
    expect(eventLines(a)).to.deep.equal(eventLines(b));
    expect(eventLines(a)[0]).to.match(/^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "STOP"\}\r\n$/);
    expect(vm.qmp.events.map((e) => [e.event, e.timestamp])).to.deep.equal(a.events.map((e) => [e.event, e.timestamp]));
    const [stop, resume] = a.events;
    expect(resume.timestamp.seconds * 1e6 + resume.timestamp.microseconds).to.be.at.least(stop.timestamp.seconds * 1e6 + stop.timestamp.microseconds);
    expect(await silent.run('query-status')).to.deep.equal(RUNNING);
    expect(silent.events).to.deep.equal([]);
  });

  it("runs StratoVirt's documented sessions verbatim through ncat -U", async function () {
    if (spawnSync('sh', ['-c', 'command -v ncat'], { stdio: 'ignore' }).status !== 0) {
      skipBecause(this, 'ncat is not installed (scripts/install-deps.sh installs it)');
    }
    const vm = await startVm();

    /** Feeds `lines` to `ncat -U` one by one, keeping stdin open until `replies` lines came back; returns stdout. */
    const session = async (lines: string[], replies: number): Promise<string> => {
      const nc = spawn('ncat', ['-U', vm.qmpPath], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      nc.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
      nc.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((resolve) => nc.on('exit', (code) => resolve(code)));
      const lineCount = () => out.split('\n').length - 1;
      const waitLines = async (n: number) => {
        const deadline = Date.now() + 5000;
        while (lineCount() < n) {
          if (Date.now() > deadline) throw new Error(`ncat printed ${lineCount()} of ${n} lines: ${out}\nstderr: ${err}`);
          await sleep(20);
        }
      };
      try {
        await waitLines(1);
        for (const l of lines) {
          nc.stdin.write(l + '\n');
          await sleep(100);
        }
        await waitLines(1 + replies);
        nc.stdin.end();
        const t = setTimeout(() => nc.kill('SIGKILL'), 5000);
        expect(await exited, `ncat exit; stderr: ${err}`).to.equal(0);
        clearTimeout(t);
      } finally {
        if (nc.exitCode === null && nc.signalCode === null) nc.kill('SIGKILL');
      }
      return out;
    };

    // No negotiation first, as StratoVirt's docs show.
    const out = await session(['{"execute":"query-migrate"}', '{"execute":"stop"}', '{"execute":"cont"}', '{"execute":"query-status"}'], 4);
    expect(out.split(/(?<=\n)/)).to.deep.equal([
      GREETING_LINE,
      '{"return": {"status": "none"}}\r\n',
      '{"return": {}}\r\n',
      '{"return": {}}\r\n',
      '{"return": {"status": "running", "singlestep": false, "running": true}}\r\n',
    ]);
    // The stop and cont really happened (the fleet's negotiated client saw them).
    await vm.qmp.waitEvent('RESUME');
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);

    // The negotiated variant: events appear in ncat's output too.
    const out2 = await session(['{"execute":"qmp_capabilities"}', '{"execute":"stop"}', '{"execute":"query-status"}', '{"execute":"cont"}'], 6);
    const lines2 = out2.split(/(?<=\n)/);
    expect(lines2[0]).to.equal(GREETING_LINE);
    expect(lines2.slice(1).map((l) => l.replace(/"timestamp": \{[^}]*\}/, '"timestamp": T'))).to.deep.equal([
      '{"return": {}}\r\n',
      '{"timestamp": T, "event": "STOP"}\r\n',
      '{"return": {}}\r\n',
      '{"return": {"status": "paused", "singlestep": false, "running": false}}\r\n',
      '{"timestamp": T, "event": "RESUME"}\r\n',
      '{"return": {}}\r\n',
    ]);
    const probe = await connect(vm);
    expect(await probe.run('query-status')).to.deep.equal(RUNNING);
  });
});
