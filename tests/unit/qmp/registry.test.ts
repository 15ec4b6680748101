// The registry's validation and error mapping: QEMU's wording for every kind of bad argument and failure.
import { expect } from 'chai';
import { KvmError, StateError } from '../../../machine/errors.js';
import { BUILTIN_COMMANDS } from '../../../qmp/commands/index.js';
import { QmpRegistry, defineCommand, describeFailure } from '../../../qmp/registry.js';
import { NO_ARGUMENTS, memberName } from '../../../qmp/schema.js';
import { harness } from './context.js';

describe('qmp registry', () => {
  it('answers an unknown command with CommandNotFound in QEMU words', async () => {
    expect(await harness().run('no-such-command')).to.deep.equal({
      error: { class: 'CommandNotFound', desc: 'The command no-such-command has not been found' },
    });
  });

  it('does not treat Object.prototype members as commands', async () => {
    for (const name of ['__proto__', 'constructor', 'toString']) {
      expect((await harness().run(name)).error?.class).to.equal('CommandNotFound');
    }
  });

  it('names a missing member', async () => {
    expect((await harness().run('migrate', {})).error?.desc).to.equal("Parameter 'uri' is missing");
  });

  it('names an unexpected member, even one called __proto__', async () => {
    const args = JSON.parse('{"uri":"tcp:1:2","__proto__":{"x":1}}') as Record<string, unknown>;
    expect((await harness().run('migrate', args)).error?.desc).to.equal("Parameter '__proto__' is unexpected");
  });

  it('reports the expected QAPI type', async () => {
    const h = harness();
    expect((await h.run('migrate', { uri: 'x', detach: 'yes' })).error?.desc).to.equal(
      "Invalid parameter type for 'detach', expected: boolean",
    );
    expect((await h.run('human-monitor-command', { 'command-line': 'x', 'cpu-index': 1.5 })).error?.desc).to.equal(
      "Invalid parameter type for 'cpu-index', expected: integer",
    );
  });

  it('reports uint64 members as QEMU does', async () => {
    const h = harness();
    expect((await h.run('migrate-set-parameters', { 'downtime-limit': 'a' })).error?.desc).to.equal(
      "Parameter 'downtime-limit' expects uint64",
    );
    expect((await h.run('migrate-set-parameters', { 'xbzrle-cache-size': -1 })).error?.desc).to.equal(
      "Parameter 'xbzrle-cache-size' expects uint64",
    );
  });

  it('reports ranges with the wording QEMU uses', async () => {
    const h = harness();
    expect((await h.run('migrate-set-parameters', { 'cpu-throttle-initial': 0 })).error?.desc).to.equal(
      "Parameter 'cpu-throttle-initial' expects an integer in the range of 1 to 99",
    );
    expect((await h.run('migrate-set-parameters', { 'multifd-channels': 0 })).error?.desc).to.equal(
      "Parameter 'multifd-channels' expects a value between 1 and 255",
    );
  });

  it('checks what a schema cannot: power-of-two cache sizes and throttle ordering', async () => {
    const h = harness();
    expect((await h.run('migrate-set-parameters', { 'xbzrle-cache-size': 1000 })).error?.desc).to.equal(
      "Parameter 'xbzrle-cache-size' expects a power of two no less than the target page size",
    );
    expect((await h.run('migrate-set-parameters', { 'cpu-throttle-initial': 50, 'max-cpu-throttle': 40 })).error?.desc).to.equal(
      "Parameter 'max-cpu-throttle' expects an integer in the range of cpu-throttle-initial to 99",
    );
    expect((await h.run('migrate-set-parameters', { 'xbzrle-cache-size': 2 ** 33 })).return).to.deep.equal({});
    // A refused patch changes nothing.
    expect(((await h.run('query-migrate-parameters')).return as Record<string, unknown>)['cpu-throttle-initial']).to.equal(20);
  });

  it('names nested members with QEMU full names', async () => {
    const h = harness();
    expect((await h.run('migrate-set-capabilities', { capabilities: [{ capability: 'xbzrle' }] })).error?.desc).to.equal(
      "Parameter 'capabilities[0].state' is missing",
    );
    expect(
      (await h.run('migrate-set-capabilities', { capabilities: [{ capability: 'xbzrle', state: true, x: 1 }] })).error?.desc,
    ).to.equal("Parameter 'capabilities[0].x' is unexpected");
    expect(memberName('/a~1b/3/c~0d')).to.equal('a/b[3].c~d');
  });

  it('refuses a second qmp_capabilities with QEMU class and text', async () => {
    const h = harness();
    expect(await h.run('qmp_capabilities')).to.deep.equal({ return: {} });
    expect(await h.run('qmp_capabilities')).to.deep.equal({
      error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' },
    });
  });

  it('refuses to enable a capability the greeting did not offer', async () => {
    const h = harness();
    expect((await h.run('qmp_capabilities', { enable: ['oob'] })).error?.desc).to.equal('Capability oob not available');
    expect((await h.run('qmp_capabilities', { enable: ['fast'] })).error?.desc).to.equal(
      "Parameter 'enable[0]' does not accept value 'fast'",
    );
    expect(h.session.negotiated).to.equal(false);
  });

  it("passes a TsvirtError's QMP class and message through", async () => {
    const h = harness();
    h.vm.failures.set('kvm', new KvmError('KVM_CHECK_EXTENSION', 22, 'EINVAL'));
    expect(await h.run('query-kvm')).to.deep.equal({
      error: { class: 'KVMMissingCap', desc: 'KVM_CHECK_EXTENSION failed: EINVAL (errno 22)' },
    });
    h.vm.state = 'shutdown';
    expect((await h.run('cont')).error).to.deep.equal({ class: 'GenericError', desc: 'Resetting the Virtual Machine is required' });
    h.vm.failures.set('stop', new StateError('busy'));
    expect((await h.run('stop')).error?.desc).to.equal('busy');
  });

  it('turns any other exception into GenericError and logs it with its stack', () => {
    const logged: Record<string, unknown>[] = [];
    const logger = { error: (_m: string, meta?: Record<string, unknown>) => logged.push(meta ?? {}), warn() {}, info() {}, debug() {} };
    expect(describeFailure(new TypeError('x is undefined'), logger, 'stop')).to.deep.equal({ cls: 'GenericError', desc: 'x is undefined' });
    expect(describeFailure('plain string', logger)).to.deep.equal({ cls: 'GenericError', desc: 'plain string' });
    expect(logged[0]).to.include({ command: 'stop', error: 'x is undefined' });
    expect(logged[0].stack).to.match(/TypeError/);
  });

  it('maps a handler result of undefined to {}', async () => {
    const reg = new QmpRegistry([defineCommand({ name: 'nothing', summary: '', schema: NO_ARGUMENTS, example: { request: { execute: 'nothing' }, response: { return: {} } }, handler: () => undefined })]);
    expect(await reg.execute('nothing', {}, harness().ctx)).to.deep.equal({});
  });

  it('refuses to register one wire name twice', () => {
    expect(() => new QmpRegistry([...BUILTIN_COMMANDS, BUILTIN_COMMANDS[0]])).to.throw(/registered twice/);
  });

  it("accepts every command's documented example arguments", () => {
    const reg = new QmpRegistry(BUILTIN_COMMANDS);
    for (const c of BUILTIN_COMMANDS) {
      expect(c.example.request.execute, c.name).to.equal(c.name);
      expect(reg.accepts(c.name, c.example.request.arguments ?? {}), c.name).to.equal(true);
    }
  });
});
