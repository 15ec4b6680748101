// A scripted VmApi for protocol tests: records calls, emits the events a real machine would.
import { EventHub } from '../../../qmp/events.js';
import type { MigrationApi } from '../../../qmp/migration-api.js';
import type { CpuSlot, KvmInfo, RunState, VcpuInfo, VmApi } from '../../../qmp/vm-api.js';
import { StateError } from '../../../machine/errors.js';

export class FakeVm implements VmApi {
  name: string | undefined = 'guest0';
  state: RunState = 'running';
  readonly events = new EventHub();
  readonly calls: string[] = [];
  migration?: MigrationApi;
  /** Milliseconds stop() takes, to check that replies stay ordered behind slow handlers. */
  stopDelayMs = 0;
  /** Makes the next call of the named method throw this. */
  failures = new Map<string, unknown>();
  vcpuList: VcpuInfo[] = [
    { index: 0, tid: 4242, topology: { socketId: 0, coreId: 0, threadId: 0 }, halted: false },
    { index: 1, tid: 4243, topology: { socketId: 0, coreId: 1, threadId: 0 }, halted: true },
  ];
  kvmInfo: KvmInfo = { present: true, enabled: true };

  runState(): RunState {
    return this.state;
  }

  private enter(method: string): void {
    this.calls.push(method);
    const failure = this.failures.get(method);
    if (failure !== undefined) {
      this.failures.delete(method);
      throw failure;
    }
  }

  async stop(): Promise<void> {
    this.enter('stop');
    if (this.stopDelayMs > 0) await new Promise((r) => setTimeout(r, this.stopDelayMs));
    if (this.state === 'running') {
      this.state = 'paused';
      this.events.emit({ event: 'STOP' });
    }
  }

  cont(): void {
    this.enter('cont');
    if (this.state === 'shutdown') throw new StateError('Resetting the Virtual Machine is required');
    if (this.state !== 'running') {
      this.state = 'running';
      this.events.emit({ event: 'RESUME' });
    }
  }

  quit(): void {
    this.enter('quit');
  }

  systemReset(): void {
    this.enter('systemReset');
    this.events.emit({ event: 'RESET', data: { guest: false, reason: 'host-qmp-system-reset' } });
  }

  systemPowerdown(): void {
    this.enter('systemPowerdown');
    this.events.emit({ event: 'POWERDOWN' });
  }

  vcpus(): readonly VcpuInfo[] {
    return this.vcpuList;
  }

  cpuSlots(): readonly CpuSlot[] {
    return [
      ...this.vcpuList.map((c) => ({ type: 'host-x86_64-cpu', vcpusCount: 1, props: c.topology, vcpuIndex: c.index })),
      { type: 'host-x86_64-cpu', vcpusCount: 1, props: { socketId: 1, coreId: 0, threadId: 0 } },
    ];
  }

  kvm(): KvmInfo {
    this.enter('kvm');
    return this.kvmInfo;
  }
}
