// The narrow interface migration drives the machine through: RAM, dirty pages, vCPU/chip/device state, run control.

import type { VmDescription } from './description.js';
import type { Blobs } from './format.js';

/** One RAM range as migration sees it. */
export interface RamRegionPort {
  readonly gpa: number;
  readonly size: number;
  /** A view of the whole range's bytes (guest memory itself, not a copy). */
  readonly bytes: Uint8Array;
}

/** A device's migration section. */
export interface DeviceSnapshot {
  readonly id: string;
  readonly version: number;
  readonly state: unknown;
}

/** What a VM offers migration; implemented by the machine's composition layer. */
export interface MigratableVm {
  /** The RAM regions (adoptMemory keeps their addresses, so these views stay valid). */
  readonly ram: readonly RamRegionPort[];
  readonly vcpuCount: number;
  /** The CONFIG section: what must match on the destination. */
  description(): VmDescription;
  cpuVendor(): string;
  /** True while the guest runs (migration resumes it on failure only if it was running). */
  isRunning(): boolean;
  /** Sets the QMP-visible run state (finish-migrate, postmigrate, inmigrate, running, paused). */
  setRunState(state: 'running' | 'paused' | 'finish-migrate' | 'postmigrate' | 'inmigrate'): void;
  pauseVcpus(): Promise<void>;
  resumeVcpus(): void;
  /** Pages that hold data (never-touched pages are holes and need not be sent), as a bitmap per region. */
  populatedPages(region: number): Uint32Array;
  startDirtyLog(): void;
  stopDirtyLog(): void;
  /** Pages written since the previous call (KVM's dirty log merged with the devices' own writes). */
  takeDirtyPages(region: number): Uint32Array;
  /** Completes in-flight device I/O and flushes disks (before the final pass). */
  drainDevices(): Promise<void>;
  saveVcpu(index: number): Blobs;
  restoreVcpu(index: number, blobs: Blobs): void;
  saveIrqchip(): Blobs;
  restoreIrqchip(blobs: Blobs): void;
  savePit(): Blobs;
  restorePit(blobs: Blobs): void;
  saveClock(): Blobs;
  /** `advance`: let kvmclock move on by the real time since the source read it (live), or keep the saved time. */
  restoreClock(blobs: Blobs, advance: boolean): void;
  saveDevices(): DeviceSnapshot[];
  restoreDevice(snapshot: DeviceSnapshot): void;
  /** Takes `percent` of vCPU time from the guest (auto-converge); 0 ends throttling. Resolves once applied. */
  setThrottle(percent: number): Promise<void>;
  /** The memfd behind each RAM region, in region order (local migration hands them over). */
  memoryFds(): number[];
  /** Replaces each RAM region with the memfd received from the source (local migration, destination side). */
  adoptMemory(fds: readonly number[]): void;
  /** Stops devices writing guest memory on their own (NIC receive) once the guest is paused for switch-over. */
  quiesceDevices(): void;
  /** Undoes quiesceDevices when a migration fails and the guest resumes here. */
  unquiesceDevices(): void;
  /** After the guest runs on the destination: announce the NIC, etc. */
  afterIncoming(): void;
}
