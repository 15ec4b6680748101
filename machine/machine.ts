// The running VM: KVM objects, RAM, buses and vCPU threads, with its run state, events, pause/resume, reset and power-off.

import { EventEmitter } from 'node:events';
import { Bus } from '../devices/bus.js';
import type { GuestMemory } from '../devices/guest-memory.js';
import { StateError } from './errors.js';
import type { Kvm } from './kvm/system.js';
import type { VmFd } from './kvm/vm.js';
import { IRQCHIP_IOAPIC, IRQCHIP_PIC_MASTER, IRQCHIP_PIC_SLAVE } from './kvm/vm.js';
import type { Logger } from './log.js';
import type { Ram } from './memory.js';
import type { MachineEvent, RunState } from './run-state.js';
import { VcpuHandle, type VcpuExitHandler } from './vcpu/handle.js';
import { captureVcpuState, restoreVcpuState, type VcpuState } from './vcpu/state.js';

/** A device with state that a system reset returns to power-on values. */
export interface Resettable {
  reset(): void;
}

/** A device whose plain state object is its migration section. */
export interface StatefulDevice {
  readonly id: string;
  readonly version: number;
  saveState(): unknown;
  restoreState(state: unknown): void;
}

/** What the builder hands the machine. */
export interface MachineParts {
  readonly name?: string;
  readonly kvm: Kvm;
  readonly vm: VmFd;
  readonly ram: Ram;
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly vcpuCount: number;
  readonly log: Logger;
  /** Loads kernel, initrd and firmware tables into RAM and sets the boot vCPU's registers; run at start and on reset. */
  readonly boot: (machine: Machine) => void;
  readonly resettables: readonly Resettable[];
  /** Devices with migratable state, by stable id. */
  readonly devices: readonly StatefulDevice[];
  /** When true, a guest reset ends the process (QEMU's -no-reboot). */
  readonly noReboot: boolean;
  /** When true, guest power-off pauses the VM instead of exiting (QEMU's -no-shutdown). */
  readonly noShutdown: boolean;
  /** Called once when the process should exit. */
  readonly exit: (code: number) => void;
  /** Creates and configures vCPU `index` (CPUID, MSR list); returns its handle. */
  readonly createVcpu: (index: number, exits: VcpuExitHandler) => VcpuHandle;
  readonly msrIndices: readonly number[];
}

/** The VM. Emits 'event' with a MachineEvent for QMP. */
export class Machine extends EventEmitter {
  readonly name?: string;
  readonly kvm: Kvm;
  readonly vm: VmFd;
  readonly ram: Ram;
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly log: Logger;
  readonly vcpus: VcpuHandle[] = [];
  private runState: RunState = 'prelaunch';
  private initialVcpu: VcpuState[] = [];
  private initialChips: Uint8Array[] = [];
  private busy: Promise<void> = Promise.resolve();
  private exiting = false;

  constructor(private readonly parts: MachineParts) {
    super();
    this.name = parts.name;
    this.kvm = parts.kvm;
    this.vm = parts.vm;
    this.ram = parts.ram;
    this.pio = parts.pio;
    this.mmio = parts.mmio;
    this.log = parts.log;
  }

  get devices(): readonly StatefulDevice[] {
    return this.parts.devices;
  }

  get msrIndices(): readonly number[] {
    return this.parts.msrIndices;
  }

  get memory(): GuestMemory {
    return this.ram.memory;
  }

  get state(): RunState {
    return this.runState;
  }

  get vcpuCount(): number {
    return this.parts.vcpuCount;
  }

  /** Creates the vCPU threads (parked), records power-on state for resets, boots, then runs unless `paused`. */
  async start(paused: boolean, opts: { boot?: boolean } = {}): Promise<void> {
    const exits = this.exitHandler();
    for (let i = 0; i < this.parts.vcpuCount; i++) this.vcpus.push(this.parts.createVcpu(i, exits));
    // Worker threads start parked (outside KVM_RUN), so their start-up overlaps the boot preparation below.
    const started = Promise.all(this.vcpus.map((v) => v.start()));
    this.initialVcpu = this.vcpus.map((v) => captureVcpuState(v.fd, this.parts.msrIndices));
    this.initialChips = [IRQCHIP_PIC_MASTER, IRQCHIP_PIC_SLAVE, IRQCHIP_IOAPIC].map((c) => this.vm.getIrqchip(c));
    this.initialChips.push(this.vm.getPit2());
    if (opts.boot !== false) this.parts.boot(this);
    await started;
    if (paused) {
      this.runState = 'paused';
    } else {
      this.resumeVcpus();
      this.runState = 'running';
    }
  }

  /** Serialises state changes so pause, resume and reset never interleave. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.busy.then(fn);
    this.busy = next.then(() => {}, () => {});
    return next;
  }

  private emitEvent(e: MachineEvent): void {
    this.emit('event', e);
  }

  /** Parks every vCPU outside KVM_RUN; their state is then readable and writable. */
  async pauseVcpus(): Promise<void> {
    await Promise.all(this.vcpus.map((v) => v.pause()));
    for (const v of this.vcpus) {
      try {
        v.fd.kvmclockCtrl();
      } catch {
        // EINVAL when the guest has not enabled kvmclock: nothing to tell it.
      }
    }
  }

  resumeVcpus(): void {
    for (const v of this.vcpus) v.resume();
  }

  /** QMP stop: pauses a running VM (a no-op otherwise). */
  stop(): Promise<void> {
    return this.serial(async () => {
      if (this.runState !== 'running') return;
      await this.pauseVcpus();
      this.runState = 'paused';
      this.emitEvent({ name: 'STOP' });
    });
  }

  /** QMP cont: resumes a paused VM. */
  cont(): Promise<void> {
    return this.serial(async () => {
      if (this.runState === 'running') return;
      if (this.runState === 'inmigrate') throw new StateError('Guest is waiting for an incoming migration');
      if (this.runState === 'postmigrate' || this.runState === 'finish-migrate') throw new StateError('The guest has migrated away (or is migrating); it cannot be continued here');
      if (this.runState === 'internal-error' || this.runState === 'shutdown') {
        throw new StateError(`Resetting the Virtual Machine is required (state ${this.runState})`);
      }
      this.resumeVcpus();
      this.runState = 'running';
      this.emitEvent({ name: 'RESUME' });
    });
  }

  /** Sets the state directly (migration uses inmigrate, finish-migrate, postmigrate). */
  setState(state: RunState): void {
    this.runState = state;
  }

  /** System reset: every vCPU, the irqchip, the PIT and the devices back to power-on state, the kernel reloaded. */
  reset(guest: boolean, reason: string): Promise<void> {
    return this.serial(async () => {
      const wasRunning = this.runState === 'running' || this.runState === 'shutdown' || this.runState === 'internal-error';
      await this.pauseVcpus();
      this.vcpus.forEach((v, i) => restoreVcpuState(v.fd, this.initialVcpu[i]));
      for (const chip of this.initialChips.slice(0, 3)) this.vm.setIrqchip(chip);
      this.vm.setPit2(this.initialChips[3]);
      for (const d of this.parts.resettables) d.reset();
      this.parts.boot(this);
      this.emitEvent({ name: 'RESET', data: { guest, reason } });
      if (wasRunning || this.runState === 'running') {
        const resumed = this.runState !== 'running';
        this.resumeVcpus();
        this.runState = 'running';
        if (resumed) this.emitEvent({ name: 'RESUME' });
      }
    });
  }

  /** QMP system_powerdown: presses the ACPI power button (set by the builder). */
  powerButton: () => void = () => {};

  systemPowerdown(): void {
    this.emitEvent({ name: 'POWERDOWN' });
    this.powerButton();
  }

  /** The guest powered off (ACPI S5 or a KVM shutdown event). */
  guestPowerOff(): void {
    void this.serial(async () => {
      this.emitEvent({ name: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } });
      await this.pauseVcpus();
      const wasRunning = this.runState === 'running';
      this.runState = 'shutdown';
      if (wasRunning && this.parts.noShutdown) this.emitEvent({ name: 'STOP' });
      if (!this.parts.noShutdown) this.quit(0);
    });
  }

  /** The guest asked for a reset (or triple-faulted). */
  guestReset(): void {
    if (this.parts.noReboot) {
      this.emitEvent({ name: 'SHUTDOWN', data: { guest: true, reason: 'guest-reset' } });
      void this.serial(async () => {
        await this.pauseVcpus();
        this.runState = 'shutdown';
        this.quit(0);
      });
      return;
    }
    void this.reset(true, 'guest-reset');
  }

  /** Ends the process with `code` once, after stopping the vCPU threads. */
  quit(code = 0): void {
    if (this.exiting) return;
    this.exiting = true;
    // A vCPU thread that cannot be stopped (stuck in an emulated instruction, say) must not keep the process alive.
    const forced = setTimeout(() => {
      this.log.warn('vCPU threads did not stop within 2 s; exiting anyway');
      this.parts.exit(code);
    }, 2000);
    void Promise.all(this.vcpus.map((v) => v.stop())).finally(() => {
      clearTimeout(forced);
      this.parts.exit(code);
    });
  }

  private exitHandler(): VcpuExitHandler {
    return {
      pioRead: (port, data) => this.pio.read(port, data),
      pioWrite: (port, data) => this.pio.write(port, data),
      mmioRead: (addr, data) => this.mmio.read(addr, data),
      mmioWrite: (addr, data) => this.mmio.write(addr, data),
      shutdown: () => this.guestPowerOff(),
      reset: () => this.guestReset(),
      failed: (vcpu, reason, detail) => this.vcpuFailed(vcpu, reason, detail),
    };
  }

  private vcpuFailed(vcpu: number, reason: number, detail: number): void {
    let rip = '?';
    try {
      rip = '0x' + this.vcpus[vcpu].fd.getRegs().rip.toString(16);
    } catch {
      // The vCPU may still be inside KVM_RUN's failure path; the message goes out without RIP.
    }
    const what = reason === -1 ? 'the vCPU thread failed' : reason === 17 ? `KVM internal error, suberror ${detail}` : reason === 9 ? `KVM entry failure, reason 0x${detail.toString(16)}` : reason === 0 ? `KVM_RUN failed, errno ${detail}` : `unhandled exit reason ${reason}`;
    this.log.error(`vCPU ${vcpu}: ${what} at rip ${rip}; the VM is stopped (internal-error)`);
    void this.serial(async () => {
      await this.pauseVcpus();
      this.runState = 'internal-error';
      this.emitEvent({ name: 'STOP' });
    });
  }
}
