// Connects live migration to the machine: the machine seen through migration's MigratableVm port, and -incoming.

import type { VmConfig } from './config.js';
import { StateError } from './errors.js';
import type { Logger } from './log.js';
import type { Machine } from './machine.js';
import type { BuiltVm } from './builder.js';
import { vcpuCpuid } from './cpuid.js';
import { kvmIoctl } from './kvm/ioctl.js';
import * as fs from 'node:fs';
import { addressOf, closeFd, dataExtents, mmapSharedAt } from './kvm/libc.js';
import type { RamBacking } from './memory.js';
import { MEM_LOG_DIRTY_PAGES } from './kvm/ioctls.js';
import { IRQCHIP_IOAPIC, IRQCHIP_PIC_MASTER, IRQCHIP_PIC_SLAVE } from './kvm/vm.js';
import { captureVcpuState, restoreVcpuState } from './vcpu/state.js';
import { cpuFeatureSummary, type VmDescription } from '../migration/description.js';
import type { Blobs } from '../migration/format.js';
import { checkBlobs, CLOCK_BLOB_SIZES, IRQCHIP_BLOB_SIZES, PIT_BLOB_SIZES, vcpuBlobs, vcpuStateFromBlobs } from '../migration/kvm-state.js';
import type { DeviceSnapshot, MigratableVm, RamRegionPort } from '../migration/vm-port.js';
import { MigrationManager } from '../migration/manager.js';
import { deviceId } from './pci-devices.js';
import { VcpuThrottle } from './throttle.js';

const PAGE_SHIFT = 12;
const CHIPS = [['pic_master', IRQCHIP_PIC_MASTER], ['pic_slave', IRQCHIP_PIC_SLAVE], ['ioapic', IRQCHIP_IOAPIC]] as const;

/** The machine as migration sees it. */
export class MachineMigrationPort implements MigratableVm {
  /**
   * Built once: the page loops on both sides index it per batch. adoptMemory maps the new memfds over the same
   * addresses, so these views stay valid for the VM's life.
   */
  readonly ram: readonly RamRegionPort[];
  private readonly kvmBitmaps: Uint8Array[];
  private readonly throttle: VcpuThrottle;

  constructor(private readonly machine: Machine, private readonly config: VmConfig, private readonly built: BuiltVm) {
    // KVM_GET_DIRTY_LOG fills one bit per page, in 64-bit words.
    this.ram = machine.ram.backings.map((b) => ({ gpa: b.range.gpa, size: b.range.size, bytes: b.bytes }));
    this.throttle = new VcpuThrottle(machine);
    this.kvmBitmaps = machine.ram.backings.map((b) => new Uint8Array(Math.ceil(b.range.size / 4096 / 64) * 8));
  }


  memoryFds(): number[] {
    return this.machine.ram.backings.map((b) => b.fd);
  }

  adoptMemory(fds: readonly number[]): void {
    const backings = this.machine.ram.backings as RamBacking[];
    if (fds.length !== backings.length) throw new StateError(`memory hand-over brought ${fds.length} regions, this VM has ${backings.length}`);
    // Check every descriptor before touching anything: mapping past the end of a memfd would fault on first access.
    fds.forEach((fd, i) => {
      const size = fs.fstatSync(fd).size;
      if (size !== backings[i].range.size) throw new StateError(`handed-over memory region ${i} has ${size} bytes, expected ${backings[i].range.size}`);
    });
    fds.forEach((fd, i) => {
      const b = backings[i];
      // The source's memfd goes over our own mapping, at the same address: the KVM slot, GuestMemory's views and every
      // typed array over the range stay valid, so no slot is deleted and re-created and no new 1 GiB ArrayBuffer is made
      // (V8 counts each as external memory and runs a full GC for it: 10-80 ms per GiB region, inside the downtime).
      mmapSharedAt(b.pointer, fd, b.range.size);
      closeFd(b.fd);
      backings[i] = { ...b, fd };
    });
  }

  quiesceDevices(): void {
    this.built.pci.quiesce(true);
  }

  unquiesceDevices(): void {
    this.built.pci.quiesce(false);
  }

  get vcpuCount(): number {
    return this.machine.vcpuCount;
  }

  description(): VmDescription {
    return {
      machineType: this.config.machineType,
      memory: { size: this.config.memSize, ranges: this.ram.map((r) => ({ gpa: r.gpa, size: r.size })) },
      vcpus: this.config.cpus,
      cpuFeatures: cpuFeatureSummary(vcpuCpuid(this.built.supportedCpuid, 0, this.config.cpus)),
      devices: this.config.devices.map((d) => ({
        id: deviceId(d),
        type: d.driver,
        pciAddress: `00:${d.addr.slot.toString(16).padStart(2, '0')}.${d.addr.function}`,
        attributes: (d.driver === 'virtio-blk-pci' ? { file: d.drive.file, serial: d.serial ?? null, readonly: d.drive.readonly } : { mac: d.mac ?? null }) as Record<string, string | boolean | null>,
      })),
    };
  }

  cpuVendor(): string {
    const leaf0 = this.built.supportedCpuid.find((e) => e.function === 0);
    if (!leaf0) return 'unknown';
    const b = Buffer.alloc(12);
    b.writeUInt32LE(leaf0.ebx, 0);
    b.writeUInt32LE(leaf0.edx, 4);
    b.writeUInt32LE(leaf0.ecx, 8);
    return b.toString('latin1');
  }

  isRunning(): boolean {
    return this.machine.state === 'running';
  }

  setRunState(state: 'running' | 'paused' | 'finish-migrate' | 'postmigrate' | 'inmigrate'): void {
    const before = this.machine.state;
    this.machine.setState(state);
    if (state === 'running' && before !== 'running') this.machine.emit('event', { name: 'RESUME' });
    if (before === 'running' && state !== 'running') this.machine.emit('event', { name: 'STOP' });
  }

  pauseVcpus(): Promise<void> {
    return this.machine.pauseVcpus();
  }

  resumeVcpus(): void {
    this.machine.resumeVcpus();
  }

  populatedPages(region: number): Uint32Array {
    const b = this.machine.ram.backings[region];
    const bitmap = new Uint32Array(Math.ceil(b.range.size / 4096 / 32));
    for (const [start, end] of dataExtents(b.fd, b.range.size)) {
      for (let p = start >>> PAGE_SHIFT, last = Math.ceil(end / 4096); p < last; p++) bitmap[p >>> 5] |= 1 << (p & 31);
    }
    return bitmap;
  }

  private setLogging(on: boolean): void {
    for (const b of this.machine.ram.backings) this.machine.vm.setUserMemoryRegion(b.slot, on ? MEM_LOG_DIRTY_PAGES : 0, b.range.gpa, b.range.size, b.hostAddress);
  }

  startDirtyLog(): void {
    this.setLogging(true);
    this.machine.memory.startDirtyTracking();
  }

  stopDirtyLog(): void {
    this.setLogging(false);
    this.machine.memory.stopDirtyTracking();
  }

  takeDirtyPages(region: number): Uint32Array {
    const kvm = this.kvmBitmaps[region];
    kvm.fill(0);
    this.machine.vm.getDirtyLog(this.machine.ram.backings[region].slot, kvm, addressOf(kvm));
    const devices = this.machine.memory.takeDirtyBitmap(region);
    const words = new Uint32Array(kvm.buffer, kvm.byteOffset, devices.length);
    for (let i = 0; i < devices.length; i++) devices[i] |= words[i];
    return devices;
  }

  async drainDevices(): Promise<void> {
    await this.built.pci.drain();
  }

  saveVcpu(index: number): Blobs {
    return vcpuBlobs(captureVcpuState(this.machine.vcpus[index].fd, this.machine.msrIndices));
  }

  restoreVcpu(index: number, blobs: Blobs): void {
    if (index >= this.machine.vcpuCount) throw new StateError(`VCPU_STATE for vCPU ${index}, but this VM has ${this.machine.vcpuCount}`);
    restoreVcpuState(this.machine.vcpus[index].fd, vcpuStateFromBlobs(index, blobs));
  }

  saveIrqchip(): Blobs {
    return new Map(CHIPS.map(([name, id]) => [name, this.machine.vm.getIrqchip(id)]));
  }

  restoreIrqchip(blobs: Blobs): void {
    checkBlobs('IRQCHIP', blobs, IRQCHIP_BLOB_SIZES);
    for (const [name, id] of CHIPS) {
      const blob = blobs.get(name)!;
      new DataView(blob.buffer, blob.byteOffset, 4).setUint32(0, id, true);
      this.machine.vm.setIrqchip(blob);
    }
  }

  savePit(): Blobs {
    return new Map([['pit2', this.machine.vm.getPit2()]]);
  }

  restorePit(blobs: Blobs): void {
    checkBlobs('PIT', blobs, PIT_BLOB_SIZES);
    this.machine.vm.setPit2(blobs.get('pit2')!);
  }

  saveClock(): Blobs {
    return new Map([['clock', this.machine.vm.getClock().raw]]);
  }

  /**
   * KVM_SET_CLOCK with the source's kvm_clock_data as read: it carries KVM_CLOCK_REALTIME and the source's
   * realtime, so KVM advances kvmclock by the time the state spent in flight and guest time neither stops nor jumps.
   */
  restoreClock(blobs: Blobs, advance: boolean): void {
    checkBlobs('CLOCK', blobs, CLOCK_BLOB_SIZES);
    const blob = Uint8Array.from(blobs.get('clock')!);
    const dv = new DataView(blob.buffer);
    const KVM_CLOCK_REALTIME = 1 << 2;
    // Keep only the flag KVM_SET_CLOCK acts on (TSC_STABLE and HOST_TSC describe the source host), and only when the
    // clock should catch up with the time in flight.
    dv.setUint32(8, advance ? dv.getUint32(8, true) & KVM_CLOCK_REALTIME : 0, true);
    kvmIoctl(this.machine.vm.fd, 'SET_CLOCK', blob);
  }

  saveDevices(): DeviceSnapshot[] {
    return this.machine.devices.map((d) => ({ id: d.id, version: d.version, state: d.saveState() }));
  }

  restoreDevice(snapshot: DeviceSnapshot): void {
    const d = this.machine.devices.find((x) => x.id === snapshot.id);
    if (!d) throw new StateError(`device state for '${snapshot.id}', which this VM does not have`);
    if (snapshot.version > d.version) throw new StateError(`device '${snapshot.id}' state version ${snapshot.version} is newer than this build's ${d.version}`);
    d.restoreState(snapshot.state);
  }

  async setThrottle(percent: number): Promise<void> {
    if (percent > 0) this.throttle.set(percent);
    else await this.throttle.stop();
  }

  afterIncoming(): void {
    // Restored configuration spaces carry BAR addresses: map them (and their ioeventfds) before the guest runs.
    this.built.pci.root.syncAllBars();
    this.built.pci.announce();
  }
}

/** Creates the migration manager for a VM and, with -incoming, starts waiting for the stream. */
export function startMigrationFor(config: VmConfig, built: BuiltVm, log: Logger): MigrationManager {
  const { machine } = built;
  const port = new MachineMigrationPort(machine, config, built);
  const manager = new MigrationManager({
    vm: port,
    log: (m) => log.info(m),
    onIncomingFailed: (message) => {
      log.error(`incoming migration failed: ${message}`);
      process.stderr.write(`tsvirt: incoming migration failed: ${message}\n`);
      machine.quit(1);
    },
  });
  if (config.incoming?.kind === 'defer') manager.deferIncoming(config.startPaused);
  // A file: restore runs the guest as soon as it is done: main.ts starts it once QMP is up (see beginIncoming).
  if (config.incoming && config.incoming.kind !== 'file') beginIncoming(config, manager);
  return manager;
}

/** Starts the -incoming migration: listening for tcp:/unix:, restoring for file:. */
export function beginIncoming(config: VmConfig, manager: MigrationManager): void {
  const inc = config.incoming;
  if (!inc || inc.kind === 'defer') return;
  // The command line already parsed the URI into the same shape a migration address has.
  void manager.incoming(inc, config.startPaused).catch(() => {});
}
