// A paused vCPU's complete KVM state: captured and restored in the order KVM needs (reset and migration use it).

import type { VcpuFd } from '../kvm/vcpu.js';
import { KvmError } from '../errors.js';

/** MSR_IA32_TSC_DEADLINE: written only after the LAPIC is in TSC-deadline mode, or KVM ignores it. */
const MSR_TSC_DEADLINE = 0x6e0;

/** Everything KVM holds for one vCPU, as raw KVM structures (the migration stream sends them as-is). */
export interface VcpuState {
  regs: Uint8Array;
  sregs: Uint8Array;
  fpu: Uint8Array;
  xsave: Uint8Array;
  xcrs: Uint8Array;
  lapic: Uint8Array;
  events: Uint8Array;
  debugregs: Uint8Array;
  mpState: number;
  msrs: Map<number, bigint>;
}

/** The MSRs from KVM's list that this vCPU can actually read (KVM stops a batch at the first it refuses). */
export function readableMsrs(fd: VcpuFd, candidates: readonly number[]): number[] {
  return candidates.filter((index) => {
    try {
      return fd.getMsrs([index]).size === 1;
    } catch {
      return false;
    }
  });
}

export function captureVcpuState(fd: VcpuFd, msrIndices: readonly number[]): VcpuState {
  const regsBuf = new Uint8Array(144);
  // getRegs decodes; the raw form is what restore needs, so read it through the sregs-style raw path.
  const r = fd.getRegs();
  const dv = new DataView(regsBuf.buffer);
  Object.values(r).forEach((v, i) => dv.setBigUint64(i * 8, v, true));
  return {
    regs: regsBuf,
    sregs: fd.getSregsRaw(),
    fpu: fd.getFpu(),
    xsave: fd.getXsave(),
    xcrs: fd.getXcrs(),
    lapic: fd.getLapic(),
    events: fd.getVcpuEvents(),
    debugregs: fd.getDebugRegs(),
    mpState: fd.getMpState(),
    msrs: fd.getMsrs(msrIndices),
  };
}

export function restoreVcpuState(fd: VcpuFd, s: VcpuState): void {
  const dv = new DataView(s.regs.buffer, s.regs.byteOffset, 144);
  const names = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
  fd.setRegs(Object.fromEntries(names.map((n, i) => [n, dv.getBigUint64(i * 8, true)])));
  fd.setXsave(s.xsave);
  fd.setXcrs(s.xcrs);
  fd.setSregsRaw(s.sregs);
  const early = new Map([...s.msrs].filter(([i]) => i !== MSR_TSC_DEADLINE));
  const n = fd.setMsrs(early);
  if (n !== early.size) {
    const failed = [...early.keys()][n];
    throw new KvmError(`KVM_SET_MSRS (MSR 0x${failed.toString(16)})`, 22, 'EINVAL');
  }
  fd.setMpState(s.mpState);
  fd.setLapic(s.lapic);
  const deadline = s.msrs.get(MSR_TSC_DEADLINE);
  if (deadline !== undefined) fd.setMsrs(new Map([[MSR_TSC_DEADLINE, deadline]]));
  fd.setVcpuEvents(s.events);
  fd.setDebugRegs(s.debugregs);
}
