// Listener behaviour: private socket files, stale and live sockets, TCP, several listeners, clean shutdown.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import winston from 'winston';
import { parseEndpoint } from '../../../qmp/endpoint.js';
import { QmpEndpointError, QmpSocketInUseError } from '../../../qmp/errors.js';
import type { QmpLogger } from '../../../qmp/logger.js';
import { startQmp } from '../../../qmp/server.js';
import { TestClient } from './client.js';
import { FakeVm } from './fake-vm.js';

/** Leaves a socket file behind the way a crashed tsvirt would: a child binds it and is SIGKILLed. */
async function leaveStaleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
}

describe('qmp server listeners', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsvirt-qmp-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the unix socket with mode 0600 and leaves the process umask unchanged', async () => {
    const path = join(dir, 'qmp.sock');
    const umaskBefore = process.umask();
    const server = await startQmp([`unix:${path},server,nowait`], new FakeVm());
    try {
      expect((await lstat(path)).mode & 0o777).to.equal(0o600);
      expect(process.umask()).to.equal(umaskBefore);
    } finally {
      await server.close();
    }
  });

  it('removes its socket file on close', async () => {
    const path = join(dir, 'qmp.sock');
    const server = await startQmp([`unix:${path}`], new FakeVm());
    const c = await TestClient.connect(`unix:${path}`);
    await server.close();
    expect(existsSync(path)).to.equal(false);
    await c.waitFor(() => c.closed).catch(() => undefined);
    expect(c.closed).to.equal(true);
  });

  it('replaces a stale socket left by a dead process', async () => {
    const path = join(dir, 'qmp.sock');
    await leaveStaleSocket(path);
    expect((await lstat(path)).isSocket()).to.equal(true);
    const server = await startQmp([`unix:${path}`], new FakeVm());
    try {
      const c = await TestClient.connect(`unix:${path}`);
      expect((await c.execute('query-target')).return).to.deep.equal({ arch: 'x86_64' });
      c.close();
    } finally {
      await server.close();
    }
  });

  it('refuses a socket another live process is serving, and leaves it alone', async () => {
    const path = join(dir, 'qmp.sock');
    const other = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => other.listen(path, r));
    try {
      let error: unknown;
      await startQmp([`unix:${path}`], new FakeVm()).catch((e) => (error = e));
      expect(error).to.be.instanceOf(QmpSocketInUseError);
      expect((error as Error).message).to.equal(`QMP socket ${path} is in use`);
      expect(existsSync(path)).to.equal(true);
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  it('refuses to replace a path that is not a socket', async () => {
    const path = join(dir, 'not-a-socket');
    await writeFile(path, 'precious');
    let error: unknown;
    await startQmp([`unix:${path}`], new FakeVm()).catch((e) => (error = e));
    expect(error).to.be.instanceOf(QmpEndpointError);
    expect(existsSync(path)).to.equal(true);
  });

  it('serves TCP and unix listeners at once, each with several clients', async () => {
    const vm = new FakeVm();
    const logs: string[] = [];
    const logger = winston.createLogger({
      level: 'debug',
      transports: [new winston.transports.Console({ silent: true })],
    });
    logger.on('data', (info: { message: string }) => logs.push(info.message));
    const server = await startQmp([`unix:${join(dir, 'a.sock')}`, 'tcp:127.0.0.1:0,server=on,wait=off'], vm, logger satisfies QmpLogger);
    try {
      const [unixAddr, tcpAddr] = server.addresses;
      expect(tcpAddr).to.match(/^tcp:127\.0\.0\.1:\d+$/);
      const clients = await Promise.all([unixAddr, unixAddr, tcpAddr, tcpAddr].map((a) => TestClient.connect(a)));
      for (const c of clients) await c.execute('qmp_capabilities');
      vm.events.emit({ event: 'POWERDOWN' });
      for (const c of clients) expect((await c.waitFor((m) => 'event' in m)).event).to.equal('POWERDOWN');
      expect(server.sessionCount).to.equal(4);
      for (const c of clients) c.close();
      expect(logs).to.include('QMP listening');
    } finally {
      await server.close();
    }
  });

  it('closes the listeners it opened when a later endpoint fails', async () => {
    const path = join(dir, 'first.sock');
    let error: unknown;
    await startQmp([`unix:${path}`, 'tcp:999.1.1.1:bad'], new FakeVm()).catch((e) => (error = e));
    expect(error).to.be.instanceOf(QmpEndpointError);
    expect(existsSync(path)).to.equal(false);
  });

  it('unsubscribes from the VM events on close', async () => {
    const vm = new FakeVm();
    const server = await startQmp([`unix:${join(dir, 'q.sock')}`], vm);
    expect(vm.events.size).to.equal(1);
    await server.close();
    expect(vm.events.size).to.equal(0);
  });
});

describe('qmp endpoint parsing', () => {
  it('accepts QEMU and StratoVirt spellings', () => {
    expect(parseEndpoint('unix:/run/vm.sock,server,nowait')).to.deep.equal({ kind: 'unix', path: '/run/vm.sock' });
    expect(parseEndpoint('unix:/odd,,name')).to.deep.equal({ kind: 'unix', path: '/odd,name' });
    expect(parseEndpoint('tcp:127.0.0.1:4444,server=on,wait=off')).to.deep.equal({ kind: 'tcp', host: '127.0.0.1', port: 4444 });
    expect(parseEndpoint('tcp:[::1]:4444')).to.deep.equal({ kind: 'tcp', host: '::1', port: 4444 });
    expect(parseEndpoint('tcp::4444')).to.deep.equal({ kind: 'tcp', host: '', port: 4444 });
  });

  it('refuses what it cannot serve, naming the problem', () => {
    for (const bad of ['stdio', 'unix:', 'tcp:host', 'tcp:h:70000', 'unix:/x,wait=on', 'unix:/x,server=off']) {
      expect(() => parseEndpoint(bad), bad).to.throw(QmpEndpointError);
    }
  });
});
