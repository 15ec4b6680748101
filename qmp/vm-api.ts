// The narrow interface the QMP server needs from the machine; the machine engineer implements it.
import type { QmpEventSource } from './events.js';
import type { MigrationApi } from './migration-api.js';

export type { QmpEventSource, VmEvent, ShutdownCause } from './events.js';
export type {
  MigrationApi,
  MigrationCapability,
  MigrationCapabilityState,
  MigrationInfo,
  MigrationParameters,
  MigrationRamStats,
  MigrationStatus,
  MigrateRequest,
} from './migration-api.js';

/** Every run state, spelled as QEMU 7.2's `RunState`. */
export const RUN_STATES = [
  'debug',
  'inmigrate',
  'internal-error',
  'io-error',
  'paused',
  'postmigrate',
  'prelaunch',
  'finish-migrate',
  'restore-vm',
  'running',
  'save-vm',
  'shutdown',
  'suspended',
  'watchdog',
  'guest-panicked',
  'colo',
  'preconfig',
] as const;

/** The VM's run state as QEMU spells it (`query-status` reports it verbatim). */
export type RunState = (typeof RUN_STATES)[number];

/** A vCPU's place in the topology; on the wire these are `props` {socket-id, core-id, thread-id}. */
export interface CpuTopologyId {
  socketId: number;
  coreId: number;
  /** Hyper-thread within the core (not the host thread). */
  threadId: number;
}

/** One plugged vCPU. */
export interface VcpuInfo {
  /** QEMU's cpu-index: 0-based, dense, in creation order. */
  index: number;
  /** Host thread id (`gettid()`) of the thread running KVM_RUN for this vCPU; 0 if not known yet. */
  tid: number;
  topology: CpuTopologyId;
  /** The vCPU executed HLT and waits for an interrupt (StratoVirt's query-cpus reports it). */
  halted: boolean;
}

/** One CPU slot, plugged or not, for query-hotpluggable-cpus. */
export interface CpuSlot {
  /** QOM type name of the CPU model, e.g. 'host-x86_64-cpu'. */
  type: string;
  /** Threads one hotplug of this slot adds (1 on x86). */
  vcpusCount: number;
  props: CpuTopologyId;
  /** cpu-index of the vCPU occupying the slot; absent when the slot is empty. */
  vcpuIndex?: number;
}

/** Whether KVM is available on the host and used by this VM. */
export interface KvmInfo {
  present: boolean;
  enabled: boolean;
}

/**
 * What the QMP server needs from the running machine. Methods may be sync or async and may throw a TsvirtError
 * (StateError, for instance) whose `qmpClass` and message the client receives. Events come through `events`: the
 * machine emits them itself, synchronously, when the state changes, as QEMU does:
 * - `stop()`: STOP when running -> paused; idempotent (no event) when already paused. In 'inmigrate' it should only
 *   cancel the automatic start after migration, as QEMU does.
 * - `cont()`: RESUME when paused -> running; refuses with a StateError ("Resetting the Virtual Machine is required")
 *   in 'shutdown', 'internal-error' or 'guest-panicked'.
 * - `systemReset()`: RESET {guest: false, reason: 'host-qmp-system-reset'}.
 * - `systemPowerdown()`: POWERDOWN (the guest then shuts down, which leads to SHUTDOWN {guest: true, ...}).
 * - `quit()`: must NOT emit SHUTDOWN; the server has already replied to `quit` and sent SHUTDOWN {guest: false,
 *   reason: 'host-qmp-quit'} to every client before calling it. It tears the VM down, closes the QMP server
 *   (`await qmp.close()`, which removes the socket file) and ends the process.
 * - guest-initiated changes: SHUTDOWN {guest: true, reason: 'guest-shutdown'}, RESET {guest: true, reason:
 *   'guest-reset'}, STOP/RESUME around pauses the machine makes on its own.
 */
export interface VmApi {
  /** The `-name` of the VM; undefined when none was given (query-name then returns {}). */
  readonly name: string | undefined;
  runState(): RunState;
  stop(): void | Promise<void>;
  cont(): void | Promise<void>;
  quit(): void | Promise<void>;
  systemReset(): void | Promise<void>;
  systemPowerdown(): void | Promise<void>;
  /** Plugged vCPUs in cpu-index order. */
  vcpus(): readonly VcpuInfo[];
  /** Every CPU slot up to maxcpus, plugged or not. */
  cpuSlots(): readonly CpuSlot[];
  kvm(): KvmInfo;
  /** Lifecycle events (and MIGRATION / MIGRATION_PASS if migration routes them here). */
  readonly events: QmpEventSource;
  /** Block devices for query-block (QEMU's BlockInfo shape); absent when the machine has none to report. */
  blocks?(): readonly BlockDeviceInfo[];
  /** PCI functions on bus 0 for query-pci (QEMU's PciDeviceInfo shape). */
  pciDevices?(): readonly unknown[];
  /** The migration implementation; when absent the server answers with a stub that stores settings and refuses `migrate`. */
  readonly migration?: MigrationApi;
}

/** One disk as query-block describes it. */
export interface BlockDeviceInfo {
  /** The -device id. */
  id: string;
  file: string;
  readonly: boolean;
  sizeBytes: number;
}

/** QOM path QEMU gives the CPU device created N-th; clients (libvirt) match vCPUs by it. */
export function cpuQomPath(index: number): string {
  return `/machine/unattached/device[${index}]`;
}
