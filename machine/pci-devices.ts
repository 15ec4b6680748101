// Wires the PCIe root bus and the virtio-blk/virtio-net devices of the command line to the machine: BARs, ioeventfds, MSI routes, backends.

import type { Bus, BusDevice } from '../devices/bus.js';
import type { GuestMemory } from '../devices/guest-memory.js';
import { PciRootBus, type PciFunction } from '../devices/pci/host-bridge.js';
import { VirtioBlock } from '../devices/virtio/block.js';
import { VirtioNet } from '../devices/virtio/net.js';
import { VirtioPciDevice } from '../devices/virtio/pci-transport.js';
import type { MsiSink } from '../devices/pci/msix.js';
import type { DeviceConfig, VmConfig } from './config.js';
import { ConfigError } from './errors.js';
import { RawBlockFile } from './host/block-file.js';
import { MsiRouter, type IoeventfdBinding } from './host/msi-router.js';
import { Tap } from './host/tap.js';
import { qemuPcGsiRoutes } from './host/gsi-routes.js';
import { TapNetBackend } from './host/tap-backend.js';
import type { VmFd } from './kvm/vm.js';
import { PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_DATA_PORT, PCI_MMIO32_END, PCI_MMIO32_START, PCIE_ECAM_SIZE, PCIE_ECAM_START } from './layout.js';
import type { Logger } from './log.js';
import type { Resettable, StatefulDevice } from './machine.js';

/** The notify region's BAR in tsvirt's virtio-pci layout. */
const NOTIFY_BAR = 4;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const PCI_BAR0 = 0x10;

/** A block device as query-block reports it. */
export interface BlockInfo {
  readonly device: string;
  readonly file: string;
  readonly readonly: boolean;
  readonly sizeBytes: number;
}

/** What the machine keeps of the PCI wiring. */
export interface PciDevices {
  readonly root: PciRootBus;
  readonly blocks: BlockInfo[];
  /** Completes in-flight block I/O and flushes the images (migration switch-over, reset). */
  drain(): Promise<void>;
  /** Announces every NIC (after an incoming migration). */
  announce(): void;
  /** Stops (true) or restarts (false) NICs taking frames from their taps into guest memory. */
  quiesce(on: boolean): void;
  close(): void;
}

export interface PciWiringOptions {
  readonly config: VmConfig;
  readonly vm: VmFd;
  readonly memory: GuestMemory;
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly resettables: Resettable[];
  readonly devices: StatefulDevice[];
  readonly log: Logger;
  /** Lets an observer see MSIs (the device test mode). */
  readonly wrapMsi?: (inner: MsiSink) => MsiSink;
}

function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/** A stable locally administered MAC for a NIC without `mac=` (it must not change across migration). */
function defaultMac(d: DeviceConfig): string {
  return `52:54:00:12:34:${(0x56 + d.addr.slot).toString(16).padStart(2, '0').slice(-2)}`;
}

/** Stable device id: the user's, or one derived from the PCI address. */
export function deviceId(d: DeviceConfig): string {
  return d.id ?? `pci-00:${d.addr.slot.toString(16).padStart(2, '0')}.${d.addr.function}`;
}

/** Builds the root bus and every -device; errors name the flag. */
export function addPciDevices(o: PciWiringOptions): PciDevices {
  const { mmio, log } = o;
  const router = new MsiRouter(o.vm, { baseRoutes: qemuPcGsiRoutes() });
  const notifyBindings = new Map<PciFunction, IoeventfdBinding[]>();
  const names = new Map<PciFunction, string>();

  const onBarChange = (device: PciFunction, bar: number, oldAddr: bigint | null, newAddr: bigint | null) => {
    const region = device.barRegion(bar);
    const size = device.config.bar(bar)?.size ?? 0;
    if (!region || size === 0) return;
    if (oldAddr !== null) mmio.unregister(Number(oldAddr));
    if (newAddr !== null) {
      try {
        mmio.register(Number(newAddr), size, region, `${names.get(device) ?? 'pci'} BAR${bar}`);
      } catch (e) {
        log.warn(`guest placed ${names.get(device)} BAR${bar} at 0x${newAddr.toString(16)}: ${(e as Error).message}`);
        return;
      }
    }
    if (bar === NOTIFY_BAR) {
      const transport = device as unknown as VirtioPciDevice;
      notifyBindings.get(device)?.forEach((b, q) => b.move(newAddr === null ? null : newAddr + BigInt(transport.notifyOffset(q))));
    }
  };

  const root = new PciRootBus(onBarChange);
  o.pio.register(PCI_CONFIG_ADDRESS_PORT, 1, root.configIo.addressPort, 'pci-config-address');
  o.pio.register(PCI_CONFIG_DATA_PORT, 4, root.configIo.dataPort, 'pci-config-data');
  mmio.register(PCIE_ECAM_START, PCIE_ECAM_SIZE, root.ecam as BusDevice, 'pcie-ecam');

  const blocks: BlockInfo[] = [];
  const blockModels: VirtioBlock[] = [];
  const blockBackends: RawBlockFile[] = [];
  const nets: VirtioNet[] = [];
  const netBackends: { backend: TapNetBackend; net: VirtioNet }[] = [];
  const closers: (() => void)[] = [];
  let nextBar = PCI_MMIO32_START;

  for (const d of o.config.devices) {
    const id = deviceId(d);
    let model: VirtioBlock | VirtioNet;
    if (d.driver === 'virtio-blk-pci') {
      let backend: RawBlockFile;
      try {
        backend = RawBlockFile.open(d.drive.file, { readonly: d.drive.readonly, direct: d.drive.direct });
      } catch (e) {
        throw new ConfigError('drive', `id=${d.drive.id},file=${d.drive.file}: ${(e as { reason?: string }).reason ?? (e as Error).message}`);
      }
      closers.push(() => backend.close());
      blockBackends.push(backend);
      const blk = new VirtioBlock({ memory: o.memory, backend, readonly: d.drive.readonly, serial: d.serial });
      blockModels.push(blk);
      blocks.push({ device: id, file: d.drive.file, readonly: d.drive.readonly, sizeBytes: backend.size });
      model = blk;
    } else {
      let tap: Tap;
      try {
        tap = Tap.open(d.netdev.ifname ?? 'tap%d');
      } catch (e) {
        throw new ConfigError('netdev', `tap,id=${d.netdev.id}: ${(e as { reason?: string }).reason ?? (e as Error).message}`);
      }
      closers.push(() => tap.close());
      const backend = new TapNetBackend(tap, (m) => log.warn(`${id}: ${m}`));
      const net = new VirtioNet({ memory: o.memory, backend, mac: macBytes(d.mac ?? defaultMac(d)) });
      backend.startReceive((frame) => net.receive(frame));
      net.onRxBuffersAvailable(() => backend.resumeReceive());
      nets.push(net);
      netBackends.push({ backend, net });
      model = net;
    }
    const routed = router.sink(id);
    const sink = o.wrapMsi?.(routed) ?? routed;
    const transport = new VirtioPciDevice(model, { memory: o.memory, msi: sink, log: (m) => log.warn(`${id}: ${m}`) });
    names.set(transport, id);
    const bindings = transport.queues.map((_, q) => router.ioeventfdNotify(null, 2, undefined, () => transport.notify(q)));
    notifyBindings.set(transport, bindings);
    try {
      root.add(d.addr.slot, d.addr.function, transport, id);
    } catch (e) {
      throw new ConfigError('device', `${d.driver} ${id}: ${(e as Error).message}`);
    }
    nextBar = assignBars(root, d.addr.slot, d.addr.function, transport, nextBar);
    o.devices.push({ id, version: 1, saveState: () => transport.saveState(), restoreState: (s) => transport.restoreState(s as never) });
  }
  o.resettables.push({ reset: () => root.reset() });
  if (nextBar > PCI_MMIO32_END) throw new ConfigError('device', 'the devices need more BAR space than the 32-bit PCI window has');

  return {
    root,
    blocks,
    drain: async () => {
      await Promise.all(blockModels.map((b) => b.drain()));
      await Promise.all(blockBackends.map((b) => b.flush()));
    },
    announce: () => nets.forEach((n) => n.announce()),
    quiesce: (on) => netBackends.forEach(({ backend, net }) => (on ? backend.stopReceive() : backend.startReceive((f) => net.receive(f)))),
    close: () => {
      router.close();
      closers.forEach((c) => c());
    },
  };
}

/**
 * Places the function's BARs in the 32-bit window and enables decoding, as firmware would: tsvirt boots kernels
 * directly, and a guest (or Linux without pci=realloc) expects BARs it can use as they are.
 */
function assignBars(root: PciRootBus, slot: number, fn: number, device: PciFunction, next: number): number {
  const base = (slot << 15) | (fn << 12);
  const write32 = (reg: number, v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    root.ecam.write(base | reg, b);
  };
  for (let i = 0; i < 6; i++) {
    const spec = device.config.bar(i);
    if (!spec) continue;
    next = Math.ceil(next / spec.size) * spec.size;
    write32(PCI_BAR0 + 4 * i, next);
    if (spec.is64Bit) write32(PCI_BAR0 + 4 * (i + 1), 0);
    next += spec.size;
    if (spec.is64Bit) i++;
  }
  const cmd = new Uint8Array(2);
  new DataView(cmd.buffer).setUint16(0, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, true);
  root.ecam.write(base | PCI_COMMAND, cmd);
  return next;
}
