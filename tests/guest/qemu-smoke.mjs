// qemu-smoke.mjs: boots the test guest under QEMU (the reference VMM) and checks its serial protocol end to end.
// Usage: node tests/guest/qemu-smoke.mjs [--smp N] [--mem MiB] [--hb-ms N] [--qemu PATH]
// Exit code 0 when every check passed. Needs /dev/kvm and qemu-system-x86_64 (QEMU 7.2 is the reference).
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const elf = join(root, 'build/guest/tsvirt-test-guest.elf');

const opts = { smp: 2, mem: 256, hbMs: 100, qemu: 'qemu-system-x86_64' };
for (let i = 2; i < process.argv.length; i += 2) {
  const [k, v] = [process.argv[i], process.argv[i + 1]];
  if (k === '--smp') opts.smp = Number(v);
  else if (k === '--mem') opts.mem = Number(v);
  else if (k === '--hb-ms') opts.hbMs = Number(v);
  else if (k === '--qemu') opts.qemu = v;
  else throw new Error(`unknown option ${k}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let failures = 0;
function check(ok, what, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}`);
  if (!ok) failures++;
}

const running = new Set();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });

// One QEMU instance with its serial line on a unix socket; lines are kept with host arrival times.
class Guest {
  constructor(extraAppend, noReboot = true) {
    this.dir = mkdtempSync(join(tmpdir(), 'tsvirt-guest-'));
    this.sock = join(this.dir, 'serial.sock');
    this.lines = [];
    this.cursor = 0;
    this.partial = '';
    this.waiters = [];
    const args = [
      '-machine', 'q35,accel=kvm', '-m', String(opts.mem), '-smp', String(opts.smp),
      '-display', 'none', '-monitor', 'none', '-serial', `unix:${this.sock},server,nowait`,
      '-kernel', elf, '-append', `hb_ms=${opts.hbMs} console=ttyS0 ${extraAppend}`.trim(),
    ];
    if (noReboot) args.push('-no-reboot');
    this.proc = spawn(opts.qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(this.proc);
    this.proc.on('exit', () => running.delete(this.proc));
    this.stderr = '';
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    this.exited = new Promise((r) => this.proc.on('exit', (code, sig) => r({ code, sig, at: Date.now() })));
  }

  async open() {
    for (let i = 0; i < 100 && !existsSync(this.sock); i++) await sleep(50);
    this.conn = await new Promise((res, rej) => {
      const c = connect(this.sock, () => res(c));
      c.on('error', rej);
    });
    this.conn.on('error', () => {});
    this.conn.on('data', (d) => {
      const parts = (this.partial + d.toString('latin1')).split('\n');
      this.partial = parts.pop();
      for (const text of parts) this.lines.push({ text, at: Date.now() });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  send(cmd) { this.conn.write(`${cmd}\n`); }

  // Next line (after the cursor) matching re; the cursor moves past it.
  async expect(re, timeoutMs = 5000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      for (let i = this.cursor; i < this.lines.length; i++) {
        const m = re.exec(this.lines[i].text);
        if (m) { this.cursor = i + 1; return { m, line: this.lines[i], index: i }; }
      }
      const left = end - Date.now();
      if (left <= 0) return null;
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, left); });
    }
  }

  async close() {
    this.proc.kill('SIGKILL');
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Guest-clock rate of sweeps between two heartbeats, in MiB/s of pages dirtied.
function sweepRate(a, b, mib) {
  const ds = Number(b.m[3]) - Number(a.m[3]);
  const dt = Number(BigInt(b.m[2]) - BigInt(a.m[2])) / 1e9;
  return (ds * mib) / dt;
}

async function main() {
  execFileSync(join(here, 'build.sh'), { stdio: 'inherit' });

  const g = new Guest('');
  await g.open();
  const boot = await g.expect(/^TSVIRT-GUEST BOOT$/, 15000);
  check(!!boot, 'boot line');
  if (!boot) { console.log(g.stderr); await g.close(); process.exit(1); }
  const bootAt = boot.line.at;
  check(!!(await g.expect(/^CMDLINE hb_ms=/)), 'CMDLINE line');
  const mem = await g.expect(/^MEM ram=(\d+)$/);
  const e820 = g.lines.slice(boot.index, mem ? mem.index : 0).filter((l) => l.text.startsWith('E820 '));
  check(e820.length > 0 && e820.every((l) => /^E820 0x[0-9a-f]+ 0x[0-9a-f]+ \d+$/.test(l.text)), 'E820 lines', `${e820.length} entries`);
  check(!!mem && Math.abs(Number(mem.m[1]) - opts.mem * 1048576) < 4 * 1048576, 'MEM total close to -m', mem?.m[1]);
  const clock = await g.expect(/^CLOCK (kvmclock|tsc)$/);
  check(!!clock, 'CLOCK line', clock?.m[1]);
  const cpus = await g.expect(/^CPUS found=(\d+) started=(\d+)$/, 3000);
  check(!!cpus && Number(cpus.m[1]) === opts.smp && Number(cpus.m[2]) === opts.smp, 'all CPUs found and started', cpus?.line.text);
  const ready = await g.expect(/^READY$/);
  check(!!ready, 'READY', ready ? `${ready.line.at - bootAt} ms after BOOT (host)` : '');

  // Heartbeats: consecutive seq, guest-clock period close to hb_ms, and really idle between them.
  const hbs = [];
  for (let i = 0; i < 10; i++) hbs.push(await g.expect(/^HB seq=(\d+) t=(\d+)$/, 3 * opts.hbMs + 1000));
  const okHb = hbs.every(Boolean);
  check(okHb && hbs.every((h, i) => Number(h.m[1]) === i), 'heartbeat seq 0..9 consecutive');
  if (okHb) {
    const dts = hbs.slice(1).map((h, i) => Number(BigInt(h.m[2]) - BigInt(hbs[i].m[2])) / 1e6);
    const host = (hbs[9].line.at - hbs[0].line.at) / 9;
    check(dts.every((d) => Math.abs(d - opts.hbMs) < opts.hbMs * 0.1), 'guest period', `${Math.min(...dts).toFixed(2)}..${Math.max(...dts).toFixed(2)} ms`);
    check(Math.abs(host - opts.hbMs) < opts.hbMs * 0.2, 'host-observed period', `${host.toFixed(1)} ms`);
  }

  g.send('echo hello  world');
  check(!!(await g.expect(/^ECHO hello {2}world$/)), 'echo');
  g.send('frobnicate 1');
  check(!!(await g.expect(/^ERROR unknown command: frobnicate 1$/)), 'unknown command');
  g.send('cpus');
  check(!!(await g.expect(/^CPUS found=\d+ started=\d+$/)), 'cpus command');
  g.send('mem');
  check(!!(await g.expect(/^MEM ram=\d+$/)), 'mem command');
  g.send('check');
  check(!!(await g.expect(/^CHECK ERROR no working set$/)), 'check without working set');

  // Flat-out dirtier: rate from the sweeps counter on heartbeats.
  g.send('dirty 64 0');
  const d = await g.expect(/^DIRTY mib=64 rate=0 base=0x([0-9a-f]+)$/, 10000);
  check(!!d, 'dirty 64 0', d?.line.text);
  const h1 = await g.expect(/^HB seq=(\d+) t=(\d+) sweeps=(\d+)$/);
  await sleep(2000);
  g.cursor = g.lines.length;
  const h2 = await g.expect(/^HB seq=(\d+) t=(\d+) sweeps=(\d+)$/);
  if (h1 && h2) {
    const r = sweepRate(h1, h2, 64);
    console.log(`     flat-out dirtier: ${r.toFixed(0)} MiB/s (${(r * 1048576 / 1e9).toFixed(2)} GB/s) of 4 KiB pages`);
    check(r > 200, 'flat-out dirtier runs');
  }
  g.send('check');
  const c1 = await g.expect(/^CHECK (OK|FAIL).*$/, 10000);
  check(c1?.m[1] === 'OK', 'check while dirtying', c1?.line.text);
  g.send('stop');
  const st = await g.expect(/^STOPPED sweeps=(\d+)$/);
  check(!!st, 'stop', st?.line.text);
  g.send('check');
  const c2 = await g.expect(/^CHECK (OK|FAIL).*$/, 10000);
  check(c2?.m[1] === 'OK', 'check after stop', c2?.line.text);

  // Rated dirtier: 16 MiB at 100 MiB/s should give about 6.25 sweeps/s.
  g.send('dirty 16 100');
  check(!!(await g.expect(/^DIRTY mib=16 rate=100 /, 10000)), 'dirty 16 100');
  const r1 = await g.expect(/^HB seq=(\d+) t=(\d+) sweeps=(\d+)$/);
  await sleep(3000);
  g.cursor = g.lines.length;
  const r2 = await g.expect(/^HB seq=(\d+) t=(\d+) sweeps=(\d+)$/);
  if (r1 && r2) {
    const r = sweepRate(r1, r2, 16);
    check(Math.abs(r - 100) < 15, 'rated dirtier tracks 100 MiB/s', `${r.toFixed(1)} MiB/s`);
  }
  g.send('check');
  const c3 = await g.expect(/^CHECK (OK|FAIL).*$/, 10000);
  check(c3?.m[1] === 'OK', 'check at rate', c3?.line.text);

  // Heartbeats stayed on time while all of this ran.
  const all = g.lines.filter((l) => l.text.startsWith('HB ')).map((l) => /^HB seq=(\d+) t=(\d+)/.exec(l.text));
  const seqOk = all.every((m, i) => Number(m[1]) === i);
  const gaps = all.slice(1).map((m, i) => Number(BigInt(m[2]) - BigInt(all[i][2])) / 1e6);
  check(seqOk, 'heartbeat seq never skips', `${all.length} beats`);
  const worst = gaps.indexOf(Math.max(...gaps));
  check(gaps[worst] < opts.hbMs * 1.5, 'largest heartbeat gap', `${gaps[worst].toFixed(2)} ms before seq=${worst + 1}`);

  g.send('poweroff');
  check(!!(await g.expect(/^POWEROFF$/)), 'POWEROFF line');
  const ex = await Promise.race([g.exited, sleep(5000).then(() => null)]);
  check(!!ex && ex.code === 0, 'QEMU exits 0 on poweroff', ex ? `code=${ex.code}` : 'still running');
  await g.close();

  // reset with -no-reboot ends QEMU as well.
  const g2 = new Guest('dirty_mib=8 dirty_rate=0');
  await g2.open();
  check(!!(await g2.expect(/^READY$/, 15000)), 'second boot (cmdline dirty)');
  check(!!(await g2.expect(/^DIRTY mib=8 rate=0 /, 5000)), 'dirty from the command line');
  g2.send('reset');
  check(!!(await g2.expect(/^RESET$/)), 'RESET line');
  const ex2 = await Promise.race([g2.exited, sleep(5000).then(() => null)]);
  check(!!ex2 && ex2.code === 0, 'QEMU exits 0 on reset with -no-reboot', ex2 ? `code=${ex2.code}` : 'still running');
  await g2.close();

  console.log(failures ? `${failures} check(s) FAILED` : 'all checks passed');
  process.exit(failures ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(2); });
