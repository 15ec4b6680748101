// Bounded fuzzing of the QMP server: thousands of random and mutated messages, then correct answers must follow.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_COMMANDS } from '../../../qmp/commands/index.js';
import { JsonStream } from '../../../qmp/json-stream.js';
import { startQmp, type QmpServer } from '../../../qmp/server.js';
import { TestClient } from './client.js';
import { FakeVm } from './fake-vm.js';
import { mulberry32 } from '../../harness/prng.js';

/** mulberry32 as integers in [0, n) (the same sequence as its 32-bit output mod n). */
function prng(seed: number): (n: number) => number {
  const next = mulberry32(seed);
  return (n: number) => ((next() * 4294967296) % n) >>> 0;
}

const COMMAND_NAMES = BUILTIN_COMMANDS.map((c) => c.name);
const MAX_MESSAGE = 64 * 1024;

/** Builds one hostile (or occasionally valid) input. */
function makeInput(rnd: (n: number) => number): Uint8Array {
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)];
  const randomValue = (depth = 0): unknown => {
    switch (rnd(depth > 3 ? 5 : 7)) {
      case 0: return rnd(1000) - 500;
      case 1: return 'x'.repeat(rnd(20));
      case 2: return rnd(2) === 0;
      case 3: return null;
      case 4: return 1e300 * (rnd(3) - 1);
      case 5: return Array.from({ length: rnd(4) }, () => randomValue(depth + 1));
      default: return Object.fromEntries(Array.from({ length: rnd(4) }, () => [pick(['uri', 'enable', 'capabilities', 'command-line', 'downtime-limit', '__proto__', 'x']), randomValue(depth + 1)]));
    }
  };
  const valid = (): string => {
    const msg: Record<string, unknown> = { execute: pick(COMMAND_NAMES), id: rnd(100000) };
    if (rnd(2) === 0) msg.arguments = randomValue(4) ?? {};
    if (rnd(10) === 0) msg[pick(['exec-oob', 'extra', 'ID'])] = 1;
    return JSON.stringify(msg);
  };
  switch (rnd(8)) {
    case 0: // raw garbage, any byte value
      return Uint8Array.from({ length: 1 + rnd(200) }, () => rnd(256));
    case 1: { // a valid message cut short
      const s = valid();
      return Buffer.from(s.slice(0, rnd(s.length)));
    }
    case 2: { // deep nesting, sometimes closed, sometimes over the limit
      const n = 1 + rnd(3000);
      return Buffer.from('['.repeat(n) + (rnd(2) ? ']'.repeat(n) : '') + '\n');
    }
    case 3: { // huge strings, some over the per-message limit
      const len = rnd(2 * MAX_MESSAGE);
      return Buffer.from(JSON.stringify({ execute: 'query-name', arguments: { s: 'y'.repeat(len) }, id: 'huge' }));
    }
    case 4: { // valid envelope, random argument types
      return Buffer.from(valid());
    }
    case 5: { // byte-level mutations of a valid message
      const b = Buffer.from(valid());
      for (let k = 1 + rnd(4); k > 0; k--) b[rnd(b.length)] = rnd(256);
      return b;
    }
    case 6: // wrong top-level types
      return Buffer.from(pick(['42 ', '"str"', 'null ', '[]', '{}', '{"execute":null}', '{"execute":"stop","arguments":7}', '}', ']', ',:']));
    default: // separators and reset bytes between messages
      return Buffer.from(pick(['\r\n', '\n', ' ', '\t', '\u0000', '\u001b']));
  }
}

describe('qmp fuzz', function () {
  this.timeout(15000);
  let dir: string;
  let server: QmpServer;
  let vm: FakeVm;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsvirt-qmp-fuzz-'));
    vm = new FakeVm();
    server = await startQmp([`unix:${join(dir, 'qmp.sock')}`], vm, undefined, { limits: { maxMessageBytes: MAX_MESSAGE } });
  });

  afterEach(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('never throws from the splitter and always returns to a clean state after a reset byte', () => {
    const rnd = prng(1234);
    const stream = new JsonStream({ maxMessageBytes: MAX_MESSAGE });
    for (let i = 0; i < 3000; i++) {
      const input = makeInput(rnd);
      for (let off = 0; off < input.length; ) {
        const n = 1 + rnd(4096);
        stream.push(input.subarray(off, off + n));
        off += n;
      }
    }
    stream.push(Uint8Array.of(0x00));
    expect(stream.push(Buffer.from('{"execute":"query-status"}'))).to.deep.equal([
      { kind: 'value', value: { execute: 'query-status' } },
    ]);
  });

  it('survives 3000 hostile messages on one connection, answers well-formed, then serves that client and a fresh one', async () => {
    const rnd = prng(42);
    const victim = await TestClient.connect(server.addresses[0]);
    await victim.execute('qmp_capabilities');
    for (let i = 0; i < 3000; i++) {
      const input = makeInput(rnd);
      for (let off = 0; off < input.length; ) {
        const n = 1 + rnd(8192);
        victim.write(input.subarray(off, off + n));
        off += n;
      }
      if (i % 200 === 0) await new Promise((r) => setImmediate(r));
    }
    // Reset whatever half-message the fuzz left pending, as the QMP spec tells clients to.
    victim.write(Uint8Array.of(0x00, 0x0a));
    const reply = await victim.execute('query-status', undefined, 'after-fuzz', );
    expect(reply.return).to.have.property('singlestep', false);

    for (const m of victim.received) {
      if ('error' in m) {
        const e = m.error as { class: unknown; desc: unknown };
        expect(e.class).to.be.oneOf(['GenericError', 'CommandNotFound', 'KVMMissingCap']);
        expect(e.desc).to.be.a('string');
      } else {
        expect(m).to.satisfy((x: object) => 'return' in x || 'event' in x || 'QMP' in x);
      }
    }
    expect(victim.replies.length).to.be.greaterThan(1000);
    victim.close();

    const fresh = await TestClient.connect(server.addresses[0]);
    expect(await fresh.execute('query-name', undefined, 1)).to.deep.equal({ return: { name: vm.name }, id: 1 });
    expect(await fresh.execute('qmp_capabilities', undefined, 2)).to.deep.equal({ return: {}, id: 2 });
    fresh.close();
  });
});
