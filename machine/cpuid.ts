// Builds each vCPU's CPUID from what KVM supports: APIC ids, topology, the hypervisor bit and KVM's paravirt leaves.

import type { CpuidEntry } from './kvm/structs.js';

const HYPERVISOR_BIT = 1 << 31; // leaf 1 ECX
const HTT_BIT = 1 << 28; // leaf 1 EDX
const KVM_SIGNATURE_LEAF = 0x40000000;

function bitsFor(n: number): number {
  let bits = 0;
  while (1 << bits < n) bits++;
  return bits;
}

/**
 * CPUID for vCPU `index` of `count`: one socket of `count` single-threaded cores, APIC id = index
 * (the MADT and MP table say the same). Leaves KVM reports (including its paravirt leaves
 * 0x40000000/0x40000001, which advertise kvmclock) are kept; the topology leaves are rewritten.
 */
export function vcpuCpuid(supported: readonly CpuidEntry[], index: number, count: number): CpuidEntry[] {
  const coreBits = bitsFor(count);
  const out: CpuidEntry[] = [];
  for (const s of supported) {
    const e = { ...s };
    switch (e.function) {
      case 1:
        e.ebx = ((e.ebx & 0x0000ffff) | ((count & 0xff) << 16) | ((index & 0xff) << 24)) >>> 0;
        e.ecx = (e.ecx | HYPERVISOR_BIT) >>> 0;
        e.edx = count > 1 ? (e.edx | HTT_BIT) >>> 0 : (e.edx & ~HTT_BIT) >>> 0;
        break;
      case 4:
        // Cores per package - 1 in EAX[31:26]; one thread shares each cache level per core.
        if ((e.eax & 0x1f) !== 0) e.eax = ((e.eax & 0x03ffffff) | (((count - 1) & 0x3f) << 26)) >>> 0;
        break;
      case 0xb:
      case 0x1f:
        if (e.index === 0) {
          e.eax = 0; e.ebx = 1; e.ecx = (1 << 8) | 0;
        } else if (e.index === 1) {
          e.eax = coreBits; e.ebx = count; e.ecx = (2 << 8) | 1;
        } else {
          e.eax = 0; e.ebx = 0; e.ecx = e.index;
        }
        e.edx = index;
        break;
    }
    out.push(e);
  }
  if (!out.some((e) => e.function === KVM_SIGNATURE_LEAF)) {
    // Older kernels leave the paravirt leaves out of GET_SUPPORTED_CPUID; without them a guest cannot find kvmclock.
    out.push({ function: KVM_SIGNATURE_LEAF, index: 0, flags: 0, eax: 0x40000001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d });
  }
  return out;
}
