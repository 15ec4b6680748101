// The KVM VM fd: memory slots, in-kernel irqchip and PIT, interrupt lines, clock, dirty log, vCPU creation.

import { closeFd } from './libc.js';
import { kvmIoctl, kvmIoctlVal } from './ioctl.js';
import {
  KVM_CLOCK_DATA, KVM_DIRTY_LOG, KVM_IOEVENTFD, KVM_IRQCHIP, KVM_IRQFD, KVM_IRQ_LEVEL, KVM_IRQ_ROUTING,
  KVM_IRQ_ROUTING_ENTRY, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MSI, KVM_PIT_CONFIG, KVM_PIT_STATE2,
  KVM_USERSPACE_MEMORY_REGION, decode, encode,
} from './structs.js';

/** KVM_PIT_SPEAKER_DUMMY: the PIT emulates the speaker port (0x61) so guests probing it do not exit. */
const PIT_SPEAKER_DUMMY = 1;

/** Identifies the three in-kernel irqchip parts for GET/SET_IRQCHIP. */
export const IRQCHIP_PIC_MASTER = 0;
export const IRQCHIP_PIC_SLAVE = 1;
export const IRQCHIP_IOAPIC = 2;

// Flags and route types from <linux/kvm.h>.
const IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
const IOEVENTFD_FLAG_PIO = 1 << 1;
const IOEVENTFD_FLAG_DEASSIGN = 1 << 2;
const IRQFD_FLAG_DEASSIGN = 1 << 0;
const IRQFD_FLAG_RESAMPLE = 1 << 1;
const IRQ_ROUTING_IRQCHIP = 1;
const IRQ_ROUTING_MSI = 2;

/** One KVM_SET_GSI_ROUTING entry: a GSI wired to an irqchip pin, or a GSI that sends an MSI message. */
export type GsiRoute =
  | { readonly gsi: number; readonly type: 'irqchip'; readonly irqchip: number; readonly pin: number }
  | { readonly gsi: number; readonly type: 'msi'; readonly addressLo: number; readonly addressHi: number; readonly data: number };

/** Options of KVM_IOEVENTFD: match one value only, port I/O instead of MMIO, or remove an earlier registration. */
export interface IoeventfdOptions {
  /** Signal only when the guest writes exactly this value (else any write of `len` bytes). */
  readonly datamatch?: number | bigint;
  /** A port address (KVM_PIO_BUS) rather than an MMIO address. */
  readonly pio?: boolean;
  /** Remove the registration with these same fd, address, length, datamatch and pio. */
  readonly deassign?: boolean;
}

/** Options of KVM_IRQFD. */
export interface IrqfdOptions {
  /** Detach the eventfd from the GSI. */
  readonly deassign?: boolean;
  /** Level-triggered irqchip GSIs: KVM signals this eventfd when the guest EOIs, so the device can re-assert. */
  readonly resampleFd?: number;
}

/** A KVM VM fd. */
export class VmFd {
  constructor(readonly fd: number, readonly vcpuMmapSize: number) {}

  setUserMemoryRegion(slot: number, flags: number, gpa: number, size: number, hostAddress: bigint): void {
    const buf = new Uint8Array(KVM_USERSPACE_MEMORY_REGION.size);
    encode(KVM_USERSPACE_MEMORY_REGION, { slot, flags, guest_phys_addr: BigInt(gpa), memory_size: BigInt(size), userspace_addr: hostAddress }, buf);
    kvmIoctl(this.fd, 'SET_USER_MEMORY_REGION', buf);
  }

  /** KVM_SET_TSS_ADDR: three pages KVM needs on Intel, placed inside the PCI hole. */
  setTssAddr(addr: number): void {
    kvmIoctlVal(this.fd, 'SET_TSS_ADDR', addr);
  }

  setIdentityMapAddr(addr: number): void {
    const buf = new Uint8Array(8);
    new DataView(buf.buffer).setBigUint64(0, BigInt(addr), true);
    kvmIoctl(this.fd, 'SET_IDENTITY_MAP_ADDR', buf);
  }

  createIrqchip(): void {
    kvmIoctl(this.fd, 'CREATE_IRQCHIP');
  }

  createPit2(): void {
    const buf = new Uint8Array(KVM_PIT_CONFIG.size);
    encode(KVM_PIT_CONFIG, { flags: PIT_SPEAKER_DUMMY }, buf);
    kvmIoctl(this.fd, 'CREATE_PIT2', buf);
  }

  /** Sets the level of an irqchip input (GSI). */
  irqLine(irq: number, level: boolean): void {
    const buf = new Uint8Array(KVM_IRQ_LEVEL.size);
    encode(KVM_IRQ_LEVEL, { irq, level: level ? 1 : 0 }, buf);
    kvmIoctl(this.fd, 'IRQ_LINE', buf);
  }

  createVcpu(id: number): number {
    return kvmIoctlVal(this.fd, 'CREATE_VCPU', id);
  }

  /** KVM_GET_DIRTY_LOG into `bitmap` (one bit per page of the slot); also re-arms tracking. */
  getDirtyLog(slot: number, bitmap: Uint8Array, bitmapAddress: bigint): void {
    const buf = new Uint8Array(KVM_DIRTY_LOG.size);
    encode(KVM_DIRTY_LOG, { slot, dirty_bitmap: bitmapAddress }, buf);
    void bitmap; // caller owns the storage at bitmapAddress; kept for clarity at call sites
    kvmIoctl(this.fd, 'GET_DIRTY_LOG', buf);
  }

  /** KVM_GET_CLOCK: the kvmclock base, in ns. */
  getClock(): { clock: bigint; flags: number; raw: Uint8Array } {
    const raw = new Uint8Array(KVM_CLOCK_DATA.size);
    kvmIoctl(this.fd, 'GET_CLOCK', raw);
    const d = decode(KVM_CLOCK_DATA, raw);
    return { clock: d.clock as bigint, flags: d.flags as number, raw };
  }

  setClock(clock: bigint): void {
    const buf = new Uint8Array(KVM_CLOCK_DATA.size);
    encode(KVM_CLOCK_DATA, { clock }, buf);
    kvmIoctl(this.fd, 'SET_CLOCK', buf);
  }

  getIrqchip(chipId: number): Uint8Array {
    const buf = new Uint8Array(KVM_IRQCHIP.size);
    encode(KVM_IRQCHIP, { chip_id: chipId }, buf);
    kvmIoctl(this.fd, 'GET_IRQCHIP', buf);
    return buf;
  }

  setIrqchip(state: Uint8Array): void {
    kvmIoctl(this.fd, 'SET_IRQCHIP', state);
  }

  getPit2(): Uint8Array {
    const buf = new Uint8Array(KVM_PIT_STATE2.size);
    kvmIoctl(this.fd, 'GET_PIT2', buf);
    return buf;
  }

  setPit2(state: Uint8Array): void {
    kvmIoctl(this.fd, 'SET_PIT2', state);
  }

  /** KVM_IOEVENTFD: a guest write of `len` bytes at `addr` signals eventfd `fd` inside KVM, without an exit to us. */
  ioeventfd(fd: number, addr: number | bigint, len: number, opts: IoeventfdOptions = {}): void {
    const buf = new Uint8Array(KVM_IOEVENTFD.size);
    const flags = (opts.datamatch !== undefined ? IOEVENTFD_FLAG_DATAMATCH : 0) | (opts.pio ? IOEVENTFD_FLAG_PIO : 0)
      | (opts.deassign ? IOEVENTFD_FLAG_DEASSIGN : 0);
    encode(KVM_IOEVENTFD, { datamatch: BigInt(opts.datamatch ?? 0), addr: BigInt(addr), len, fd, flags }, buf);
    kvmIoctl(this.fd, 'IOEVENTFD', buf);
  }

  /** KVM_IRQFD: a write to eventfd `fd` raises (edge) GSI `gsi` through the current routing table. */
  irqfd(fd: number, gsi: number, opts: IrqfdOptions = {}): void {
    const buf = new Uint8Array(KVM_IRQFD.size);
    const flags = (opts.deassign ? IRQFD_FLAG_DEASSIGN : 0) | (opts.resampleFd !== undefined ? IRQFD_FLAG_RESAMPLE : 0);
    encode(KVM_IRQFD, { fd, gsi, flags, resamplefd: opts.resampleFd ?? 0 }, buf);
    kvmIoctl(this.fd, 'IRQFD', buf);
  }

  /**
   * KVM_SET_GSI_ROUTING: replaces the WHOLE routing table, so callers must include the irqchip
   * routes of GSIs 0-23 (machine/host/gsi-routes.ts has KVM's default table) or ISA IRQs stop.
   */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const entry = KVM_IRQ_ROUTING_ENTRY.size;
    const buf = new Uint8Array(KVM_IRQ_ROUTING.size + routes.length * entry);
    encode(KVM_IRQ_ROUTING, { nr: routes.length, flags: 0 }, buf);
    routes.forEach((r, i) => {
      const base = KVM_IRQ_ROUTING.size + i * entry;
      const u = base + KVM_IRQ_ROUTING_ENTRY.fields.u[0];
      if (r.type === 'irqchip') {
        encode(KVM_IRQ_ROUTING_ENTRY, { gsi: r.gsi, type: IRQ_ROUTING_IRQCHIP, flags: 0 }, buf, base);
        encode(KVM_IRQ_ROUTING_IRQCHIP, { irqchip: r.irqchip, pin: r.pin }, buf, u);
      } else {
        encode(KVM_IRQ_ROUTING_ENTRY, { gsi: r.gsi, type: IRQ_ROUTING_MSI, flags: 0 }, buf, base);
        encode(KVM_IRQ_ROUTING_MSI, { address_lo: r.addressLo, address_hi: r.addressHi, data: r.data }, buf, u);
      }
    });
    kvmIoctl(this.fd, 'SET_GSI_ROUTING', buf);
  }

  /**
   * KVM_SIGNAL_MSI: delivers one MSI message now (one ioctl per interrupt; irqfd routes avoid that).
   * Returns false when KVM found no destination (the guest's APIC setup blocked it).
   */
  signalMsi(addressLo: number, addressHi: number, data: number): boolean {
    const buf = new Uint8Array(KVM_MSI.size);
    encode(KVM_MSI, { address_lo: addressLo, address_hi: addressHi, data }, buf);
    return kvmIoctl(this.fd, 'SIGNAL_MSI', buf) > 0;
  }

  close(): void {
    closeFd(this.fd);
  }
}
