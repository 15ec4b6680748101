// human-monitor-command: QEMU's output text for the HMP commands tsvirt implements.
import { expect } from 'chai';
import { harness } from './context.js';

async function hmp(line: string, setup?: (h: ReturnType<typeof harness>) => void, cpuIndex?: number): Promise<unknown> {
  const h = harness();
  setup?.(h);
  const args: Record<string, unknown> = { 'command-line': line };
  if (cpuIndex !== undefined) args['cpu-index'] = cpuIndex;
  const r = await h.run('human-monitor-command', args);
  return r.error ?? r.return;
}

describe('qmp human-monitor-command', () => {
  it('prints "info status" exactly as QEMU 7.2 does', async () => {
    expect(await hmp('info status')).to.equal('VM status: running\r\n');
    expect(await hmp('info status', (h) => (h.vm.state = 'paused'))).to.equal('VM status: paused\r\n');
    expect(await hmp('  info   status  ', (h) => (h.vm.state = 'prelaunch'))).to.equal('VM status: paused (prelaunch)\r\n');
  });

  it('prints info cpus with the current CPU starred', async () => {
    expect(await hmp('info cpus')).to.equal('* CPU #0: thread_id=4242\r\n  CPU #1: thread_id=4243\r\n');
    expect(await hmp('info cpus', undefined, 1)).to.equal('  CPU #0: thread_id=4242\r\n* CPU #1: thread_id=4243\r\n');
  });

  it('refuses a cpu-index that names no vCPU', async () => {
    expect(await hmp('info status', undefined, 7)).to.deep.equal({
      class: 'GenericError',
      desc: "Parameter 'cpu-index' expects a CPU number",
    });
  });

  it('prints info kvm, name and version like QEMU', async () => {
    expect(await hmp('info kvm')).to.equal('kvm support: enabled\r\n');
    expect(await hmp('info name')).to.equal('guest0\r\n');
    expect(await hmp('info name', (h) => (h.vm.name = undefined))).to.equal('');
    expect(await hmp('info version')).to.equal('7.2.0tsvirt-0.1.0\r\n');
  });

  it('answers unknown commands with QEMU text as a successful result', async () => {
    expect(await hmp('frobnicate now')).to.equal("unknown command: 'frobnicate'\r\n");
    expect(await hmp('info frob')).to.equal("unknown command: 'info frob'\r\n");
    expect(await hmp('')).to.equal('');
  });

  it('runs stop and c, which change the VM state and print nothing', async () => {
    const h = harness();
    expect((await h.run('human-monitor-command', { 'command-line': 'stop' })).return).to.equal('');
    expect(h.vm.state).to.equal('paused');
    expect((await h.run('human-monitor-command', { 'command-line': 'c' })).return).to.equal('');
    expect(h.vm.calls).to.deep.equal(['stop', 'cont']);
  });

  it('reports a failing action as "Error: ..." text', async () => {
    expect(await hmp('cont', (h) => (h.vm.state = 'shutdown'))).to.equal('Error: Resetting the Virtual Machine is required\r\n');
  });

  it('runs quit through the same reply-then-SHUTDOWN sequence as the quit command', async () => {
    const h = harness();
    expect((await h.run('human-monitor-command', { 'command-line': 'quit' })).return).to.equal('');
    expect(h.vm.calls).to.deep.equal([]);
    for (const t of h.afterReply) await t();
    expect(h.emitted.map((e) => e.event)).to.deep.equal(['SHUTDOWN']);
    expect(h.vm.calls).to.deep.equal(['quit']);
  });

  it('lists the info subcommands for a bare "info" and refuses extra words', async () => {
    expect(await hmp('info')).to.match(/^info cpus  -- show infos for each CPU\r\n/);
    expect(await hmp('stop now')).to.equal('stop: extraneous characters at the end of line\r\n');
  });
});
