// QMP against a running VM over its real unix socket: negotiation, every command's happy path, bad arguments refused
// before any side effect, and `id` echo.

import { expect } from 'chai';
import * as fs from 'node:fs';
import { VmFleet, type Vm } from '../harness/migration.js';
import { qmpFixture, RawQmp, type RawReply, sleep, startQmpVm } from '../harness/qmp-raw.js';
import { requireKvm } from '../harness/skip.js';

const VERSION = { qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsvirt-0.1.0' };
const RUNNING = { status: 'running', singlestep: false, running: true };
const PAUSED = { status: 'paused', singlestep: false, running: false };

/** Every command the server must offer (the list plus migrate and migrate_cancel). */
const ALL_COMMANDS = [
  'qmp_capabilities', 'query-version', 'query-commands', 'query-status', 'stop', 'cont', 'quit', 'system_reset',
  'system_powerdown', 'query-cpus-fast', 'query-cpus', 'query-hotpluggable-cpus', 'query-name', 'query-kvm',
  'query-machines', 'query-target', 'query-events', 'human-monitor-command', 'migrate', 'migrate_cancel',
  'query-migrate', 'migrate-set-parameters', 'query-migrate-parameters', 'migrate-set-capabilities',
  'query-migrate-capabilities',
];

const bootCount = (vm: Vm) => vm.proc.output.split('TSVIRT-GUEST BOOT').length - 1;

/** Starts the test guest and waits until it beats; returns the VM and a second, not yet negotiated, raw client. */
async function startVm(fleet: VmFleet, opts: { smp?: string; args?: string[] } = {}): Promise<{ vm: Vm; raw: RawQmp }> {
  const vm = await startQmpVm(fleet, opts.args ?? [], { smp: opts.smp });
  await vm.proc.waitFor(/HB seq=1 /);
  const raw = await RawQmp.connect(vm.qmpPath);
  return { vm, raw };
}

function expectError(r: RawReply, desc: string, member?: string, cls = 'GenericError'): void {
  expect(r.error, `expected an error reply, got ${JSON.stringify(r)}`).to.not.equal(undefined);
  expect(r.error).to.deep.equal({ class: cls, desc });
  expect(r).to.not.have.property('return');
  if (member !== undefined) expect(r.error!.desc).to.include(`'${member}'`);
}

/** Waits for `n` more heartbeats than `vm` had when called. */
async function moreBeats(vm: Vm, n = 2, timeoutMs = 3000): Promise<void> {
  const last = vm.beats.at(-1)!.seq;
  await vm.proc.waitFor(new RegExp(`HB seq=${last + n} `), timeoutMs);
}

async function untilTrue(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

function expectConsecutive(vm: Vm): void {
  vm.beats.forEach((b, i) => expect(b.seq, `heartbeat #${i}`).to.equal(vm.beats[0].seq + i));
}

describe('QMP on a running VM: negotiation and commands', function () {
  this.timeout(30000);
  before(requireKvm);
  const q = qmpFixture();

  it('greets, executes commands before and after qmp_capabilities, and refuses a second negotiation', async () => {
    const { vm, raw } = await startVm(q.fleet());
    q.track(raw);
    expect(raw.lines[0]).to.equal('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "tsvirt-0.1.0"}, "capabilities": []}}\r\n');
    // Negotiation mode: commands run (StratoVirt behaviour).
    expect(await raw.cmd('query-status', undefined, 1)).to.deep.equal({ return: RUNNING, id: 1 });
    expect(await raw.cmd('query-version', undefined, 2)).to.deep.equal({ return: VERSION, id: 2 });
    expect(await raw.cmd('query-name', undefined, 3)).to.deep.equal({ return: {}, id: 3 });
    expect(raw.lines.at(-1)).to.equal('{"return": {}, "id": 3}\r\n');
    expect(await raw.cmd('qmp_capabilities', undefined, 4)).to.deep.equal({ return: {}, id: 4 });
    // Command mode.
    expect(await raw.cmd('query-status', undefined, 5)).to.deep.equal({ return: RUNNING, id: 5 });
    expect(await raw.cmd('query-version', undefined, 6)).to.deep.equal({ return: VERSION, id: 6 });
    const again = await raw.cmd('qmp_capabilities', undefined, 7);
    expect(again).to.deep.equal({ id: 7, error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' } });
    expect(raw.lines.at(-1)).to.equal('{"id": 7, "error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}\r\n');
    // `enable: []` is the only other accepted form.
    const fresh = q.track(await RawQmp.connect(vm.qmpPath));
    expect(await fresh.cmd('qmp_capabilities', { enable: [] })).to.deep.equal({ return: {} });
    expect(raw.wireErrors).to.deep.equal([]);
  });

  it('delivers events only to clients that completed negotiation', async () => {
    const { vm, raw: never } = await startVm(q.fleet());
    q.track(never);
    const failed = q.track(await RawQmp.connect(vm.qmpPath)); // tries to negotiate with a bad argument
    const late = q.track(await RawQmp.connect(vm.qmpPath)); // negotiates after the first stop/cont
    const negotiated = q.track(await RawQmp.connect(vm.qmpPath));
    expect(await negotiated.cmd('qmp_capabilities')).to.deep.equal({ return: {} });
    expectError(await failed.cmd('qmp_capabilities', { enable: ['oob'] }), 'Capability oob not available');
    // Non-negotiated clients still run commands, including ones that cause events.
    expect(await never.cmd('stop', undefined, 'n-stop')).to.deep.equal({ return: {}, id: 'n-stop' });
    // STOP is written before the reply (QEMU's order) to the negotiated client that did not ask for it.
    await negotiated.waitEvent('STOP');
    expect(await never.cmd('query-status')).to.deep.equal({ return: PAUSED });
    expect(await never.cmd('cont')).to.deep.equal({ return: {} });
    await negotiated.waitEvent('RESUME');
    expect(await vm.qmp.waitEvent('RESUME')).to.have.property('event', 'RESUME');
    // A round trip on each silent client: an event sent before it would have arrived before its reply.
    for (const c of [never, failed, late]) {
      expect(await c.cmd('query-status')).to.deep.equal({ return: RUNNING });
      expect(c.events, 'events on a client that did not negotiate').to.deep.equal([]);
    }
    expect(negotiated.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
    for (const e of negotiated.events) {
      expect(e).to.not.have.property('data');
      expect(e.timestamp.seconds).to.be.closeTo(Date.now() / 1000, 30);
      expect(e.timestamp.microseconds).to.be.within(0, 999999);
    }
    // The client whose negotiation failed, and the late one, get events once they negotiate.
    expect(await failed.cmd('qmp_capabilities')).to.deep.equal({ return: {} });
    expect(await late.cmd('qmp_capabilities')).to.deep.equal({ return: {} });
    expect(await negotiated.cmd('stop')).to.deep.equal({ return: {} });
    expect(await negotiated.cmd('cont')).to.deep.equal({ return: {} });
    for (const c of [failed, late]) {
      await c.waitEvent('RESUME');
      expect(c.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
    }
    expect(await never.cmd('query-status')).to.deep.equal({ return: RUNNING });
    expect(never.events).to.deep.equal([]);
  });

  it('answers the identity queries: query-version, query-name, query-kvm, query-target, query-machines, query-events, query-commands', async () => {
    const { raw } = await startVm(q.fleet(), { args: ['-name', 'guest0'] });
    q.track(raw);
    expect(await raw.run('query-version')).to.deep.equal(VERSION);
    expect(await raw.run('query-name')).to.deep.equal({ name: 'guest0' });
    expect(await raw.run('query-kvm')).to.deep.equal({ enabled: true, present: true });
    expect(await raw.run('query-target')).to.deep.equal({ arch: 'x86_64' });
    expect(await raw.run('query-machines')).to.deep.equal([
      { name: 'q35', 'is-default': true, 'cpu-max': 254, 'hotpluggable-cpus': true, 'numa-mem-supported': false, deprecated: false, 'default-cpu-type': 'host-x86_64-cpu' },
    ]);
    expect(await raw.run('query-events')).to.deep.equal(
      ['SHUTDOWN', 'RESET', 'STOP', 'RESUME', 'POWERDOWN', 'MIGRATION', 'MIGRATION_PASS'].map((name) => ({ name })),
    );
    // Other commands may be added over time; every one of these must be there, each once.
    const listed: { name: string }[] = await raw.run('query-commands');
    const names = listed.map((c) => c.name);
    expect(names).to.include.members(ALL_COMMANDS);
    expect(new Set(names).size).to.equal(names.length);
    listed.forEach((c) => expect(Object.keys(c)).to.deep.equal(['name']));
    expect(await raw.run('human-monitor-command', { 'command-line': 'info name' })).to.equal('guest0\r\n');
    expect(await raw.run('human-monitor-command', { 'command-line': 'info version' })).to.equal('7.2.0tsvirt-0.1.0\r\n');
    expect(await raw.run('human-monitor-command', { 'command-line': 'info kvm' })).to.equal('kvm support: enabled\r\n');
  });

  it('stop pauses the guest (STOP, no heartbeats), cont resumes it (RESUME, heartbeats go on), repeated ones are no-ops', async () => {
    const { vm, raw } = await startVm(q.fleet());
    q.track(raw);
    expect(await raw.run('query-status')).to.deep.equal(RUNNING);
    expect(await raw.run('human-monitor-command', { 'command-line': 'info status' })).to.equal('VM status: running\r\n');
    expect(await vm.qmp.run('stop')).to.deep.equal({});
    await vm.qmp.waitEvent('STOP');
    expect(await raw.run('query-status')).to.deep.equal(PAUSED);
    expect(await raw.run('human-monitor-command', { 'command-line': 'info status' })).to.equal('VM status: paused\r\n');
    const paused = vm.beats.length;
    await sleep(600);
    expect(vm.beats.length, 'heartbeats while paused').to.be.at.most(paused + 1);
    // A second stop succeeds without a second STOP.
    expect(await vm.qmp.run('stop')).to.deep.equal({});
    expect(await vm.qmp.run('cont')).to.deep.equal({});
    await vm.qmp.waitEvent('RESUME');
    expect(await raw.run('query-status')).to.deep.equal(RUNNING);
    // cont on a running VM succeeds without a second RESUME.
    expect(await vm.qmp.run('cont')).to.deep.equal({});
    await moreBeats(vm, 3);
    expect(await vm.qmp.run('query-status')).to.deep.equal(RUNNING);
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
    expectConsecutive(vm);
  });

  it('query-cpus-fast, query-cpus and query-hotpluggable-cpus describe the vCPUs; each thread-id is a thread of the tsvirt process', async () => {
    const { vm, raw } = await startVm(q.fleet(), { smp: '2,maxcpus=4' });
    q.track(raw);
    const pid = vm.proc.child.pid!;
    const fast = await raw.run('query-cpus-fast');
    expect(fast).to.have.length(2);
    const tids: number[] = [];
    fast.forEach((c: any, i: number) => {
      expect(c).to.deep.equal({
        'cpu-index': i,
        'qom-path': `/machine/unattached/device[${i}]`,
        'thread-id': c['thread-id'],
        props: { 'core-id': 0, 'thread-id': 0, 'socket-id': i },
        target: 'x86_64',
      });
      expect(c['thread-id']).to.be.a('number');
      expect(c['thread-id']).to.not.equal(pid);
      expect(fs.existsSync(`/proc/${pid}/task/${c['thread-id']}`), `/proc/${pid}/task/${c['thread-id']}`).to.equal(true);
      tids.push(c['thread-id']);
    });
    expect(new Set(tids).size).to.equal(2);
    // The vCPU threads burn the guest's CPU time: each has its own status entry under the process.
    for (const tid of tids) expect(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')).to.match(new RegExp(`^Tgid:\\s+${pid}$`, 'm'));

    const cpus = await raw.run('query-cpus');
    expect(cpus).to.deep.equal(tids.map((tid, i) => ({
      CPU: i, arch: 'x86', current: true, halted: false, props: { 'core-id': 0, 'thread-id': 0, 'socket-id': i }, qom_path: `/machine/unattached/device[${i}]`, thread_id: tid,
    })));
    expect(await raw.run('human-monitor-command', { 'command-line': 'info cpus' })).to.equal(`* CPU #0: thread_id=${tids[0]}\r\n  CPU #1: thread_id=${tids[1]}\r\n`);
    expect(await raw.run('human-monitor-command', { 'command-line': 'info cpus', 'cpu-index': 1 })).to.equal(`  CPU #0: thread_id=${tids[0]}\r\n* CPU #1: thread_id=${tids[1]}\r\n`);

    expect(await raw.run('query-hotpluggable-cpus')).to.deep.equal([0, 1, 2, 3].map((i) => {
      const slot: Record<string, unknown> = { type: 'host-x86_64-cpu', 'vcpus-count': 1, props: { 'core-id': 0, 'thread-id': 0, 'socket-id': i } };
      if (i < 2) slot['qom-path'] = `/machine/unattached/device[${i}]`;
      return slot;
    }));
    // While paused, the same threads are reported, halted.
    await raw.run('stop');
    expect((await raw.run('query-cpus')).map((c: any) => [c.thread_id, c.halted])).to.deep.equal(tids.map((t) => [t, true]));
    expect((await raw.run('query-cpus-fast')).map((c: any) => c['thread-id'])).to.deep.equal(tids);
    await raw.run('cont');
  });

  it('system_reset reboots the guest: RESET event, the console prints TSVIRT-GUEST BOOT again, heartbeats restart', async () => {
    const { vm, raw } = await startVm(q.fleet());
    q.track(raw);
    expect(bootCount(vm)).to.equal(1);
    await vm.proc.waitFor(/HB seq=2 /);
    expect(await raw.cmd('system_reset', undefined, 'r')).to.deep.equal({ return: {}, id: 'r' });
    const reset = await vm.qmp.waitEvent('RESET');
    expect(reset.data).to.deep.equal({ guest: false, reason: 'host-qmp-system-reset' });
    await vm.proc.waitFor(/TSVIRT-GUEST BOOT\n/, 5000);
    await vm.proc.waitFor(/READY\n/, 5000);
    await vm.proc.waitFor(/HB seq=0 /, 5000);
    await vm.proc.waitFor(/HB seq=1 /, 5000);
    expect(bootCount(vm)).to.equal(2);
    expect(await raw.run('query-status')).to.deep.equal(RUNNING);
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['RESET']);
    expect(vm.proc.running).to.equal(true);
    // The HMP spelling resets too.
    expect(await raw.run('human-monitor-command', { 'command-line': 'system_reset' })).to.equal('');
    await untilTrue(() => vm.qmp.events.filter((e) => e.event === 'RESET').length === 2, 5000, 'a second RESET');
    await vm.proc.waitFor(/TSVIRT-GUEST BOOT\n/, 5000);
    await vm.proc.waitFor(/HB seq=0 /, 5000);
    expect(bootCount(vm)).to.equal(3);
  });

  it('system_powerdown sends POWERDOWN; the test guest ignores the power button and keeps running', async () => {
    const { vm, raw } = await startVm(q.fleet());
    q.track(raw);
    expect(await raw.cmd('system_powerdown', undefined, 9)).to.deep.equal({ return: {}, id: 9 });
    const ev = await vm.qmp.waitEvent('POWERDOWN');
    expect(ev).to.not.have.property('data');
    await moreBeats(vm, 5);
    expect(await raw.run('query-status')).to.deep.equal(RUNNING);
    expect(vm.proc.running).to.equal(true);
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['POWERDOWN']);
    expect(bootCount(vm)).to.equal(1);
    expectConsecutive(vm);
  });

  it('human-monitor-command runs info status and other HMP lines; unknown lines are text, not errors', async () => {
    const { vm, raw } = await startVm(q.fleet());
    q.track(raw);
    const hmp = (line: string, extra: Record<string, unknown> = {}) => raw.cmd('human-monitor-command', { 'command-line': line, ...extra });
    expect(await hmp('info status')).to.deep.equal({ return: 'VM status: running\r\n' });
    expect(await hmp('stop')).to.deep.equal({ return: '' });
    await vm.qmp.waitEvent('STOP');
    expect(await hmp('info status')).to.deep.equal({ return: 'VM status: paused\r\n' });
    expect(await hmp('c')).to.deep.equal({ return: '' });
    await vm.qmp.waitEvent('RESUME');
    expect(await hmp('  info   status  ')).to.deep.equal({ return: 'VM status: running\r\n' });
    expect(await hmp('frobnicate')).to.deep.equal({ return: "unknown command: 'frobnicate'\r\n" });
    expect(await hmp('info bogus')).to.deep.equal({ return: "unknown command: 'info bogus'\r\n" });
    expect(await hmp('stop now')).to.deep.equal({ return: 'stop: extraneous characters at the end of line\r\n' });
    expect(await raw.run('query-status')).to.deep.equal(RUNNING);
    expect(await hmp('system_powerdown')).to.deep.equal({ return: '' });
    await vm.qmp.waitEvent('POWERDOWN');
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME', 'POWERDOWN']);
    await moreBeats(vm, 2);
  });

  it('query-migrate, migrate_cancel, migrate-set-parameters/query-migrate-parameters and migrate-set-capabilities/query-migrate-capabilities', async () => {
    const { vm, raw } = await startVm(q.fleet());
    q.track(raw);
    expect(await raw.run('query-migrate')).to.deep.equal({ status: 'none' });
    expect(await raw.run('migrate_cancel')).to.deep.equal({});
    expect(await raw.run('query-migrate')).to.deep.equal({ status: 'none' });

    const before = await raw.run('query-migrate-parameters');
    expect(before).to.include({ 'downtime-limit': 300, 'multifd-channels': 2, 'xbzrle-cache-size': 67108864, 'cpu-throttle-initial': 20, 'cpu-throttle-increment': 10, 'cpu-throttle-tailslow': false, 'max-cpu-throttle': 99, 'throttle-trigger-threshold': 50 });
    expect(await raw.run('migrate-set-parameters', { 'downtime-limit': 500, 'max-bandwidth': 1073741824 })).to.deep.equal({});
    expect(await raw.run('query-migrate-parameters')).to.deep.equal({ ...before, 'downtime-limit': 500, 'max-bandwidth': 1073741824 });
    // Only the members given change.
    expect(await raw.run('migrate-set-parameters', { 'cpu-throttle-initial': 30, 'cpu-throttle-tailslow': true, 'multifd-channels': 8 })).to.deep.equal({});
    const after = await raw.run('query-migrate-parameters');
    expect(after).to.deep.equal({ ...before, 'downtime-limit': 500, 'max-bandwidth': 1073741824, 'cpu-throttle-initial': 30, 'cpu-throttle-tailslow': true, 'multifd-channels': 8 });
    // The settings belong to the VM, not the connection.
    expect(await vm.qmp.run('query-migrate-parameters')).to.deep.equal(after);

    const caps0: { capability: string; state: boolean }[] = await raw.run('query-migrate-capabilities');
    expect(caps0).to.have.length(21);
    expect(caps0.map((c) => c.capability).slice(0, 3)).to.deep.equal(['xbzrle', 'rdma-pin-all', 'auto-converge']);
    expect(caps0.every((c) => c.state === false)).to.equal(true);
    expect(await raw.run('migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }, { capability: 'events', state: true }] })).to.deep.equal({});
    const on = (caps: { capability: string; state: boolean }[]) => caps.filter((c) => c.state).map((c) => c.capability);
    expect(on(await raw.run('query-migrate-capabilities'))).to.deep.equal(['auto-converge', 'events']);
    expect(await raw.run('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: false }] })).to.deep.equal({});
    expect(on(await vm.qmp.run('query-migrate-capabilities'))).to.deep.equal(['auto-converge']);
    expect(await raw.run('migrate-set-capabilities', { capabilities: [] })).to.deep.equal({});
    expect(on(await raw.run('query-migrate-capabilities'))).to.deep.equal(['auto-converge']);
    expect(await raw.run('query-migrate')).to.deep.equal({ status: 'none' });
    expect(await raw.run('query-status')).to.deep.equal(RUNNING);
  });

  it('refuses bad arguments to every command with a GenericError naming the member, before any side effect', async () => {
    const { vm, raw } = await startVm(q.fleet());
    q.track(raw);
    // Make parameters and capabilities differ from their defaults, so a partial application would show.
    await vm.qmp.run('migrate-set-parameters', { 'downtime-limit': 700 });
    await vm.qmp.run('migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }] });

    const snapshot = async () => ({
      status: await vm.qmp.run('query-status'),
      migrate: await vm.qmp.run('query-migrate'),
      params: await vm.qmp.run('query-migrate-parameters'),
      caps: await vm.qmp.run('query-migrate-capabilities'),
      events: vm.qmp.events.length, // the q.fleet()'s client is negotiated; the round trips above are the barrier
      boots: bootCount(vm),
      running: vm.proc.running,
    });

    type Case = [request: Record<string, unknown>, desc: string, member: string];
    const noArgs = ['query-version', 'query-commands', 'query-status', 'stop', 'cont', 'quit', 'system_reset', 'system_powerdown',
      'query-cpus-fast', 'query-cpus', 'query-hotpluggable-cpus', 'query-name', 'query-kvm', 'query-machines', 'query-target',
      'query-events', 'migrate_cancel', 'query-migrate', 'query-migrate-parameters', 'query-migrate-capabilities'];
    const cases: Case[] = [];
    for (const name of noArgs) {
      cases.push([{ execute: name, arguments: { bogus: 1 } }, "Parameter 'bogus' is unexpected", 'bogus']);
      cases.push([{ execute: name, arguments: 'x' }, "QMP input member 'arguments' must be an object", 'arguments']);
      cases.push([{ execute: name, arguments: [] }, "QMP input member 'arguments' must be an object", 'arguments']);
      cases.push([{ execute: name, bogus: true }, "QMP input member 'bogus' is unexpected", 'bogus']);
    }
    cases.push(
      [{ execute: 'qmp_capabilities', arguments: { bogus: 1 } }, "Parameter 'bogus' is unexpected", 'bogus'],
      [{ execute: 'qmp_capabilities', arguments: { enable: 'oob' } }, "Invalid parameter type for 'enable', expected: array", 'enable'],
      [{ execute: 'qmp_capabilities', arguments: { enable: [1] } }, "Invalid parameter type for 'enable[0]', expected: string", 'enable[0]'],
      [{ execute: 'qmp_capabilities', arguments: { enable: ['teleport'] } }, "Parameter 'enable[0]' does not accept value 'teleport'", 'enable[0]'],
      [{ execute: 'human-monitor-command', arguments: {} }, "Parameter 'command-line' is missing", 'command-line'],
      [{ execute: 'human-monitor-command', arguments: { 'command-line': 1 } }, "Invalid parameter type for 'command-line', expected: string", 'command-line'],
      [{ execute: 'human-monitor-command', arguments: { 'command-line': 'stop', bogus: 1 } }, "Parameter 'bogus' is unexpected", 'bogus'],
      [{ execute: 'human-monitor-command', arguments: { 'command-line': 'system_reset', 'cpu-index': '0' } }, "Invalid parameter type for 'cpu-index', expected: integer", 'cpu-index'],
      [{ execute: 'human-monitor-command', arguments: { 'command-line': 'system_reset', 'cpu-index': 7 } }, "Parameter 'cpu-index' expects a CPU number", 'cpu-index'],
      [{ execute: 'human-monitor-command', arguments: { 'command-line': 'quit', 'cpu-index': 1.5 } }, "Invalid parameter type for 'cpu-index', expected: integer", 'cpu-index'],
      [{ execute: 'migrate', arguments: {} }, "Parameter 'uri' is missing", 'uri'],
      [{ execute: 'migrate', arguments: { uri: 1 } }, "Invalid parameter type for 'uri', expected: string", 'uri'],
      [{ execute: 'migrate', arguments: { uri: 'tcp:127.0.0.1:1', foo: 1 } }, "Parameter 'foo' is unexpected", 'foo'],
      [{ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 'a' } }, "Parameter 'downtime-limit' expects uint64", 'downtime-limit'],
      [{ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 100, bogus: 1 } }, "Parameter 'bogus' is unexpected", 'bogus'],
      [{ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 100, 'max-bandwidth': -1 } },
        `Parameter 'max-bandwidth' expects an integer in the range of 0 to ${Number.MAX_SAFE_INTEGER} bytes/second`, 'max-bandwidth'],
      [{ execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 3000000 } }, "Parameter 'downtime-limit' expects an integer in the range of 0 to 2000000 ms", 'downtime-limit'],
      [{ execute: 'migrate-set-parameters', arguments: { 'cpu-throttle-tailslow': 'yes' } }, "Invalid parameter type for 'cpu-throttle-tailslow', expected: boolean", 'cpu-throttle-tailslow'],
      [{ execute: 'migrate-set-capabilities', arguments: {} }, "Parameter 'capabilities' is missing", 'capabilities'],
      [{ execute: 'migrate-set-capabilities', arguments: { capabilities: {} } }, "Invalid parameter type for 'capabilities', expected: array", 'capabilities'],
      [{ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'events' }] } }, "Parameter 'capabilities[0].state' is missing", 'capabilities[0].state'],
      [{ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'events', state: 1 }] } }, "Invalid parameter type for 'capabilities[0].state', expected: boolean", 'capabilities[0].state'],
      [{ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'auto-converge', state: false }, { capability: 'teleport', state: true }] } },
        "Parameter 'capabilities[1].capability' does not accept value 'teleport'", 'capabilities[1].capability'],
      [{ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'auto-converge', state: false, x: 1 }] } }, "Parameter 'capabilities[0].x' is unexpected", 'capabilities[0].x'],
      [{ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'events', state: true }], more: 1 } }, "Parameter 'more' is unexpected", 'more'],
    );

    const initial = await snapshot();
    expect(initial.status).to.deep.equal(RUNNING);
    let n = 0;
    for (const [request, desc, member] of cases) {
      const id = `bad-${n++}`;
      await raw.send({ ...request, id });
      const r = await raw.reply();
      expect(r, JSON.stringify(request)).to.deep.equal({ id, error: { class: 'GenericError', desc } });
      expect(desc, JSON.stringify(request)).to.include(`'${member}'`);
      expect(await snapshot(), `side effect of ${JSON.stringify(request)}`).to.deep.equal(initial);
    }
    // cont with a bad argument leaves a paused VM paused.
    await vm.qmp.run('stop');
    await vm.qmp.waitEvent('STOP');
    const paused = await snapshot();
    expect(paused.status).to.deep.equal(PAUSED);
    for (const request of [{ execute: 'cont', arguments: { bogus: 1 } }, { execute: 'cont', arguments: [] }, { execute: 'cont', foo: 1 },
      { execute: 'human-monitor-command', arguments: { 'command-line': 'cont', bogus: 1 } }]) {
      await raw.send(request);
      expect((await raw.reply()).error?.class).to.equal('GenericError');
      expect(await snapshot(), `side effect of ${JSON.stringify(request)}`).to.deep.equal(paused);
    }
    await vm.qmp.run('cont');
    await vm.qmp.waitEvent('RESUME');
    // No RESET, POWERDOWN or SHUTDOWN came of any of it, and the guest never stopped beating apart from the pause.
    expect(vm.qmp.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
    await moreBeats(vm, 2);
    expectConsecutive(vm);
    // The bad qmp_capabilities calls did not negotiate `raw`: it saw no events and can still negotiate.
    expect(raw.events).to.deep.equal([]);
    expect(await raw.cmd('qmp_capabilities')).to.deep.equal({ return: {} });
    expect(raw.wireErrors).to.deep.equal([]);
  });

  it('echoes string, number, object, array and null ids on success and on every kind of error', async () => {
    const { raw } = await startVm(q.fleet());
    q.track(raw);
    const ids: unknown[] = ['abc', '', 'h\u00e9llo \u2603 "q" \\ \n', 0, -17, 3.5, 1e21, { a: 1, b: [true, null, { c: 'd' }] }, {}, [1, 'two', { three: 3 }], [], null, false];
    for (const id of ids) {
      expect(await raw.cmd('query-status', undefined, id), `id ${JSON.stringify(id)}`).to.deep.equal({ return: RUNNING, id });
      expect(await raw.cmd('nope', undefined, id)).to.deep.equal({ id, error: { class: 'CommandNotFound', desc: 'The command nope has not been found' } });
      expect(await raw.cmd('stop', { bogus: 1 }, id)).to.deep.equal({ id, error: { class: 'GenericError', desc: "Parameter 'bogus' is unexpected" } });
      await raw.send({ id, execute: 'query-name', foo: 1 });
      expect(await raw.reply()).to.deep.equal({ id, error: { class: 'GenericError', desc: "QMP input member 'foo' is unexpected" } });
      await raw.send({ id });
      expect(await raw.reply()).to.deep.equal({ id, error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } });
      await raw.send({ id, execute: 42 });
      expect(await raw.reply()).to.deep.equal({ id, error: { class: 'GenericError', desc: "QMP input member 'execute' must be a string" } });
    }
    // Byte-exact lines: QEMU's formatting, the id after `return` and before `error`, ASCII escapes.
    await raw.write('{"execute": "query-kvm", "id": "example"}');
    await raw.reply();
    expect(raw.lines.at(-1)).to.equal('{"return": {"enabled": true, "present": true}, "id": "example"}\r\n');
    await raw.write('{"execute": "nope", "id": 9}');
    await raw.reply();
    expect(raw.lines.at(-1)).to.equal('{"id": 9, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}\r\n');
    await raw.write('{"execute":"query-target","id":{"k":["\u00e9",1.5,null]}}');
    await raw.reply();
    expect(raw.lines.at(-1)).to.equal('{"return": {"arch": "x86_64"}, "id": {"k": ["\\u00E9", 1.5, null]}}\r\n');
    // No id in, no id out.
    expect(await raw.cmd('query-target')).to.deep.equal({ return: { arch: 'x86_64' } });
    expect(raw.lines.at(-1)).to.equal('{"return": {"arch": "x86_64"}}\r\n');
    expect(raw.wireErrors).to.deep.equal([]);
  });
});
