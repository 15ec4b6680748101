// The KVM vCPU fd: KVM_RUN and every get/set of vCPU state, one method per ioctl.

import { closeFd } from './libc.js';
import { kvmIoctl, kvmIoctlVal } from './ioctl.js';
import {
  KVM_CPUID_ENTRY2, KVM_DEBUGREGS, KVM_FPU, KVM_LAPIC_STATE, KVM_MP_STATE, KVM_MSR_ENTRY, KVM_REGS, KVM_SREGS,
  KVM_VCPU_EVENTS, KVM_XCRS, KVM_XSAVE, decode, decodeRegs, decodeSregs, encode, encodeSregs,
  type CpuidEntry, type Regs, type Sregs,
} from './structs.js';

/** kvm_mp_state values. */
export const MP_STATE = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;

/** A KVM vCPU fd. Safe to use from any thread of the process while the vCPU is outside KVM_RUN. */
export class VcpuFd {
  constructor(readonly fd: number, readonly id: number) {}

  getRegs(): Regs {
    const buf = new Uint8Array(KVM_REGS.size);
    kvmIoctl(this.fd, 'GET_REGS', buf);
    return decodeRegs(buf);
  }

  setRegs(regs: Partial<Regs>): void {
    const buf = new Uint8Array(KVM_REGS.size);
    kvmIoctl(this.fd, 'GET_REGS', buf);
    encode(KVM_REGS, regs, buf);
    kvmIoctl(this.fd, 'SET_REGS', buf);
  }

  getSregs(): Sregs {
    return decodeSregs(this.getSregsRaw());
  }

  getSregsRaw(): Uint8Array {
    const buf = new Uint8Array(KVM_SREGS.size);
    kvmIoctl(this.fd, 'GET_SREGS', buf);
    return buf;
  }

  setSregsRaw(buf: Uint8Array): void {
    kvmIoctl(this.fd, 'SET_SREGS', buf);
  }

  /** Updates the given members of the special registers, keeping the rest. */
  setSregs(values: Partial<Sregs>): void {
    const buf = this.getSregsRaw();
    encodeSregs(values, buf);
    kvmIoctl(this.fd, 'SET_SREGS', buf);
  }

  setCpuid2(entries: readonly CpuidEntry[]): void {
    const buf = new Uint8Array(8 + entries.length * KVM_CPUID_ENTRY2.size);
    new DataView(buf.buffer).setUint32(0, entries.length, true);
    entries.forEach((e, i) => encode(KVM_CPUID_ENTRY2, { ...e }, buf, 8 + i * KVM_CPUID_ENTRY2.size));
    kvmIoctl(this.fd, 'SET_CPUID2', buf);
  }

  /** Reads the given MSRs; returns only those KVM could read. */
  getMsrs(indices: readonly number[]): Map<number, bigint> {
    const buf = new Uint8Array(8 + indices.length * KVM_MSR_ENTRY.size);
    new DataView(buf.buffer).setUint32(0, indices.length, true);
    indices.forEach((index, i) => encode(KVM_MSR_ENTRY, { index }, buf, 8 + i * KVM_MSR_ENTRY.size));
    const n = kvmIoctl(this.fd, 'GET_MSRS', buf);
    const out = new Map<number, bigint>();
    for (let i = 0; i < n; i++) {
      const e = decode(KVM_MSR_ENTRY, buf, 8 + i * KVM_MSR_ENTRY.size);
      out.set(e.index as number, e.data as bigint);
    }
    return out;
  }

  /** Writes MSRs; returns how many KVM accepted (it stops at the first it refuses). */
  setMsrs(msrs: ReadonlyMap<number, bigint>): number {
    const entries = [...msrs];
    const buf = new Uint8Array(8 + entries.length * KVM_MSR_ENTRY.size);
    new DataView(buf.buffer).setUint32(0, entries.length, true);
    entries.forEach(([index, data], i) => encode(KVM_MSR_ENTRY, { index, data }, buf, 8 + i * KVM_MSR_ENTRY.size));
    return kvmIoctl(this.fd, 'SET_MSRS', buf);
  }

  private getBlob(name: 'GET_FPU' | 'GET_LAPIC' | 'GET_VCPU_EVENTS' | 'GET_DEBUGREGS' | 'GET_XCRS' | 'GET_XSAVE' | 'GET_MP_STATE', size: number): Uint8Array {
    const buf = new Uint8Array(size);
    kvmIoctl(this.fd, name, buf);
    return buf;
  }

  getFpu(): Uint8Array { return this.getBlob('GET_FPU', KVM_FPU.size); }
  setFpu(b: Uint8Array): void { kvmIoctl(this.fd, 'SET_FPU', b); }
  getLapic(): Uint8Array { return this.getBlob('GET_LAPIC', KVM_LAPIC_STATE.size); }
  setLapic(b: Uint8Array): void { kvmIoctl(this.fd, 'SET_LAPIC', b); }
  getVcpuEvents(): Uint8Array { return this.getBlob('GET_VCPU_EVENTS', KVM_VCPU_EVENTS.size); }
  setVcpuEvents(b: Uint8Array): void { kvmIoctl(this.fd, 'SET_VCPU_EVENTS', b); }
  getDebugRegs(): Uint8Array { return this.getBlob('GET_DEBUGREGS', KVM_DEBUGREGS.size); }
  setDebugRegs(b: Uint8Array): void { kvmIoctl(this.fd, 'SET_DEBUGREGS', b); }
  getXcrs(): Uint8Array { return this.getBlob('GET_XCRS', KVM_XCRS.size); }
  setXcrs(b: Uint8Array): void { kvmIoctl(this.fd, 'SET_XCRS', b); }
  getXsave(): Uint8Array { return this.getBlob('GET_XSAVE', KVM_XSAVE.size); }
  setXsave(b: Uint8Array): void { kvmIoctl(this.fd, 'SET_XSAVE', b); }

  getMpState(): number {
    return decode(KVM_MP_STATE, this.getBlob('GET_MP_STATE', KVM_MP_STATE.size)).mp_state as number;
  }

  setMpState(state: number): void {
    const buf = new Uint8Array(KVM_MP_STATE.size);
    encode(KVM_MP_STATE, { mp_state: state }, buf);
    kvmIoctl(this.fd, 'SET_MP_STATE', buf);
  }

  /** The guest TSC frequency in kHz. */
  getTscKhz(): number {
    return kvmIoctlVal(this.fd, 'GET_TSC_KHZ');
  }

  /** Tells the guest's kvmclock that the VM was paused, so its soft-lockup watchdog does not fire. */
  kvmclockCtrl(): void {
    kvmIoctlVal(this.fd, 'KVMCLOCK_CTRL');
  }

  close(): void {
    closeFd(this.fd);
  }
}
