#!/usr/bin/env node
// tsvirt's entry point: parses StratoVirt's command line, builds and runs the VM, serves QMP, and exits with one-line errors.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseCommandLine, type VmConfig } from './config.js';
import { ConfigError, TsvirtError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { buildVm } from './builder.js';

const VERSION = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version as string;

/** Prints one line naming what was wrong and exits non-zero; a stack trace only with TSVIRT_LOG=debug. */
function die(e: unknown): never {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`tsvirt: ${msg}\n`);
  if (process.env.TSVIRT_LOG === 'debug' && e instanceof Error && !(e instanceof TsvirtError)) process.stderr.write(`${e.stack}\n`);
  process.exit(1);
}

/** -daemonize: re-runs tsvirt detached and returns once the child says the VM is up. */
async function daemonize(argv: string[]): Promise<never> {
  const args = argv.filter((a) => a !== '-daemonize' && a !== '--daemonize');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, TSVIRT_DAEMON_CHILD: '1' },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number>((resolve) => {
    child.on('message', (m) => m === 'ready' && resolve(0));
    child.on('exit', (c) => resolve(c || 1));
  });
  if (code !== 0) process.stderr.write(stderr);
  child.disconnect?.();
  child.stderr?.destroy();
  child.unref();
  process.exit(code);
}

async function run(config: VmConfig, log: Logger): Promise<void> {
  const cleanups: (() => void)[] = [];
  const exit = (code: number) => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        c();
      } catch {
        // Best effort: the process is leaving anyway.
      }
    }
    process.exit(code);
  };
  if (config.pidfile) {
    fs.writeFileSync(config.pidfile, `${process.pid}\n`);
    cleanups.push(() => fs.rmSync(config.pidfile!, { force: true }));
  }
  const recorder = config.testSocket ? new (await import('./qtest/interrupts.js')).InterruptRecorder() : undefined;
  const built = await buildVm({ config, log, exit, interrupts: recorder });
  const { machine } = built;
  if (config.testSocket) {
    // Device test mode: no vCPUs run; a test drives the devices through the socket as a guest driver would.
    const { QtestServer } = await import('./qtest/server.js');
    const server = await QtestServer.listen(config.testSocket, { pio: machine.pio, mmio: machine.mmio, memory: machine.memory, interrupts: recorder }, { onDisconnect: () => exit(0) });
    cleanups.push(() => void server.close());
    const { startQmpFor } = await import('./qmp-wiring.js');
    const qmp = await startQmpFor(config, machine, log, undefined, built.pci);
    cleanups.push(() => qmp?.closeSync());
    return;
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      log.warn(`terminating on signal ${sig}`);
      machine.emit('event', { name: 'SHUTDOWN', data: { guest: false, reason: 'host-signal' } });
      machine.quit(0);
    });
  }
  // A migration destination neither boots nor runs its vCPUs: the stream brings memory and state.
  await machine.start(config.startPaused || config.incoming !== undefined, { boot: config.incoming === undefined });
  // Migration and QMP (ajv schemas and all) load once the guest already runs: they would delay the boot by ~80 ms.
  const { startMigrationFor } = await import('./migration-wiring.js');
  const migration = startMigrationFor(config, built, log);
  const { startQmpFor } = await import('./qmp-wiring.js');
  const qmp = await startQmpFor(config, machine, log, migration, built.pci);
  cleanups.push(() => qmp?.closeSync());
  // A snapshot restore resumes the guest the moment it is done. Started only now, QMP's start-up (ajv schemas: 50-90 ms
  // of main thread, which every console byte and I/O exit of the guest waits for) cannot stall the guest it resumed.
  if (config.incoming?.kind === 'file') (await import('./migration-wiring.js')).beginIncoming(config, migration);
  if (process.env.TSVIRT_DAEMON_CHILD && process.send) {
    process.send('ready');
    process.disconnect?.();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (e) {
    die(e);
  }
  if (parsed.action === 'help') {
    process.stdout.write(parsed.text);
    return;
  }
  if (parsed.action === 'version') {
    process.stdout.write(`tsvirt version ${VERSION}\n`);
    return;
  }
  if (parsed.daemonize && !process.env.TSVIRT_DAEMON_CHILD) await daemonize(argv);
  try {
    const log = await createLogger(parsed.logFile);
    await run(parsed, log);
  } catch (e) {
    die(e);
  }
}

void main();
