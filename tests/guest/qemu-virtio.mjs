// qemu-virtio.mjs: boots the test guest under QEMU with virtio-blk and virtio-net devices and checks the PCI/virtio protocol end to end.
// Usage: node tests/guest/qemu-virtio.mjs [--qemu PATH] [--no-net] [--bench-mib N] [--udp-mib N]
// Disk checks need /dev/kvm and qemu-system-x86_64 (7.2 is the reference). Network checks also need root
// and iproute2: they run QEMU in a private network namespace "tsvg" (tap0, 10.0.2.2/24; guest 10.0.2.15)
// that is always deleted afterwards. Exit code 0 when every check passed.
// Internal modes (run inside the namespace by the checks): --udp-client IP PORT MIB, --arp-watch IFACE MS.
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, readFileSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const elf = join(root, 'build/guest/tsvirt-test-guest.elf');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------- the sector pattern (README.md "Disk pattern") ----------------
const MASK64 = (1n << 64n) - 1n;
function patternSector(seed, sector) {
  const b = Buffer.alloc(512);
  const base = (BigInt(seed) * 0x100000001n) & MASK64;
  for (let i = 0; i < 64; i++) b.writeBigUInt64LE(base ^ ((BigInt(sector) * 64n + BigInt(i)) & MASK64), i * 8);
  return b;
}
// First sector in [first, first+count) of the image file not holding the pattern, or -1.
function verifyImage(path, first, count, seed) {
  const img = readFileSync(path);
  for (let s = first; s < first + count; s++) {
    if (!img.subarray(s * 512, s * 512 + 512).equals(patternSector(seed, s))) return s;
  }
  return -1;
}

// ---------------- internal mode: UDP echo client ----------------
// Sends MIB MiB in 1400-byte datagrams (sequence number + pattern), keeps a window in flight,
// retransmits after a timeout, checks that every echo is byte-identical. Prints one JSON line.
async function udpClient(ip, port, mib) {
  const SIZE = 1400, WINDOW = 64, total = Math.ceil((mib * 1048576) / SIZE);
  const sock = createSocket('udp4');
  await new Promise((r) => sock.bind(0, r));
  const payload = (seq) => {
    const b = Buffer.alloc(SIZE);
    b.writeUInt32LE(seq, 0);
    for (let i = 4; i < SIZE; i++) b[i] = (seq * 7 + i) & 0xff;
    return b;
  };
  const sentAt = new Map();
  let next = 0, done = 0, bad = 0, retrans = 0;
  const received = new Uint8Array(total);
  const t0 = process.hrtime.bigint();
  const finished = new Promise((res) => {
    sock.on('message', (msg) => {
      const seq = msg.length >= 4 ? msg.readUInt32LE(0) : -1;
      if (seq < 0 || seq >= total) { bad++; return; }
      if (!msg.equals(payload(seq))) { bad++; return; }
      if (received[seq]) return;
      received[seq] = 1;
      sentAt.delete(seq);
      done++;
      pump();
      if (done === total) res();
    });
  });
  function pump() {
    while (next < total && sentAt.size < WINDOW) {
      sentAt.set(next, Date.now());
      sock.send(payload(next), port, ip);
      next++;
    }
  }
  const timer = setInterval(() => {
    const now = Date.now();
    for (const [seq, at] of sentAt) {
      if (now - at > 200) { sentAt.set(seq, now); retrans++; sock.send(payload(seq), port, ip); }
    }
  }, 50);
  pump();
  const timeout = sleep(120000).then(() => 'timeout');
  const r = await Promise.race([finished, timeout]);
  clearInterval(timer);
  const ns = Number(process.hrtime.bigint() - t0);
  sock.close();
  console.log(JSON.stringify({ ok: r !== 'timeout' && bad === 0, total, done, bad, retrans, seconds: ns / 1e9, mibps: (done * SIZE) / 1048576 / (ns / 1e9) }));
  process.exit(0);
}

// ---------------- checks ----------------
const opts = { qemu: 'qemu-system-x86_64', net: true, benchMib: 64, udpMib: 10 };
let failures = 0;
function check(ok, what, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}`);
  if (!ok) failures++;
}

const running = new Set();
let netnsMade = false;
function cleanup() {
  for (const p of running) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  if (netnsMade) { spawnSync('ip', ['netns', 'del', 'tsvg']); netnsMade = false; }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup(); process.exit(130); });

class Guest {
  constructor({ append = '', devices = [], netns = null, qmp = false }) {
    this.dir = mkdtempSync(join(tmpdir(), 'tsvirt-virtio-'));
    this.sock = join(this.dir, 'serial.sock');
    this.qmpSock = join(this.dir, 'qmp.sock');
    this.lines = [];
    this.cursor = 0;
    this.partial = '';
    this.waiters = [];
    const args = [
      '-machine', 'q35,accel=kvm', '-m', '256', '-smp', '1', '-display', 'none', '-monitor', 'none',
      '-serial', `unix:${this.sock},server,nowait`, '-no-reboot', '-kernel', elf, '-append', `hb_ms=100 ${append}`.trim(),
      ...(qmp ? ['-qmp', `unix:${this.qmpSock},server,nowait`] : []),
      ...devices,
    ];
    const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, opts.qemu, ...args]] : [opts.qemu, args];
    this.proc = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(this.proc);
    this.stderr = '';
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    this.exited = new Promise((r) => this.proc.on('exit', (code, sig) => { running.delete(this.proc); r({ code, sig }); }));
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

  async cmd(line, re, timeoutMs = 10000) {
    this.send(line);
    const r = await this.expect(re, timeoutMs);
    return r;
  }

  async qmp(commands) {
    for (let i = 0; i < 100 && !existsSync(this.qmpSock); i++) await sleep(50);
    const c = await new Promise((res, rej) => { const s = connect(this.qmpSock, () => res(s)); s.on('error', rej); });
    let buf = '';
    const replies = [];
    c.on('data', (d) => { buf += d; });
    for (const cmd of [{ execute: 'qmp_capabilities' }, ...commands]) {
      c.write(`${JSON.stringify(cmd)}\n`);
      const want = replies.length + 1;
      for (let i = 0; i < 100; i++) {
        const objs = buf.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)).filter((o) => 'return' in o || 'error' in o);
        if (objs.length >= want) { replies.push(objs[want - 1]); break; }
        await sleep(20);
      }
    }
    c.end();
    return replies;
  }

  heartbeatGaps() {
    const all = this.lines.filter((l) => l.text.startsWith('HB ')).map((l) => /^HB seq=(\d+) t=(\d+)/.exec(l.text));
    const seqOk = all.every((m, i) => Number(m[1]) === i);
    const gaps = all.slice(1).map((m, i) => Number(BigInt(m[2]) - BigInt(all[i][2])) / 1e6);
    const worst = gaps.length ? Math.max(...gaps) : 0;
    return { n: all.length, seqOk, worst, at: gaps.indexOf(worst) + 1 };
  }

  async close() {
    this.proc.kill('SIGKILL');
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }

  async poweroff() {
    this.send('poweroff');
    const ex = await Promise.race([this.exited, sleep(5000).then(() => null)]);
    return !!ex && ex.code === 0;
  }
}

// Boot lines between CPUS and READY.
async function bootReport(g) {
  const cpus = await g.expect(/^CPUS found=\d+ started=\d+$/, 15000);
  const ready = await g.expect(/^READY$/, 15000);
  if (!cpus || !ready) return null;
  return g.lines.slice(cpus.index + 1, ready.index).map((l) => l.text);
}

function image(dir, name, mib) {
  const p = join(dir, name);
  closeSync(openSync(p, 'w'));
  execFileSync('truncate', ['-s', `${mib}M`, p]);
  return p;
}

async function diskChecks(work) {
  // One disk, blktest from the command line, then the serial commands.
  const d0 = image(work, 'd0.img', 64);
  const g = new Guest({
    append: 'blktest=0:128:7',
    devices: ['-drive', `file=${d0},if=none,id=d0,format=raw`, '-device', 'virtio-blk-pci,drive=d0,serial=DISK0'],
  });
  await g.open();
  const boot = await bootReport(g);
  check(!!boot, 'boot to READY with a virtio-blk disk');
  if (!boot) { console.log(g.stderr); await g.close(); return; }
  const pci = boot.filter((l) => l.startsWith('PCI '));
  check(pci.length > 0 && pci.every((l) => /^PCI 00:[0-9a-f]{2}\.[0-7] [0-9a-f]{4}:[0-9a-f]{4} class=[0-9a-f]{6}$/.test(l)), 'PCI lines', `${pci.length} functions`);
  check(pci.some((l) => / 1af4:10(01|42) class=010000$/.test(l)), 'virtio-blk function listed');
  const vline = boot.find((l) => l.startsWith('VIRTIO '));
  check(/^VIRTIO 00:[0-9a-f]{2}\.[0-7] blk irq=msix features=0x[0-9a-f]+ queues=1 irqs=\d+$/.test(vline ?? ''), 'VIRTIO line, MSI-X', vline);
  const bl = boot.find((l) => l.startsWith('BLK '));
  check(bl === 'BLK 0 capacity=131072 ro=0 serial=DISK0', 'BLK line', bl);
  for (const what of ['BLKWRITE OK', 'BLKFLUSH OK', 'BLKREAD OK']) {
    check(!!(await g.expect(new RegExp(`^${what}$`), 10000)), `blktest: ${what}`);
  }
  let r = await g.cmd('blkwrite 0 1000 300 42', /^BLKWRITE (.*)$/);
  check(r?.m[1] === 'OK', 'blkwrite 0 1000 300 42', r?.line.text);
  r = await g.cmd('blkflush 0', /^BLKFLUSH (.*)$/);
  check(r?.m[1] === 'OK', 'blkflush 0', r?.line.text);
  r = await g.cmd('blkread 0 1000 300 42', /^BLKREAD (.*)$/);
  check(r?.m[1] === 'OK', 'blkread 0 1000 300 42', r?.line.text);
  r = await g.cmd('blkread 0 1000 300 43', /^BLKREAD (.*)$/);
  check(r?.m[1] === 'MISMATCH sector=1000', 'blkread with the wrong seed', r?.line.text);
  r = await g.cmd('blkread 0 1200 10 42', /^BLKREAD (.*)$/);
  check(r?.m[1] === 'OK', 'blkread of a sub-range', r?.line.text);
  r = await g.cmd('blkread 0 1295 10 42', /^BLKREAD (.*)$/);
  check(r?.m[1] === 'MISMATCH sector=1300', 'blkread across the end of the written range', r?.line.text);
  r = await g.cmd('blkread 0 131070 4 1', /^BLKREAD (.*)$/);
  check(/^ERROR status=\d+$/.test(r?.m[1] ?? ''), 'blkread past the end of the disk fails', r?.line.text);
  r = await g.cmd('blkid 0', /^BLKID (.*)$/);
  check(r?.m[1] === 'DISK0', 'blkid 0', r?.line.text);
  r = await g.cmd('blkid 1', /^BLKID (.*)$/);
  check(r?.m[1] === 'ERROR no disk', 'blkid of a missing disk', r?.line.text);
  r = await g.cmd('blkwrite 0 x 1 1', /^ERROR bad arguments: (.*)$/);
  check(!!r, 'bad arguments');
  for (const [dir, depth] of [['write', ''], ['read', ''], ['write', ' 1'], ['read', ' 1']]) {
    r = await g.cmd(`blkbench 0 ${opts.benchMib} ${dir}${depth}`, /^BLKBENCH (.*)$/, 120000);
    const m = /^MiB=(\d+) ns=(\d+)$/.exec(r?.m[1] ?? '');
    check(!!m, `blkbench 0 ${opts.benchMib} ${dir}${depth}`, r?.line.text);
    if (m) console.log(`     ${dir}: ${(Number(m[1]) / (Number(m[2]) / 1e9)).toFixed(1)} MiB/s (guest clock), 64 KiB requests, depth ${depth.trim() || 8}`);
  }
  r = await g.cmd('blkbench 0 1 read 9', /^ERROR bad arguments: (.*)$/);
  check(!!r, 'blkbench depth out of range');
  // The bench overwrote sectors from 0 on: rewrite the checked ranges afterwards.
  r = await g.cmd('blkwrite 0 0 128 7', /^BLKWRITE (.*)$/);
  check(r?.m[1] === 'OK', 'rewrite sectors 0..127 after the bench');
  r = await g.cmd('blkwrite 0 1000 300 42', /^BLKWRITE (.*)$/);
  r = await g.cmd('blkflush 0', /^BLKFLUSH (.*)$/);
  r = await g.cmd('virtio', /^VIRTIO \S+ blk .* irqs=(\d+)$/);
  check(Number(r?.m[1]) > 0, 'MSI-X interrupts were taken', r?.line.text);
  const hb = g.heartbeatGaps();
  // Heavy host I/O can starve the vCPU thread for a while here (nested KVM, 2 CPUs): what is checked
  // is that the guest never stops beating, not host scheduling.
  check(hb.seqOk && hb.worst < 300, 'heartbeats during disk I/O', `${hb.n} beats, largest gap ${hb.worst.toFixed(1)} ms before seq=${hb.at}`);
  check(await g.poweroff(), 'poweroff');
  await g.close();
  check(verifyImage(d0, 0, 128, 7) === -1, 'image file holds the pattern (sectors 0..127, seed 7)');
  check(verifyImage(d0, 1000, 300, 42) === -1, 'image file holds the pattern (sectors 1000..1299, seed 42)');
  check(verifyImage(d0, 1300, 1, 42) === 1300, 'and not beyond');

  // Two disks at once, one blktest each.
  const a = image(work, 'a.img', 16), b = image(work, 'b.img', 32);
  // Also the fallbacks: virtio_event_idx=0 (plain flags), and the second disk without MSI-X (polling).
  const g2 = new Guest({
    append: 'blktest=0:64:1 blktest=1:96:2 virtio_event_idx=0',
    devices: ['-drive', `file=${a},if=none,id=a,format=raw`, '-device', 'virtio-blk-pci,drive=a,serial=AAA',
      '-drive', `file=${b},if=none,id=b,format=raw`, '-device', 'virtio-blk-pci,drive=b,vectors=0'],
  });
  await g2.open();
  const boot2 = await bootReport(g2);
  const vl2 = (boot2 ?? []).filter((l) => l.startsWith('VIRTIO '));
  const noEvIdx = vl2.every((l) => { const f = /features=0x([0-9a-f]+)/.exec(l); return f && !(BigInt(`0x${f[1]}`) & (1n << 29n)); });
  check(vl2.length === 2 && noEvIdx && / irq=msix /.test(vl2[0]) && / irq=poll /.test(vl2[1]), 'virtio_event_idx=0 and vectors=0: no EVENT_IDX, polling', vl2.join(' | '));
  const blks = (boot2 ?? []).filter((l) => l.startsWith('BLK '));
  check(blks[0] === 'BLK 0 capacity=32768 ro=0 serial=AAA' && blks[1] === 'BLK 1 capacity=65536 ro=0 serial=-', 'two BLK lines', blks.join(' | '));
  let oks = 0;
  for (let i = 0; i < 6; i++) if (await g2.expect(/^BLK(WRITE|FLUSH|READ) OK$/, 10000)) oks++;
  check(oks === 6, 'two blktests', `${oks}/6 OK lines`);
  check(await g2.poweroff(), 'poweroff');
  await g2.close();
  check(verifyImage(a, 0, 64, 1) === -1 && verifyImage(b, 0, 96, 2) === -1, 'both images hold their patterns');

  // Read-only disk: writes fail, reads work.
  const ro = image(work, 'ro.img', 8);
  const g3 = new Guest({ devices: ['-drive', `file=${ro},if=none,id=r,format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=r,serial=RO'] });
  await g3.open();
  const boot3 = await bootReport(g3);
  const rl = (boot3 ?? []).find((l) => l.startsWith('BLK '));
  check(rl === 'BLK 0 capacity=16384 ro=1 serial=RO', 'read-only BLK line', rl);
  r = await g3.cmd('blkwrite 0 0 8 5', /^BLKWRITE (.*)$/);
  check(/^ERROR status=\d+$/.test(r?.m[1] ?? ''), 'blkwrite to a read-only disk fails', r?.line.text);
  r = await g3.cmd('blkread 0 0 8 0', /^BLKREAD (.*)$/);
  check(r?.m[1] === 'MISMATCH sector=0', 'blkread of a read-only (zero) disk', r?.line.text);
  await g3.close();
}

// Runs a command without blocking the event loop (the guest's serial output must keep draining,
// or the guest waits on its UART).
function run(args, timeoutMs = 180000) {
  return new Promise((res) => {
    const p = spawn(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(p);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => { out += String(e); });
    p.on('close', (code) => { clearTimeout(t); running.delete(p); res({ code, out }); });
  });
}
function sh(args) {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', timeout: 10000 });
  return { code: r.status, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

async function netChecks() {
  if (process.getuid?.() !== 0 || sh(['ip', '-V']).code !== 0) {
    console.log('skip network checks (need root and iproute2)');
    return;
  }
  spawnSync('ip', ['netns', 'del', 'tsvg']);
  for (const c of [['netns', 'add', 'tsvg'], ['-n', 'tsvg', 'tuntap', 'add', 'tap0', 'mode', 'tap'],
    ['-n', 'tsvg', 'addr', 'add', '10.0.2.2/24', 'dev', 'tap0'], ['-n', 'tsvg', 'link', 'set', 'tap0', 'up'],
    ['-n', 'tsvg', 'link', 'set', 'lo', 'up']]) {
    const r = sh(['ip', ...c]);
    if (c[1] === 'add' && c[0] === 'netns') netnsMade = r.code === 0;
    if (r.code !== 0) { check(false, `ip ${c.join(' ')}`, r.out.trim()); return; }
  }
  try {
    await netGuest({ full: true });
    // Fallbacks: no EVENT_IDX, no MSI-X (the guest polls every 1 ms).
    await netGuest({ full: false, append: 'virtio_event_idx=0', vectors: 0 });
  } finally {
    cleanup();
  }
}

async function netGuest({ full, append = '', vectors = null }) {
  const dev = `virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56${vectors === null ? '' : `,vectors=${vectors}`}`;
  const what = full ? '' : ` [${append} vectors=${vectors}]`;
  const g = new Guest({
    netns: 'tsvg', qmp: true, append,
    devices: ['-netdev', 'tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off', '-device', dev],
  });
  try {
    await g.open();
    const boot = await bootReport(g);
    check(!!boot, `boot to READY with virtio-net${what}`);
    if (!boot) { console.log(g.stderr); return; }
    const vline = boot.find((l) => l.startsWith('VIRTIO '));
    const irqMode = vectors === 0 ? 'poll' : 'msix';
    check(new RegExp(`^VIRTIO \\S+ net irq=${irqMode} features=0x[0-9a-f]+ queues=3 irqs=\\d+$`).test(vline ?? ''), `VIRTIO line, ${irqMode}, control queue`, vline);
    const nl = boot.find((l) => l.startsWith('NET 0 '));
    check(nl === 'NET 0 mac=52:54:00:12:34:56 link=up', 'NET line', nl);
    check(boot.includes('NET ip=10.0.2.15'), 'NET ip line');
    check(!!(await g.expect(/^HB seq=0 /, 3000)), 'heartbeats start');

    const ping = await run(['ip', 'netns', 'exec', 'tsvg', 'ping', '-c', '5', '-i', '0.2', '-W', '2', '10.0.2.15']);
    const pm = /(\d+) received/.exec(ping.out);
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.out);
    check(ping.code === 0 && pm?.[1] === '5', 'ping -c 5 10.0.2.15', `${pm?.[1] ?? 0}/5 replies, avg ${rtt?.[1] ?? '?'} ms`);
    if (full) {
      const flood = await run(['ip', 'netns', 'exec', 'tsvg', 'ping', '-c', '200', '-i', '0.002', '-s', '1400', '-W', '2', '10.0.2.15']);
      const fm = /(\d+) received/.exec(flood.out);
      check(Number(fm?.[1]) >= 195, 'ping 200 x 1400 bytes, 2 ms apart', `${fm?.[1] ?? 0}/200`);
    }

    const mib = full ? opts.udpMib : 2;
    const cursor = g.lines.length;
    console.log(`     (UDP echo starts after HB seq=${g.lines.filter((l) => l.text.startsWith('HB ')).length - 1})`);
    const udp = await run(['ip', 'netns', 'exec', 'tsvg', process.execPath, fileURLToPath(import.meta.url), '--udp-client', '10.0.2.15', '7', String(mib)]);
    let res = null;
    try { res = JSON.parse(udp.out.trim().split('\n').pop()); } catch { /* reported below */ }
    check(!!res?.ok, `UDP echo of ${mib} MiB in 1400-byte datagrams`, res ? `${res.done}/${res.total} back intact, ${res.retrans} retransmitted, ${res.mibps.toFixed(2)} MiB/s each way` : udp.out.trim());
    const hbDuring = g.lines.slice(cursor).filter((l) => l.text.startsWith('HB '));
    const hb = g.heartbeatGaps();
    check(hb.seqOk && hb.worst < 300, 'heartbeats during the UDP echo', `${hbDuring.length} beats during it, largest gap overall ${hb.worst.toFixed(1)} ms before seq=${hb.at}`);

    let r = await g.cmd('netstat', /^NETSTAT rx=(\d+) tx=(\d+) arp=(\d+) icmp=(\d+) udp=(\d+)$/);
    check(!!r && Number(r.m[4]) >= (full ? 205 : 5) && Number(r.m[5]) >= (res?.total ?? 1) && Number(r.m[3]) >= 1, 'netstat', r?.line.text);
    if (!full) { check(await g.poweroff(), 'poweroff'); return; }

    // Gratuitous ARP, by command and by the device's ANNOUNCE status (QMP announce-self).
    const watch = spawn('ip', ['netns', 'exec', 'tsvg', 'python3', '-c', ARP_WATCH, 'tap0', '3000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(watch);
    let watchOut = '';
    watch.stdout.on('data', (d) => { watchOut += d; });
    const watchDone = new Promise((res2) => watch.on('exit', () => { running.delete(watch); res2(); }));
    await sleep(500);
    r = await g.cmd('announce', /^ANNOUNCE (.*)$/);
    check(r?.m[1] === 'OK sent=1', 'announce', r?.line.text);
    const q = await g.qmp([{ execute: 'announce-self', arguments: { initial: 50, max: 550, rounds: 1, step: 100 } }]);
    check(!q.some((x) => x.error), 'QMP announce-self', JSON.stringify(q.at(-1)));
    r = await g.expect(/^ANNOUNCE AUTO net=0 ack=(-?\d+)$/, 5000);
    check(r?.m[1] === '0', 'device-requested announce acknowledged on the control queue', r?.line.text);
    await watchDone;
    const garps = watchOut.split('\n').filter((l) => l.startsWith('GARP 52:54:00:12:34:56 10.0.2.15'));
    check(garps.length >= 2, 'gratuitous ARPs seen on tap0', `${garps.length}`);
    r = await g.cmd('virtio', /^VIRTIO \S+ net .* irqs=(\d+)$/);
    check(Number(r?.m[1]) > 0, 'MSI-X interrupts were taken', r?.line.text);
    check(await g.poweroff(), 'poweroff');
  } finally {
    await g.close();
  }
}

// Prints "GARP <mac> <ip>" for each ARP frame on IFACE whose sender and target IP are the same, for MS ms.
const ARP_WATCH = `
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((sys.argv[1], 0))
s.settimeout(0.1)
end = time.time() + int(sys.argv[2]) / 1000
while time.time() < end:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if len(f) >= 42 and f[28:32] == f[38:42]:
        print('GARP', ':'.join('%02x' % b for b in f[22:28]), '.'.join(str(b) for b in f[28:32]), flush=True)
`;

async function main() {
  const a = process.argv.slice(2);
  if (a[0] === '--udp-client') return udpClient(a[1], Number(a[2]), Number(a[3]));
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--qemu') opts.qemu = a[++i];
    else if (a[i] === '--no-net') opts.net = false;
    else if (a[i] === '--bench-mib') opts.benchMib = Number(a[++i]);
    else if (a[i] === '--udp-mib') opts.udpMib = Number(a[++i]);
    else throw new Error(`unknown option ${a[i]}`);
  }
  execFileSync(join(here, 'build.sh'), { stdio: 'inherit' });
  const work = mkdtempSync(join(tmpdir(), 'tsvirt-virtio-img-'));
  try {
    await diskChecks(work);
    if (opts.net) await netChecks();
  } finally {
    rmSync(work, { recursive: true, force: true });
    cleanup();
  }
  console.log(failures ? `${failures} check(s) FAILED` : 'all checks passed');
  process.exit(failures ? 1 : 0);
}

main().catch((e) => { console.error(e); cleanup(); process.exit(2); });
