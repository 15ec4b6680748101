// Connects the QMP server to the machine: the machine seen through QMP's VmApi, and the -qmp/-mon listeners.

import type { SocketChardevSpec, VmConfig } from './config.js';
import type { Logger } from './log.js';
import type { Machine } from './machine.js';
import type { MachineEvent } from './run-state.js';
import type { PciDevices } from './pci-devices.js';
import { ConfigError } from './errors.js';
import { EventHub, startQmp, type CpuSlot, type MigrationApi, type QmpServer, type VcpuInfo, type VmApi, type VmEvent } from '../qmp/index.js';

/** The machine as QMP sees it. */
export class MachineQmpView implements VmApi {
  readonly events = new EventHub();

  constructor(private readonly machine: Machine, private readonly config: VmConfig, readonly migration?: MigrationApi & { events?: EventHub }, private readonly pci?: PciDevices) {
    machine.on('event', (e: MachineEvent) => this.events.emit(toVmEvent(e)));
  }

  get name(): string | undefined {
    return this.machine.name;
  }

  runState() {
    return this.machine.state;
  }

  stop(): Promise<void> {
    return this.machine.stop();
  }

  cont(): Promise<void> {
    return this.machine.cont();
  }

  quit(): void {
    this.machine.quit(0);
  }

  systemReset(): Promise<void> {
    return this.machine.reset(false, 'host-qmp-system-reset');
  }

  systemPowerdown(): void {
    this.machine.systemPowerdown();
  }

  private topologyOf(index: number) {
    const t = this.config.topology;
    const perSocket = t.dies * t.clusters * t.cores * t.threads;
    return {
      socketId: Math.floor(index / perSocket),
      coreId: Math.floor(index / t.threads) % t.cores,
      threadId: index % t.threads,
    };
  }

  vcpus(): VcpuInfo[] {
    // A running vCPU holds its KVM mutex inside KVM_RUN, so its MP state cannot be read from here; halted is
    // reported only for a VM that is not running.
    const halted = this.machine.state !== 'running';
    return this.machine.vcpus.map((v, index) => ({ index, tid: v.threadId, topology: this.topologyOf(index), halted }));
  }

  cpuSlots(): CpuSlot[] {
    const slots: CpuSlot[] = [];
    for (let i = 0; i < this.config.topology.maxCpus; i++) {
      slots.push({ type: 'host-x86_64-cpu', vcpusCount: 1, props: this.topologyOf(i), vcpuIndex: i < this.machine.vcpuCount ? i : undefined });
    }
    return slots;
  }

  kvm() {
    return { present: true, enabled: true };
  }

  blocks() {
    return this.pci?.blocks.map((b) => ({ id: b.device, file: b.file, readonly: b.readonly, sizeBytes: b.sizeBytes })) ?? [];
  }

  pciDevices() {
    return this.pci?.root.describe() ?? [];
  }
}

function toVmEvent(e: MachineEvent): VmEvent {
  return (e.data ? { event: e.name, data: e.data } : { event: e.name }) as VmEvent;
}

/** QMP's endpoint string for a listening socket chardev. */
export function endpointOf(spec: SocketChardevSpec): string {
  return spec.kind === 'unix' ? `unix:${spec.path}` : `tcp:${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
}

export interface QmpHandle {
  readonly server: QmpServer;
  readonly view: MachineQmpView;
  closeSync(): void;
}

/** Starts the QMP listeners the command line asked for (none: no server). */
export async function startQmpFor(config: VmConfig, machine: Machine, log: Logger, migration?: MigrationApi & { events?: EventHub }, pci?: PciDevices): Promise<QmpHandle | undefined> {
  const view = new MachineQmpView(machine, config, migration, pci);
  if (config.qmp.length === 0) return undefined;
  let server: QmpServer;
  try {
    server = await startQmp(config.qmp.map(endpointOf), view, log);
  } catch (e) {
    throw new ConfigError('qmp', (e as Error).message);
  }
  return { server, view, closeSync: () => void server.close() };
}
