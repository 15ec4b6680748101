// Wires a VM from its configuration: KVM objects, RAM, chipset devices on the buses, the console, the boot images, the vCPUs.

import { Bus } from '../devices/bus.js';
import { Serial8250 } from '../devices/serial-8250.js';
import type { IrqLine } from '../devices/irq.js';
import type { MsiSink } from '../devices/pci/msix.js';
import { ConfigError } from './errors.js';
import type { VmConfig } from './config.js';
import { Kvm } from './kvm/system.js';
import { VcpuFd } from './kvm/vcpu.js';
import type { CpuidEntry } from './kvm/structs.js';
import { allocateRam } from './memory.js';
import { vcpuCpuid } from './cpuid.js';
import { readableMsrs } from './vcpu/state.js';
import { VcpuHandle } from './vcpu/handle.js';
import { SerialFastPath } from './vcpu/serial-fast-path.js';
import { Machine, type Resettable, type StatefulDevice } from './machine.js';
import type { Logger } from './log.js';
import { COM1_IRQ, COM1_PORT } from './layout.js';
import { openCharBackend } from './chardev/open.js';
import type { CharBackend } from './chardev/backend.js';
import { bootGuest, readBootImages } from './boot-images.js';
import { addChipset } from './chipset.js';
import { addPciDevices, type PciDevices } from './pci-devices.js';
import { qemuPcGsiRoutes } from './host/gsi-routes.js';

/** KVM's TSS needs three pages somewhere the guest does not use: just below the BIOS, inside the PCI hole. */
const KVM_TSS_ADDR = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDR = 0xfffb_c000;

/** Everything the process needs to run and later tear down a VM. */
export interface BuiltVm {
  readonly machine: Machine;
  readonly console: CharBackend;
  readonly serial: Serial8250;
  /** What KVM supports: the CONFIG section's CPU features come from it. */
  readonly supportedCpuid: readonly CpuidEntry[];
  /** The PCIe root bus and its virtio devices. */
  readonly pci: PciDevices;
}

export interface BuildOptions {
  readonly config: VmConfig;
  readonly log: Logger;
  readonly exit: (code: number) => void;
  /** Opens /dev/kvm; tests can point it elsewhere. */
  readonly kvmPath?: string;
  /** Observes interrupt lines and MSIs (the -mod-test device test mode records them for the test). */
  readonly interrupts?: InterruptTap;
}

/** Wraps interrupt outputs so something can watch them while they still reach KVM. */
export interface InterruptTap {
  line(gsi: number, inner: IrqLine): IrqLine;
  msiSink(inner: MsiSink): MsiSink;
}

/** One vCPU's exit counters for the log line at exit: posted to the main thread, and answered in the worker. */
function describeExits(v: VcpuHandle): string {
  const c = v.exitCounts();
  return `vcpu${v.index} pio=${c.pio} mmio=${c.mmio} serial-fast thr=${c.serial.thrWrites} lsr=${c.serial.lsrReads} ring-full=${c.serial.ringFull}`;
}

/** Builds the VM described by `config` (vCPUs created but not started). */
export async function buildVm(opts: BuildOptions): Promise<BuiltVm> {
  const { config, log } = opts;
  const images = config.testSocket && !config.kernel ? undefined : readBootImages(config);
  const kvm = Kvm.open(opts.kvmPath);
  const maxVcpus = kvm.maxVcpus();
  if (config.cpus > maxVcpus) throw new ConfigError('smp', `${config.cpus} CPUs requested, KVM allows at most ${maxVcpus}`);
  const vm = kvm.createVm();
  vm.setTssAddr(KVM_TSS_ADDR);
  vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
  vm.createIrqchip();
  // The MADT and MP table put ISA IRQ0 on IOAPIC pin 2 (as PCs wire the PIT); KVM's default routes GSI 0 to pin 0.
  vm.setGsiRouting(qemuPcGsiRoutes());
  vm.createPit2();
  const ram = allocateRam(vm, config.memSize);

  const pio = new Bus('pio', (m) => log.debug(m));
  const mmio = new Bus('mmio', (m) => log.debug(m));
  const resettables: Resettable[] = [];
  const devices: StatefulDevice[] = [];

  let machine: Machine | undefined;
  const console = await openCharBackend(config.serial, () => machine?.quit(0));
  const tapLine = (gsi: number, inner: IrqLine) => opts.interrupts?.line(gsi, inner) ?? inner;
  const irq4 = tapLine(COM1_IRQ, { set: (level: boolean) => vm.irqLine(COM1_IRQ, level) });
  const serial = new Serial8250(irq4, (bytes) => console.write(bytes));
  // The vCPU workers answer COM1's THR writes and LSR reads themselves while the model allows it (vcpu/serial-fast-path.ts;
  // TSVIRT_SERIAL_FAST_PATH=off posts every access). Changes to the model that are not guest accesses are republished here.
  const fastPath = process.env.TSVIRT_SERIAL_FAST_PATH === 'off' ? undefined : new SerialFastPath(serial, COM1_PORT);
  const republish = () => fastPath?.publish();
  const serialReset = serial.saveState();
  resettables.push({ reset: () => { serial.restoreState(serialReset); republish(); } });
  console.setInputSink((bytes) => { const n = serial.enqueueInput(bytes); republish(); return n; });
  serial.onInputSpace(() => console.resumeInput());
  pio.register(COM1_PORT, 8, fastPath?.busDevice ?? serial, 'serial0');
  devices.push({ id: 'serial0', version: 1, saveState: () => serial.saveState(), restoreState: (s) => { serial.restoreState(s as never); republish(); } });
  republish();

  const chipset = addChipset({ pio, vm, memSize: config.memSize, resettables, devices, tapLine, onPowerOff: () => machine?.guestPowerOff(), onReset: () => machine?.guestReset() });

  const pci = addPciDevices({ config, vm, memory: ram.memory, pio, mmio, resettables, devices, log, wrapMsi: opts.interrupts ? (m) => opts.interrupts!.msiSink(m) : undefined });
  devices.splice(devices.length - config.devices.length, 0, {
    id: 'pcie.0', version: 1, saveState: () => pci.root.saveState(), restoreState: (s) => pci.root.restoreState(s as never),
  });

  const supportedCpuid = kvm.getSupportedCpuid();
  const msrCandidates = kvm.getMsrIndexList();
  const msrIndices: number[] = [];
  const createVcpu = (index: number, exits: ConstructorParameters<typeof VcpuHandle>[3]) => {
    const fd = new VcpuFd(vm.createVcpu(index), index);
    fd.setCpuid2(vcpuCpuid(supportedCpuid, index, config.cpus));
    if (index === 0) msrIndices.push(...readableMsrs(fd, msrCandidates));
    return new VcpuHandle(fd, index, vm.vcpuMmapSize, exits, fastPath);
  };

  machine = new Machine({
    name: config.name,
    kvm, vm, ram, pio, mmio, log,
    vcpuCount: config.cpus,
    boot: (m) => images && bootGuest(m, config, images),
    resettables,
    devices,
    noReboot: config.noReboot,
    noShutdown: config.noShutdown,
    exit: (code) => {
      if (machine!.vcpus.length > 0) log.info(`vCPU exits: ${machine!.vcpus.map(describeExits).join('; ')}`);
      console.close();
      pci.close();
      opts.exit(code);
    },
    createVcpu,
    msrIndices,
  });
  machine.powerButton = () => chipset.pressPowerButton();
  return { machine, console, serial, supportedCpuid, pci };
}
