// The console on each of StratoVirt's serial backends, and the process flags -pidfile, -daemonize and -D.

import { expect } from 'chai';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { testGuest } from '../harness/guest.js';
import { tsvirtMain } from '../harness/paths.js';
import { requireKvm } from '../harness/skip.js';
import { VmmProcess } from '../harness/tsvirt-process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(fn: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('serial backends and process flags', function () {
  this.timeout(60000);
  before(requireKvm);
  let dir: string;
  const vms: VmmProcess[] = [];
  const pids: number[] = [];
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-ser-'))));
  afterEach(async () => {
    await Promise.all(vms.splice(0).map((v) => v.kill()));
    for (const p of pids.splice(0)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const base = ['-machine', 'q35', '-kernel', testGuest(), '-m', '64'];

  it('serves the console on a unix socket (-serial unix:PATH,server,nowait) and answers what is typed there', async () => {
    const sock = path.join(dir, 'console.sock');
    vms.push(VmmProcess.tsvirt([...base, '-serial', `unix:${sock},server,nowait`]));
    await until(() => fs.existsSync(sock), 10000, 'the console socket');
    const c = net.connect(sock);
    let out = '';
    c.on('data', (d) => (out += d.toString()));
    await until(() => /HB seq=\d+/.test(out), 10000, 'a heartbeat on the socket');
    c.write('echo over the socket\r');
    await until(() => out.includes('ECHO over the socket'), 5000, 'the echo');
    c.destroy();
  });

  it('writes the console to a file with -chardev file + -serial chardev:ID', async () => {
    const log = path.join(dir, 'console.log');
    vms.push(VmmProcess.tsvirt([...base, '-chardev', `file,id=con0,path=${log}`, '-serial', 'chardev:con0']));
    await until(() => fs.existsSync(log) && /READY\n/.test(fs.readFileSync(log, 'utf8')), 10000, 'READY in the file');
  });

  it('prints the pty it made for -serial pty, and the console works through it', async () => {
    const vm = VmmProcess.tsvirt([...base, '-serial', 'pty']);
    vms.push(vm);
    const pty = await until(() => vm.stderr.match(/char device redirected to (\/dev\/pts\/\d+) \(label serial0\)/)?.[1], 10000, 'the pty line');
    const fd = fs.openSync(pty, fs.constants.O_RDWR | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
    spawnSync('stty', ['-F', pty, 'raw', '-echo']);
    let out = '';
    const buf = Buffer.alloc(4096);
    const read = () => {
      try {
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        out += buf.subarray(0, n).toString();
      } catch {
        // EAGAIN: nothing yet.
      }
      return out;
    };
    await until(() => /HB seq=\d+/.test(read()), 10000, 'a heartbeat on the pty');
    fs.writeSync(fd, 'echo via pty\r');
    await until(() => read().includes('ECHO via pty'), 5000, 'the echo on the pty');
    fs.closeSync(fd);
  });

  it('daemonizes, writes the pid file, logs to the -D file, and removes the pid file when it quits', async () => {
    const pidfile = path.join(dir, 'tsvirt.pid');
    const log = path.join(dir, 'tsvirt.log');
    const qmp = path.join(dir, 'qmp.sock');
    const r = spawnSync(process.execPath, [tsvirtMain, ...base, '-serial', `file:${path.join(dir, 'con.log')}`, '-daemonize', '-pidfile', pidfile, '-D', log, '-qmp', `unix:${qmp},server,nowait`],
      { encoding: 'utf8', timeout: 20000, env: { ...process.env, TSVIRT_LOG: 'info' } });
    expect(r.status, r.stderr).to.equal(0);
    const pid = Number(fs.readFileSync(pidfile, 'utf8').trim());
    pids.push(pid);
    expect(() => process.kill(pid, 0)).to.not.throw();
    await until(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('boot: pvh kernel entry'), 10000, 'the log line');
    await until(() => fs.existsSync(qmp), 10000, 'the QMP socket');
    const c = net.connect(qmp);
    c.write('{"execute":"quit"}\n');
    await until(() => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    }, 10000, 'the daemon to exit');
    expect(fs.existsSync(pidfile)).to.equal(false);
    c.destroy();
  });
});
