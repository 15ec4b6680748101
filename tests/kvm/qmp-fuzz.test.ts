// A bounded, deterministic fuzz of the QMP server of a running VM over its real unix socket: a few thousand random and
// mutated messages on several connections (some closed abruptly, one that never reads), then the guest must still be
// beating with its sequence intact and a fresh client must get correct answers.
//
// Never sent: quit, system_reset, system_powerdown, migrate, or a stop that a later cont does not follow. There is
// exactly one stop, on a connection closed gracefully, with its cont later on the same connection; both are preceded
// by a NUL byte so that no earlier garbage can swallow them. (A second stop soon after a cont would hit the vCPU park
// race, see qmp-regressions.test.ts.)

import { expect } from 'chai';
import * as net from 'node:net';
import { VmFleet, type Vm } from '../harness/migration.js';
import { RawQmp, startQmpVm, type RawReply } from '../harness/qmp-raw.js';
import { requireKvm } from '../harness/skip.js';
import { mulberry32 } from '../harness/prng.js';

const SEED = 0x5eed0f2a;

const prng = mulberry32;

const MiB = 1024 * 1024;
const RUNNING = { status: 'running', singlestep: false, running: true };
const VERSION = { qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsvirt-0.1.0' };

/** Commands safe to send with any arguments: none of them stops, resets, powers down, migrates or quits the VM. */
const SAFE_COMMANDS = [
  'qmp_capabilities', 'query-version', 'query-commands', 'query-status', 'cont', 'query-cpus-fast', 'query-cpus',
  'query-hotpluggable-cpus', 'query-name', 'query-kvm', 'query-machines', 'query-target', 'query-events',
  'human-monitor-command', 'migrate_cancel', 'query-migrate', 'migrate-set-parameters', 'query-migrate-parameters',
  'migrate-set-capabilities', 'query-migrate-capabilities',
];
/** HMP lines that only read. Random HMP lines start with '~', which no HMP command does. */
const SAFE_HMP = ['info status', 'info cpus', 'info kvm', 'info name', 'info version', 'info', 'help', '?', 'info bogus', 'c', 'cont', ''];
const MEMBERS = ['downtime-limit', 'max-bandwidth', 'multifd-channels', 'xbzrle-cache-size', 'cpu-throttle-initial', 'max-cpu-throttle',
  'cpu-throttle-tailslow', 'multifd-compression', 'x-migration-timeout', 'capabilities', 'capability', 'state', 'enable', 'cpu-index',
  'command-line', 'uri', 'bogus', ''];
const CAPS = ['xbzrle', 'auto-converge', 'events', 'multifd', 'zero-copy-send', 'x-ignore-shared', 'compress', 'teleport', 'oob'];
/** The words a message must never contain (mutations are checked against them). */
const FORBIDDEN = /quit|stop|reset|powerdown|"migrate"|\\|"\s*[qQ]\s*"/;

class Gen {
  readonly rnd: () => number;
  constructor(seed: number) {
    this.rnd = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** A string that can never name a command or an HMP line: it starts with '~'. */
  str(): string {
    const n = this.int(this.chance(0.1) ? 300 : 12);
    let s = '~';
    for (let i = 0; i < n; i++) {
      const k = this.int(10);
      s += String.fromCharCode(k < 6 ? 0x20 + this.int(95) : k < 8 ? 0xa0 + this.int(0x2000) : k < 9 ? this.int(0x20) : 0xd800 + this.int(0x800));
    }
    return s.replace(/quit|stop|reset|powerdown|migrate/g, '~');
  }
  num(): number {
    return this.pick([0, -1, 1, 2 ** 31, 2 ** 53, 2 ** 64, -(2 ** 63), 1.5, 1e308, -0, 4096, 300, 99, 100, 255, 256, this.int(1e9) - 5e8, this.rnd()]);
  }
  value(depth = 0): unknown {
    const k = this.int(depth > 3 ? 5 : 8);
    switch (k) {
      case 0: return null;
      case 1: return this.chance(0.5);
      case 2: case 3: return this.num();
      case 4: return this.str();
      case 5: case 6: {
        const o: Record<string, unknown> = {};
        for (let i = this.int(4); i > 0; i--) o[this.chance(0.7) ? this.pick(MEMBERS) : this.str()] = this.value(depth + 1);
        return o;
      }
      default: return Array.from({ length: this.int(4) }, () => this.value(depth + 1));
    }
  }
  /** Arguments for a safe command: usually plausible, often wrong. */
  args(cmd: string): Record<string, unknown> | undefined {
    if (this.chance(0.25)) return undefined;
    if (this.chance(0.2)) return this.value(1) as Record<string, unknown>; // not necessarily an object
    const a: Record<string, unknown> = {};
    switch (cmd) {
      case 'human-monitor-command':
        if (this.chance(0.9)) a['command-line'] = this.chance(0.7) ? this.pick(SAFE_HMP) : this.str();
        if (this.chance(0.2)) a['cpu-index'] = this.pick([0, 1, -1, 7, '0', 1.5]);
        break;
      case 'migrate-set-parameters':
        for (let i = this.int(4); i > 0; i--) a[this.pick(MEMBERS.slice(0, 9))] = this.chance(0.6) ? this.num() : this.value(2);
        break;
      case 'migrate-set-capabilities':
        a.capabilities = this.chance(0.8)
          ? Array.from({ length: this.int(4) }, () => ({ capability: this.chance(0.9) ? this.pick(CAPS) : this.value(2), state: this.chance(0.9) ? this.chance(0.5) : this.value(2) }))
          : this.value(2);
        break;
      case 'qmp_capabilities':
        if (this.chance(0.5)) a.enable = this.chance(0.5) ? [] : [this.pick(CAPS)];
        break;
    }
    if (this.chance(0.15)) a[this.pick(MEMBERS)] = this.value(2);
    return a;
  }
  id(): unknown {
    return this.chance(0.5) ? undefined : this.value(2);
  }
  /** A well-formed request for a safe command (its `id`, if any, is random). */
  command(): Record<string, unknown> {
    const execute = this.pick(SAFE_COMMANDS);
    const m: Record<string, unknown> = { execute };
    const a = this.args(execute);
    if (a !== undefined) m.arguments = a;
    const id = this.id();
    if (id !== undefined) m.id = id;
    return m;
  }
  /** A valid request mutated at 1-3 bytes; undefined if the result could spell something forbidden. */
  mutated(): Buffer | undefined {
    const base = { execute: this.pick(SAFE_COMMANDS.filter((c) => c !== 'human-monitor-command' && c !== 'cont')), id: `m-${this.int(1e6)}` } as Record<string, unknown>;
    if (this.chance(0.5)) base.arguments = this.args(base.execute as string) ?? {};
    let b = Buffer.from(JSON.stringify(base), 'utf8');
    for (let n = 1 + this.int(3); n > 0 && b.length > 0; n--) {
      const i = this.int(b.length);
      switch (this.int(6)) {
        case 0: b[i] ^= 1 << this.int(8); break;
        case 1: b[i] = this.int(256); break;
        case 2: b = Buffer.concat([b.subarray(0, i), this.bytes(1), b.subarray(i)]); break;
        case 3: b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]); break;
        case 4: { const j = Math.min(b.length, i + 1 + this.int(8)); b = Buffer.concat([b.subarray(0, j), b.subarray(i, j), b.subarray(j)]); break; }
        default: b = b.subarray(0, i);
      }
    }
    return FORBIDDEN.test(b.toString('latin1')) ? undefined : b;
  }
  /** One fuzz message of a random kind. */
  message(): Buffer {
    for (;;) {
      const k = this.int(100);
      if (k < 30) return Buffer.from(JSON.stringify(this.command()), 'utf8');
      if (k < 45) {
        const m = this.mutated();
        if (m) return m;
        continue;
      }
      if (k < 55) {
        const g = this.bytes(1 + this.int(this.chance(0.1) ? 2000 : 60));
        for (let i = 0; i < g.length; i++) if (g[i] === 0x5c) g[i] = 0x2f; // no backslash escapes
        if (FORBIDDEN.test(g.toString('latin1'))) continue;
        return g;
      }
      if (k < 63) {
        // Truncated JSON: a valid request cut short (an unclosed value swallows what follows until a reset byte).
        const s = Buffer.from(JSON.stringify(this.command()), 'utf8');
        return s.subarray(0, 1 + this.int(s.length - 1));
      }
      if (k < 68) {
        // Deep nesting: under and over the 1024 limit, in arguments, in the id, and bare.
        const d = this.pick([10, 500, 1000, 1021, 1030, 5000]);
        const nest = '['.repeat(d) + ']'.repeat(d);
        switch (this.int(3)) {
          case 0: return Buffer.from(`{"execute":"query-status","arguments":{"a":${nest}}}`);
          case 1: return Buffer.from(`{"execute":"query-target","id":${nest}}`);
          default: return Buffer.from(this.chance(0.5) ? nest : '{"a":'.repeat(d) + '1' + '}'.repeat(d));
        }
      }
      if (k < 78) {
        // Wrong types in the envelope and the arguments.
        return Buffer.from(JSON.stringify(this.pick<unknown>([
          { execute: this.value(1) }, { execute: this.pick(SAFE_COMMANDS), arguments: this.pick([[], 'x', 1, null, true]) },
          { arguments: {} }, { id: this.value(1) }, { execute: 'query-status', 'exec-oob': 'query-status' },
          { execute: 'query-name', [this.str()]: this.value(1) }, this.value(1), [this.command()],
        ])), 'utf8');
      }
      if (k < 86) {
        // Unknown commands.
        const name = this.chance(0.5) ? this.str() : `query-${this.pick(['nope', 'block', 'Status', 'status '])}`;
        return Buffer.from(JSON.stringify({ execute: name, arguments: this.value(1), id: this.id() }), 'utf8');
      }
      if (k < 92) {
        // Invalid UTF-8, control bytes and stray bytes inside otherwise plausible messages.
        const bad = this.pick([Buffer.from([0xc3]), Buffer.from([0xff]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0x80, 0x80]), Buffer.from([0x01]), Buffer.from('\n'), Buffer.from('@')]);
        return Buffer.concat([Buffer.from('{"execute":"query-kvm","id":"u'), bad, Buffer.from('"}')]);
      }
      // Big but legal: an id of up to 1 MiB, echoed back.
      return Buffer.from(JSON.stringify({ execute: 'query-target', id: 'B'.repeat(this.pick([1000, 64 * 1024, MiB])) }));
    }
  }
}

/** A connection with a script of chunks; `tracked` requests (each behind a NUL byte) must be answered in order. */
interface Plan {
  chunks: Buffer[];
  tracked: { id: string; execute: string }[];
  /** Destroy the socket after this many chunks (undefined: end it gracefully and read everything). */
  abortAfter?: number;
}

function plan(g: Gen, conn: number, messages: number, opts: { stopCont?: boolean; abort?: boolean; huge?: number }): Plan {
  const chunks: Buffer[] = [];
  const tracked: Plan['tracked'] = [];
  let pending: Buffer[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    const all = Buffer.concat(pending);
    pending = [];
    // Sometimes split the batch at a random byte, so messages straddle writes.
    if (all.length > 1 && g.chance(0.3)) {
      const cut = 1 + g.int(all.length - 1);
      chunks.push(all.subarray(0, cut), all.subarray(cut));
    } else {
      chunks.push(all);
    }
  };
  const track = (execute: string, args?: unknown) => {
    const id = `t-${conn}-${tracked.length}`;
    tracked.push({ id, execute });
    const m: Record<string, unknown> = { execute, id };
    if (args !== undefined) m.arguments = args;
    pending.push(Buffer.from('\x00' + JSON.stringify(m)));
  };
  const hugeAt = new Set(Array.from({ length: opts.huge ?? 0 }, () => g.int(messages)));
  const stopAt = opts.stopCont ? Math.floor(messages / 4) : -1;
  const contAt = opts.stopCont ? Math.floor(messages / 2) : -1;
  for (let i = 0; i < messages; i++) {
    if (i === stopAt) track('stop');
    if (i === contAt) track('cont');
    if (hugeAt.has(i)) {
      flush();
      // 20 MiB, over the 16 MiB limit: a string id, a bare number, and a string that never ends before a newline.
      const body = Buffer.alloc(20 * MiB, g.pick([0x41, 0x31]));
      const kind = g.int(3);
      chunks.push(kind === 0 ? Buffer.concat([Buffer.from('{"execute":"query-status","id":"'), body, Buffer.from('"}')])
        : kind === 1 ? Buffer.concat([Buffer.from(' '), Buffer.alloc(20 * MiB, 0x31), Buffer.from(' ')])
        : Buffer.concat([Buffer.from('{"execute":"query-status","arguments":{"x":"'), body, Buffer.from('\n')]));
    }
    if (g.chance(0.08)) track(g.pick(['query-version', 'query-status', 'query-kvm']));
    pending.push(g.message());
    if (g.chance(0.25)) flush();
  }
  track('query-version');
  flush();
  return { chunks, tracked, abortAfter: opts.abort ? 1 + g.int(chunks.length - 1) : undefined };
}

/** Resolves when `p` settles or after `ms`, whichever is first, without leaving a timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
}

async function runPlan(vm: Vm, p: Plan, conns: RawQmp[]): Promise<RawQmp> {
  const c = await RawQmp.connect(vm.qmpPath);
  conns.push(c);
  for (let i = 0; i < p.chunks.length; i++) {
    if (p.abortAfter !== undefined && i === p.abortAfter) {
      // Half a chunk, then gone.
      c.socket.write(p.chunks[i].subarray(0, Math.ceil(p.chunks[i].length / 2)));
      c.destroy();
      return c;
    }
    await c.write(p.chunks[i]).catch(() => {});
    if (i % 8 === 0) await new Promise((r) => setImmediate(r));
  }
  if (p.abortAfter === undefined) {
    c.end();
    await within(c.closed, 20000);
  }
  return c;
}

describe('QMP fuzz against a running VM', function () {
  this.timeout(60000);
  before(requireKvm);
  let fleet: VmFleet;
  const conns: RawQmp[] = [];
  const sockets: net.Socket[] = [];
  beforeEach(() => {
    fleet = new VmFleet();
  });
  afterEach(async () => {
    for (const c of conns.splice(0)) c.destroy();
    for (const s of sockets.splice(0)) s.destroy();
    await fleet.cleanup();
  });

  it(`survives a few thousand random and mutated messages on several connections (seed ${SEED.toString(16)}); the guest keeps beating`, async () => {
    const started = performance.now();
    const vm = await startQmpVm(fleet, [], { smp: '2' });
    await vm.proc.waitFor(/HB seq=2 /);
    const g = new Gen(SEED);
    const plans: Plan[] = [
      plan(g, 0, 500, { stopCont: true }),
      plan(g, 1, 500, { huge: 1 }),
      plan(g, 2, 500, {}),
      plan(g, 3, 400, { huge: 1 }),
      plan(g, 4, 400, {}),
      plan(g, 5, 300, { abort: true }),
      plan(g, 6, 300, { abort: true, huge: 1 }),
      plan(g, 7, 300, { abort: true }),
    ];
    const total = plans.reduce((n, p) => n + p.tracked.length, 0);

    // A client that never reads while asking for 40 MiB of replies: the server must drop it, and only it.
    const flooder = net.connect(vm.qmpPath);
    sockets.push(flooder);
    flooder.on('error', () => {});
    const flooderClosed = new Promise<void>((r) => flooder.once('close', () => r()));
    await new Promise<void>((r) => flooder.once('connect', () => r()));
    flooder.pause();
    const big = JSON.stringify({ execute: 'query-target', id: 'F'.repeat(MiB) });
    for (let i = 0; i < 40; i++) flooder.write(big);

    const results = await Promise.all(plans.map((p) => runPlan(vm, p, conns)));
    await within(flooderClosed, 10000);
    expect(flooder.destroyed || flooder.readableEnded, 'the server disconnected the client that did not read').to.equal(true);

    // Graceful connections: every line well-formed, every tracked request answered once, in order, correctly.
    let answered = 0;
    results.forEach((c, i) => {
      const p = plans[i];
      expect(c.wireErrors, `connection ${i}`).to.deep.equal([]);
      if (p.abortAfter !== undefined) return;
      const byId = new Map(p.tracked.map((t) => [t.id, t.execute]));
      const got = c.replies.filter((r): r is RawReply & { id: string } => typeof r.id === 'string' && byId.has(r.id));
      expect(got.map((r) => r.id), `tracked replies on connection ${i}`).to.deep.equal(p.tracked.map((t) => t.id));
      for (const r of got) {
        const execute = byId.get(r.id);
        if (execute === 'query-version') expect(r.return, r.id).to.deep.equal(VERSION);
        else if (execute === 'query-kvm') expect(r.return, r.id).to.deep.equal({ enabled: true, present: true });
        else if (execute === 'query-status') expect(r.return?.status, r.id).to.be.oneOf(['running', 'paused']);
        else expect(r, r.id).to.deep.equal({ return: {}, id: r.id });
        answered++;
      }
      // Errors are well-formed QMP errors.
      for (const r of c.replies) {
        if (r.error) {
          expect(['GenericError', 'CommandNotFound']).to.include(r.error.class);
          expect(r.error.desc).to.be.a('string').and.not.equal('');
        } else {
          expect(r).to.have.property('return');
        }
      }
    });
    expect(answered).to.be.greaterThan(100);
    const limitErrors = results.flatMap((c) => c.replies).filter((r) => r.error?.desc === 'JSON token size limit exceeded').length;
    const nestErrors = results.flatMap((c) => c.replies).filter((r) => r.error?.desc === 'JSON nesting depth limit exceeded').length;
    expect(limitErrors, 'over-limit messages refused').to.be.greaterThan(0);
    expect(nestErrors, 'over-deep messages refused').to.be.greaterThan(0);

    // The VM: running, beating, sequence intact across everything (including the one pause).
    const fresh = await RawQmp.connect(vm.qmpPath);
    conns.push(fresh);
    expect(await fresh.cmd('query-status', undefined, 1)).to.deep.equal({ return: RUNNING, id: 1 });
    expect(await fresh.cmd('query-version', undefined, 2)).to.deep.equal({ return: VERSION, id: 2 });
    expect(vm.proc.running).to.equal(true);
    const last = vm.beats.at(-1)!.seq;
    await vm.proc.waitFor(new RegExp(`HB seq=${last + 3} `), 3000);
    vm.beats.forEach((b, i) => expect(b.seq, `heartbeat #${i}`).to.equal(vm.beats[0].seq + i));
    expect(vm.beats[0].seq).to.be.at.most(2);
    expect(vm.proc.output.split('TSVIRT-GUEST BOOT').length - 1, 'the guest never rebooted').to.equal(1);
    // The only run-state events are the one stop and whatever cont resumed it; nothing reset, powered down or shut down.
    const names = vm.qmp.events.map((e) => e.event);
    expect(names.filter((n) => n !== 'STOP' && n !== 'RESUME')).to.deep.equal([]);
    expect(names).to.deep.equal(['STOP', 'RESUME']);
    // No handler failed with an untyped exception (that would be a bug); the flooder was logged.
    expect(vm.proc.stderr).to.not.match(/failed unexpectedly|failed to handle|cannot be encoded/);
    expect(vm.proc.stderr).to.match(/not reading its output/);
    const elapsed = performance.now() - started;
    console.log(`      fuzz: ${plans.reduce((n, p) => n + p.chunks.length, 0)} writes, ${total} tracked requests, ` +
      `${results.reduce((n, c) => n + c.replies.length, 0)} replies, ${Math.round(elapsed)} ms`);
    expect(elapsed).to.be.below(30000);
  });
});
