// Every QMP command against a fake VM: its happy path, a bad-argument case, and no side effect on bad arguments.
import { expect } from 'chai';
import { BUILTIN_COMMANDS } from '../../../qmp/commands/index.js';
import { MIGRATION_CAPABILITIES } from '../../../qmp/migration-api.js';
import { harness, type Harness } from './context.js';

type Reply = Awaited<ReturnType<Harness['run']>>;

interface Case {
  command: string;
  args?: Record<string, unknown>;
  /** Checks the successful reply (and the fake's state). */
  check(reply: Reply, h: Harness): unknown;
  /** Arguments that must be refused, with QEMU's wording. */
  bad: { args: Record<string, unknown>; desc: string };
  /** Fake VM calls the command makes on success (none must happen on bad arguments). */
  calls?: string[];
}

const unexpected = { args: { bogus: 1 }, desc: "Parameter 'bogus' is unexpected" };

const CASES: Case[] = [
  {
    command: 'qmp_capabilities',
    check: (r, h) => {
      expect(r).to.deep.equal({ return: {} });
      expect(h.session.negotiated).to.equal(true);
    },
    bad: { args: { enable: 'oob' }, desc: "Invalid parameter type for 'enable', expected: array" },
  },
  {
    command: 'query-version',
    check: (r) => expect(r.return).to.deep.equal({ qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsvirt-0.1.0' }),
    bad: unexpected,
  },
  {
    command: 'query-commands',
    check: (r) => expect(r.return).to.deep.equal(BUILTIN_COMMANDS.map((c) => ({ name: c.name }))),
    bad: unexpected,
  },
  {
    command: 'query-status',
    check: (r) => expect(r.return).to.deep.equal({ status: 'running', singlestep: false, running: true }),
    bad: unexpected,
  },
  {
    command: 'stop',
    check: (r, h) => {
      expect(r.return).to.deep.equal({});
      expect(h.vm.state).to.equal('paused');
    },
    bad: unexpected,
    calls: ['stop'],
  },
  {
    command: 'cont',
    check: (r, h) => {
      expect(r.return).to.deep.equal({});
      expect(h.vm.state).to.equal('running');
    },
    bad: unexpected,
    calls: ['cont'],
  },
  {
    command: 'quit',
    check: async (r, h) => {
      expect(r.return).to.deep.equal({});
      expect(h.vm.calls).to.deep.equal([]); // nothing happens before the reply is out
      for (const t of h.afterReply) await t();
      expect(h.emitted).to.deep.equal([{ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } }]);
      expect(h.vm.calls).to.deep.equal(['quit']);
    },
    bad: unexpected,
  },
  {
    command: 'system_reset',
    check: (r) => expect(r.return).to.deep.equal({}),
    bad: unexpected,
    calls: ['systemReset'],
  },
  {
    command: 'system_powerdown',
    check: (r) => expect(r.return).to.deep.equal({}),
    bad: unexpected,
    calls: ['systemPowerdown'],
  },
  {
    command: 'query-cpus-fast',
    check: (r) =>
      expect(r.return).to.deep.equal([
        {
          'cpu-index': 0,
          'qom-path': '/machine/unattached/device[0]',
          'thread-id': 4242,
          props: { 'core-id': 0, 'thread-id': 0, 'socket-id': 0 },
          target: 'x86_64',
        },
        {
          'cpu-index': 1,
          'qom-path': '/machine/unattached/device[1]',
          'thread-id': 4243,
          props: { 'core-id': 1, 'thread-id': 0, 'socket-id': 0 },
          target: 'x86_64',
        },
      ]),
    bad: unexpected,
  },
  {
    command: 'query-cpus',
    check: (r) =>
      expect((r.return as unknown[])[1]).to.deep.equal({
        CPU: 1,
        arch: 'x86',
        current: true,
        halted: true,
        props: { 'core-id': 1, 'thread-id': 0, 'socket-id': 0 },
        qom_path: '/machine/unattached/device[1]',
        thread_id: 4243,
      }),
    bad: unexpected,
  },
  {
    command: 'query-hotpluggable-cpus',
    check: (r) => {
      const slots = r.return as Record<string, unknown>[];
      expect(slots).to.have.length(3);
      expect(slots[0]).to.deep.equal({
        type: 'host-x86_64-cpu',
        'vcpus-count': 1,
        props: { 'core-id': 0, 'thread-id': 0, 'socket-id': 0 },
        'qom-path': '/machine/unattached/device[0]',
      });
      expect(slots[2]).to.not.have.property('qom-path');
    },
    bad: unexpected,
  },
  {
    command: 'query-name',
    check: (r) => expect(r.return).to.deep.equal({ name: 'guest0' }),
    bad: unexpected,
  },
  {
    command: 'calc-dirty-rate',
    args: { 'calc-time': 1 },
    check: (r) => expect(r.error?.desc ?? '').to.match(/^(|Dirty rate measurement is not available)$/),
    bad: { args: { 'calc-time': 0 }, desc: "Parameter 'calc-time' expects an integer in the range of 1 to 60 seconds" },
  },
  {
    command: 'query-dirty-rate',
    check: (r) => expect((r.return as { status: string }).status).to.equal('unstarted'),
    bad: unexpected,
  },
  {
    command: 'query-block',
    check: (r) => expect(r.return).to.deep.equal([]),
    bad: unexpected,
  },
  {
    command: 'query-pci',
    check: (r) => expect(r.return).to.deep.equal([{ bus: 0, devices: [] }]),
    bad: unexpected,
  },
  {
    command: 'query-kvm',
    check: (r) => expect(r.return).to.deep.equal({ enabled: true, present: true }),
    bad: unexpected,
    calls: ['kvm'],
  },
  {
    command: 'query-machines',
    check: (r) => expect((r.return as { name: string }[]).map((m) => m.name)).to.deep.equal(['q35']),
    bad: unexpected,
  },
  {
    command: 'query-target',
    check: (r) => expect(r.return).to.deep.equal({ arch: 'x86_64' }),
    bad: unexpected,
  },
  {
    command: 'query-events',
    check: (r) => expect(r.return).to.deep.include({ name: 'MIGRATION_PASS' }),
    bad: unexpected,
  },
  {
    command: 'human-monitor-command',
    args: { 'command-line': 'info status' },
    check: (r) => expect(r.return).to.equal('VM status: running\r\n'),
    bad: { args: {}, desc: "Parameter 'command-line' is missing" },
  },
  {
    command: 'migrate',
    args: { uri: 'tcp:127.0.0.1:4446' },
    check: (r) =>
      expect(r.error).to.deep.equal({ class: 'GenericError', desc: 'Migration is not supported by this tsvirt build' }),
    bad: { args: { uri: 1 }, desc: "Invalid parameter type for 'uri', expected: string" },
  },
  {
    command: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:4446' },
    check: (r) => expect(r.error).to.deep.equal({ class: 'GenericError', desc: 'Migration is not supported by this tsvirt build' }),
    bad: { args: {}, desc: "Parameter 'uri' is missing" },
  },
  {
    command: 'migrate_cancel',
    check: (r) => expect(r.return).to.deep.equal({}),
    bad: unexpected,
  },
  {
    command: 'query-migrate',
    check: (r) => expect(r.return).to.deep.equal({ status: 'none' }),
    bad: unexpected,
  },
  {
    command: 'migrate-set-parameters',
    args: { 'downtime-limit': 500, 'max-bandwidth': 1073741824, 'cpu-throttle-tailslow': true },
    check: async (_r, h) => {
      const p = (await h.run('query-migrate-parameters')).return as Record<string, unknown>;
      expect(p).to.include({ 'downtime-limit': 500, 'max-bandwidth': 1073741824, 'cpu-throttle-tailslow': true });
      expect(p).to.include({ 'multifd-channels': 2 });
    },
    bad: {
      args: { 'downtime-limit': 3000000 },
      desc: "Parameter 'downtime-limit' expects an integer in the range of 0 to 2000000 ms",
    },
  },
  {
    command: 'query-migrate-parameters',
    check: (r) =>
      expect(r.return).to.deep.equal({
        'downtime-limit': 300,
        'max-bandwidth': 134217728,
        'max-postcopy-bandwidth': 0,
        'multifd-channels': 2,
        'xbzrle-cache-size': 67108864,
        'cpu-throttle-initial': 20,
        'cpu-throttle-increment': 10,
        'cpu-throttle-tailslow': false,
        'max-cpu-throttle': 99,
        'throttle-trigger-threshold': 50,
      }),
    bad: unexpected,
  },
  {
    command: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'auto-converge', state: true }] },
    check: async (_r, h) => {
      const caps = (await h.run('query-migrate-capabilities')).return as { capability: string; state: boolean }[];
      expect(caps.filter((c) => c.state)).to.deep.equal([{ capability: 'auto-converge', state: true }]);
    },
    bad: {
      args: { capabilities: [{ capability: 'auto-converge', state: true }, { capability: 'teleport', state: true }] },
      desc: "Parameter 'capabilities[1].capability' does not accept value 'teleport'",
    },
  },
  {
    command: 'query-migrate-capabilities',
    check: (r) => {
      const caps = r.return as { capability: string; state: boolean }[];
      expect(caps.map((c) => c.capability)).to.deep.equal([...MIGRATION_CAPABILITIES]);
      expect(caps.every((c) => c.state === false)).to.equal(true);
    },
    bad: unexpected,
  },
];

describe('qmp commands', () => {
  it('has a test case for every registered command', () => {
    expect(CASES.map((c) => c.command).sort()).to.deep.equal(BUILTIN_COMMANDS.map((c) => c.name).sort());
  });

  for (const c of CASES) {
    describe(c.command, () => {
      it('answers valid arguments as documented', async () => {
        const h = harness();
        if (c.command === 'cont') h.vm.state = 'paused';
        const reply = await h.run(c.command, c.args);
        await c.check(reply, h);
        if (c.calls !== undefined) expect(h.vm.calls).to.deep.equal(c.calls);
      });

      it(`refuses bad arguments before any side effect: ${c.bad.desc}`, async () => {
        const h = harness();
        const reply = await h.run(c.command, c.bad.args);
        expect(reply).to.deep.equal({ error: { class: 'GenericError', desc: c.bad.desc } });
        expect(h.vm.calls).to.deep.equal([]);
        expect(h.afterReply).to.deep.equal([]);
      });
    });
  }
});
