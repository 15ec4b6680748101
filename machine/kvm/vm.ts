// The KVM VM fd: memory slots, in-kernel irqchip and PIT, interrupt lines, clock, dirty log, vCPU creation.

import { closeFd } from './libc.js';
import { kvmIoctl, kvmIoctlVal } from './ioctl.js';
import {
  KVM_CLOCK_DATA, KVM_DIRTY_LOG, KVM_IRQCHIP, KVM_IRQ_LEVEL, KVM_PIT_CONFIG, KVM_PIT_STATE2,
  KVM_USERSPACE_MEMORY_REGION, decode, encode,
} from './structs.js';

/** KVM_PIT_SPEAKER_DUMMY: the PIT emulates the speaker port (0x61) so guests probing it do not exit. */
const PIT_SPEAKER_DUMMY = 1;

/** Identifies the three in-kernel irqchip parts for GET/SET_IRQCHIP. */
export const IRQCHIP_PIC_MASTER = 0;
export const IRQCHIP_PIC_SLAVE = 1;
export const IRQCHIP_IOAPIC = 2;

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

  close(): void {
    closeFd(this.fd);
  }
}
