// Starts migration source/destination tsvirt pairs for tests, with QMP clients, unique socket paths and cleanup.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testGuest } from './guest.js';
import { QmpClient } from './qmp-client.js';
import { collectHeartbeats, VmmProcess, type Heartbeat } from './tsvirt-process.js';

let counter = 0;

/** One tsvirt process with its QMP client and heartbeats. */
export interface Vm {
  readonly proc: VmmProcess;
  readonly qmp: QmpClient;
  readonly beats: Heartbeat[];
  readonly qmpPath: string;
}

/** Creates VMs and remembers everything to tear down. */
export class VmFleet {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvirt-mig-'));
  private readonly vms: Vm[] = [];

  /** A fresh socket path in the fleet's directory. */
  sock(name: string): string {
    return path.join(this.dir, `${name}-${++counter}.sock`);
  }

  /** Starts tsvirt with the test guest plus `args`; waits for QMP and negotiates it. */
  /** `main`: another build's entry point (live-upgrade tests). */
  async start(args: string[], opts: { append?: string; mem?: string; smp?: string; main?: string } = {}): Promise<Vm> {
    const qmpPath = this.sock('qmp');
    const proc = VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', opts.mem ?? '256', '-smp', opts.smp ?? '1',
      '-append', opts.append ?? 'console=ttyS0', '-qmp', `unix:${qmpPath},server,nowait`, ...args], {}, opts.main);
    const beats = collectHeartbeats(proc);
    const vm = { proc, qmp: undefined as unknown as QmpClient, beats, qmpPath };
    this.vms.push(vm);
    vm.qmp = await QmpClient.connect(qmpPath, 15000);
    await vm.qmp.run('qmp_capabilities');
    return vm;
  }

  /** Starts a destination listening on `uri`, shaped like the source unless told otherwise. */
  destination(uri: string, opts: { mem?: string; smp?: string } = {}): Promise<Vm> {
    return this.start(['-incoming', uri], opts);
  }

  async cleanup(): Promise<void> {
    for (const vm of this.vms.splice(0)) {
      vm.qmp?.close();
      await vm.proc.kill();
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls query-migrate until `status` is one of `wanted`; returns the last reply. */
export async function waitMigration(vm: Vm, wanted: string[], timeoutMs = 60000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await vm.qmp.run('query-migrate');
    if (wanted.includes(info.status)) return info;
    if (Date.now() > deadline) throw new Error(`migration still '${info.status}' after ${timeoutMs} ms: ${JSON.stringify(info)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
