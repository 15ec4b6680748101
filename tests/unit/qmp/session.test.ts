// Session behaviour over a real unix socket against the real server: negotiation, ordering, framing, events.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineCommand } from '../../../qmp/registry.js';
import { BUILTIN_COMMANDS } from '../../../qmp/commands/index.js';
import { NO_ARGUMENTS } from '../../../qmp/schema.js';
import { startQmp, type QmpServer, type QmpServerOptions } from '../../../qmp/server.js';
import { TestClient } from './client.js';
import { FakeVm } from './fake-vm.js';

const throwing = defineCommand({
  name: 'x-throw',
  summary: 'test only: throws a plain TypeError',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'x-throw' }, response: { return: {} } },
  handler: () => {
    throw new TypeError('boom');
  },
});

const unencodable = defineCommand({
  name: 'x-cycle',
  summary: 'test only: returns a value JSON cannot hold',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'x-cycle' }, response: { return: {} } },
  handler: () => {
    const o: Record<string, unknown> = {};
    o.self = o;
    return o;
  },
});

describe('qmp session (unix socket)', () => {
  let dir: string;
  let vm: FakeVm;
  let server: QmpServer;
  let address: string;
  const clients: TestClient[] = [];

  async function start(options: Omit<QmpServerOptions, 'logger'> = {}): Promise<void> {
    server = await startQmp([`unix:${join(dir, 'qmp.sock')}`], vm, undefined, {
      version: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsvirt-0.1.0' },
      commands: [...BUILTIN_COMMANDS, throwing, unencodable],
      ...options,
    });
    address = server.addresses[0];
  }

  async function connect(): Promise<TestClient> {
    const c = await TestClient.connect(address);
    clients.push(c);
    return c;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsvirt-qmp-'));
    vm = new FakeVm();
    await start();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('greets with QEMU 7.2 version, the tsvirt package and no capabilities, in QEMU byte format', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const s = net.connect(address.slice(5));
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString('latin1');
        if (buf.includes('\r\n')) {
          s.destroy();
          resolve(buf);
        }
      });
      s.on('error', reject);
    });
    expect(raw).to.equal(
      '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "tsvirt-0.1.0"}, "capabilities": []}}\r\n',
    );
  });

  it('executes commands before qmp_capabilities, as StratoVirt does', async () => {
    const c = await connect();
    expect(await c.execute('query-status', undefined, 1)).to.deep.equal({
      return: { status: 'running', singlestep: false, running: true },
      id: 1,
    });
  });

  it('delivers events only after negotiation, then refuses a second negotiation', async () => {
    const c = await connect();
    await c.execute('stop', undefined, 'before');
    expect(c.events).to.deep.equal([]);
    expect(await c.execute('qmp_capabilities', undefined, 'neg')).to.deep.equal({ return: {}, id: 'neg' });
    await c.execute('cont', undefined, 'after');
    expect(c.events.map((e) => e.event)).to.deep.equal(['RESUME']);
    expect(await c.execute('qmp_capabilities', undefined, 'again')).to.deep.equal({
      id: 'again',
      error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' },
    });
  });

  it('stamps events with seconds and microseconds and omits data when there is none', async () => {
    const c = await connect();
    await c.execute('qmp_capabilities');
    const before = Date.now() / 1000;
    await c.execute('stop');
    await c.execute('system_reset');
    const [stop, reset] = c.events;
    expect(Object.keys(stop)).to.deep.equal(['timestamp', 'event']);
    const ts = stop.timestamp as { seconds: number; microseconds: number };
    expect(ts.seconds).to.be.within(Math.floor(before) - 1, Math.ceil(Date.now() / 1000));
    expect(ts.microseconds).to.be.within(0, 999999);
    expect(reset.data).to.deep.equal({ guest: false, reason: 'host-qmp-system-reset' });
  });

  it('echoes string, number, object and null ids', async () => {
    const c = await connect();
    for (const id of ['abc', 42, { nested: [1, { x: null }] }, null]) {
      expect((await c.execute('query-name', undefined, id)).id).to.deep.equal(id);
    }
  });

  it('reassembles a command split into many packets', async () => {
    const c = await connect();
    const text = '{"execute":"query-name","id":"split"}\r\n';
    for (const ch of text) {
      c.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    expect(await c.waitFor((m) => m.id === 'split')).to.deep.equal({ return: { name: 'guest0' }, id: 'split' });
  });

  it('answers batched commands in order, even behind a slow async handler', async () => {
    vm.stopDelayMs = 50;
    const c = await connect();
    c.write('{"execute":"stop","id":1}{"execute":"query-status","id":2}\r\n{"execute":"cont","id":3}{"execute":"query-status","id":4}');
    const replies = await c.waitReplies(4);
    expect(replies.map((r) => r.id)).to.deep.equal([1, 2, 3, 4]);
    expect((replies[1].return as { status: string }).status).to.equal('paused');
    expect((replies[3].return as { status: string }).status).to.equal('running');
  });

  it('answers invalid JSON with GenericError and then serves the next command', async () => {
    const c = await connect();
    c.write('{"execute": }\r\n{"execute":"query-name","id":7}\r\n');
    const [bad, good] = await c.waitReplies(2);
    expect(bad.error).to.have.property('class', 'GenericError');
    expect((bad.error as { desc: string }).desc).to.match(/^JSON parse error, /);
    expect(bad).to.not.have.property('id');
    expect(good).to.deep.equal({ return: { name: 'guest0' }, id: 7 });
  });

  it('survives garbage bytes and a lone closing brace', async () => {
    const c = await connect();
    c.write(Uint8Array.from([0x40, 0x80, 0xfd, 0x7d, 0x0a]));
    c.write('}\r\n{"execute":"query-target","id":"t"}\r\n');
    expect(await c.waitFor((m) => m.id === 't')).to.deep.equal({ return: { arch: 'x86_64' }, id: 't' });
    expect(c.replies.filter((r) => 'error' in r).length).to.be.greaterThan(0);
  });

  it('checks the request envelope with QEMU messages, echoing id where there is one', async () => {
    const c = await connect();
    const cases: [string, Record<string, unknown>][] = [
      ['[1]', { error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } }],
      ['"str"', { error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } }],
      ['{"id":5}', { id: 5, error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } }],
      ['{"execute":1,"id":6}', { id: 6, error: { class: 'GenericError', desc: "QMP input member 'execute' must be a string" } }],
      ['{"execute":"stop","arguments":[],"id":7}', { id: 7, error: { class: 'GenericError', desc: "QMP input member 'arguments' must be an object" } }],
      ['{"execute":"stop","foo":1,"id":8}', { id: 8, error: { class: 'GenericError', desc: "QMP input member 'foo' is unexpected" } }],
      ['{"exec-oob":"stop","id":9}', { id: 9, error: { class: 'GenericError', desc: "QMP input member 'exec-oob' is unexpected" } }],
      ['{"execute":"nope","id":10}', { id: 10, error: { class: 'CommandNotFound', desc: 'The command nope has not been found' } }],
    ];
    c.write(cases.map(([m]) => m + '\r\n').join(''));
    expect(await c.waitReplies(cases.length)).to.deep.equal(cases.map(([, r]) => r));
    expect(vm.calls).to.deep.equal([]);
  });

  it('reports an unexpected handler exception as GenericError and keeps serving', async () => {
    const c = await connect();
    expect(await c.execute('x-throw', undefined, 1)).to.deep.equal({ id: 1, error: { class: 'GenericError', desc: 'boom' } });
    expect(await c.execute('x-cycle', undefined, 2)).to.have.nested.property('error.class', 'GenericError');
    expect((await c.execute('query-kvm', undefined, 3)).return).to.deep.equal({ enabled: true, present: true });
  });

  it('sends STOP and RESUME to every negotiated client, and nothing to one that did not negotiate', async () => {
    const [a, b, quiet] = [await connect(), await connect(), await connect()];
    await a.execute('qmp_capabilities');
    await b.execute('qmp_capabilities');
    await a.execute('stop');
    await b.execute('cont');
    await a.waitFor(() => a.events.length >= 2);
    await b.waitFor(() => b.events.length >= 2);
    expect(a.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
    expect(b.events.map((e) => e.event)).to.deep.equal(['STOP', 'RESUME']);
    await quiet.execute('query-status');
    expect(quiet.events).to.deep.equal([]);
  });

  it('replies to quit first, then sends SHUTDOWN, then quits the VM', async () => {
    const c = await connect();
    await c.execute('qmp_capabilities');
    c.write('{"execute":"quit","id":"bye"}\r\n');
    await c.waitFor((m) => m.event === 'SHUTDOWN');
    const tail = c.received.slice(-2);
    expect(tail[0]).to.deep.equal({ return: {}, id: 'bye' });
    expect(tail[1]).to.include({ event: 'SHUTDOWN' }).and.to.have.deep.property('data', { guest: false, reason: 'host-qmp-quit' });
    await new Promise((r) => setTimeout(r, 20));
    expect(vm.calls).to.deep.equal(['quit']);
  });

  it('answers an over-limit message with GenericError, keeps the connection and other clients unaffected', async () => {
    await server.close();
    await start({ limits: { maxMessageBytes: 4096 } });
    const [big, other] = [await connect(), await connect()];
    big.write(JSON.stringify({ execute: 'query-name', arguments: { pad: 'x'.repeat(100000) }, id: 'big' }) + '\r\n');
    big.write('{"execute":"query-name","id":"next"}\r\n');
    const [err, next] = await big.waitReplies(2);
    expect(err).to.deep.equal({ error: { class: 'GenericError', desc: 'JSON token size limit exceeded' } });
    expect(next).to.deep.equal({ return: { name: 'guest0' }, id: 'next' });
    expect((await other.execute('query-name', undefined, 'o')).return).to.deep.equal({ name: 'guest0' });
  });

  it('still answers every command of a client that half-closes its side', async () => {
    const c = await connect();
    c.write('{"execute":"stop","id":1}{"execute":"query-status","id":2}');
    c.socket.end();
    const replies = await c.waitReplies(2);
    expect(replies.map((r) => r.id)).to.deep.equal([1, 2]);
  });

  it('disconnects a client that never reads, without disturbing the others', async () => {
    await server.close();
    await start({ maxOutputBytes: 64 * 1024 });
    const reader = await connect();
    const hog = await connect();
    hog.socket.pause();
    const cmd = '{"execute":"query-commands"}\r\n'.repeat(200);
    for (let i = 0; i < 20 && !hog.closed; i++) {
      hog.write(cmd);
      await new Promise((r) => setTimeout(r, 5));
    }
    await reader.execute('qmp_capabilities');
    expect((await reader.execute('query-status')).return).to.have.property('status');
    await new Promise((r) => setTimeout(r, 50));
    expect(server.sessionCount).to.equal(1);
  });
});
