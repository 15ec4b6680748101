// The /dev/kvm system fd: API version, capabilities, supported CPUID and MSRs, VM creation.

import { KvmError, TsvirtError } from '../errors.js';
import { O_CLOEXEC, O_RDWR, openPath, closeFd } from './libc.js';
import { kvmIoctl, kvmIoctlVal } from './ioctl.js';
import { CAP } from './ioctls.js';
import { KVM_CPUID2, KVM_CPUID_ENTRY2, decode, type CpuidEntry } from './structs.js';
import { VmFd } from './vm.js';

/** /dev/kvm cannot be opened or is not usable. */
export class KvmUnavailableError extends TsvirtError {
  constructor(message: string) {
    super('ERR_KVM_UNAVAILABLE', message, 'KVMMissingCap');
  }
}

const MAX_CPUID_ENTRIES = 256;
const MAX_MSR_INDICES = 1024;

/** The KVM system fd. */
export class Kvm {
  private constructor(readonly fd: number) {}

  /** Opens /dev/kvm and checks the API version is 12. */
  static open(path = '/dev/kvm'): Kvm {
    let fd: number;
    try {
      fd = openPath(path, O_RDWR | O_CLOEXEC);
    } catch (e) {
      throw new KvmUnavailableError(`cannot open ${path}: ${(e as Error).message.replace(/^open \S+ failed: /, '')}`);
    }
    const kvm = new Kvm(fd);
    const version = kvm.getApiVersion();
    if (version !== 12) {
      closeFd(fd);
      throw new KvmUnavailableError(`${path} has KVM API version ${version}, tsvirt needs 12`);
    }
    return kvm;
  }

  getApiVersion(): number {
    return kvmIoctlVal(this.fd, 'GET_API_VERSION');
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, otherwise the capability's value. */
  checkExtension(cap: number): number {
    return kvmIoctlVal(this.fd, 'CHECK_EXTENSION', cap);
  }

  getVcpuMmapSize(): number {
    return kvmIoctlVal(this.fd, 'GET_VCPU_MMAP_SIZE');
  }

  /** Largest vCPU count KVM accepts for one VM. */
  maxVcpus(): number {
    return this.checkExtension(CAP.MAX_VCPUS) || this.checkExtension(CAP.NR_VCPUS) || 4;
  }

  getSupportedCpuid(): CpuidEntry[] {
    const buf = new Uint8Array(KVM_CPUID2.size + MAX_CPUID_ENTRIES * KVM_CPUID_ENTRY2.size);
    new DataView(buf.buffer).setUint32(0, MAX_CPUID_ENTRIES, true);
    kvmIoctl(this.fd, 'GET_SUPPORTED_CPUID', buf);
    const n = new DataView(buf.buffer).getUint32(0, true);
    const out: CpuidEntry[] = [];
    for (let i = 0; i < n; i++) out.push(decode(KVM_CPUID_ENTRY2, buf, 8 + i * KVM_CPUID_ENTRY2.size) as unknown as CpuidEntry);
    return out;
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSRs a VMM must save and restore. */
  getMsrIndexList(): number[] {
    const buf = new Uint8Array(4 + MAX_MSR_INDICES * 4);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, MAX_MSR_INDICES, true);
    kvmIoctl(this.fd, 'GET_MSR_INDEX_LIST', buf);
    const n = dv.getUint32(0, true);
    return Array.from({ length: n }, (_, i) => dv.getUint32(4 + i * 4, true));
  }

  createVm(): VmFd {
    const fd = kvmIoctlVal(this.fd, 'CREATE_VM', 0);
    return new VmFd(fd, this.getVcpuMmapSize());
  }

  close(): void {
    closeFd(this.fd);
  }
}

export { KvmError };
