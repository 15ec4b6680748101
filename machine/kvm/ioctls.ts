// Every KVM ioctl number tsvirt uses, computed as <linux/kvm.h> does (checked against the header by a test).

const KVMIO = 0xae;
const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}
const io = (nr: number) => ioc(IOC_NONE, nr, 0);
const ior = (nr: number, size: number) => ioc(IOC_READ, nr, size);
const iow = (nr: number, size: number) => ioc(IOC_WRITE, nr, size);
const iowr = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, nr, size);

/** ioctl request numbers, keyed by their names in kvm.h. */
export const KVM = {
  // system fd
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  GET_MSR_INDEX_LIST: iowr(0x02, 4),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, 8),
  // vm fd
  CREATE_VCPU: io(0x41),
  GET_DIRTY_LOG: iow(0x42, 16),
  SET_USER_MEMORY_REGION: iow(0x46, 32),
  SET_TSS_ADDR: io(0x47),
  SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  CREATE_IRQCHIP: io(0x60),
  IRQ_LINE: iow(0x61, 8),
  GET_IRQCHIP: iowr(0x62, 520),
  SET_IRQCHIP: ior(0x63, 520),
  SET_GSI_ROUTING: iow(0x6a, 8),
  IRQFD: iow(0x76, 32),
  CREATE_PIT2: iow(0x77, 64),
  IOEVENTFD: iow(0x79, 64),
  SET_CLOCK: iow(0x7b, 48),
  GET_CLOCK: ior(0x7c, 48),
  GET_PIT2: ior(0x9f, 112),
  SET_PIT2: iow(0xa0, 112),
  ENABLE_CAP: iow(0xa3, 104),
  SIGNAL_MSI: iow(0xa5, 32),
  CLEAR_DIRTY_LOG: iowr(0xc0, 24),
  // vcpu fd
  RUN: io(0x80),
  GET_REGS: ior(0x81, 144),
  SET_REGS: iow(0x82, 144),
  GET_SREGS: ior(0x83, 312),
  SET_SREGS: iow(0x84, 312),
  GET_MSRS: iowr(0x88, 8),
  SET_MSRS: iow(0x89, 8),
  GET_FPU: ior(0x8c, 416),
  SET_FPU: iow(0x8d, 416),
  GET_LAPIC: ior(0x8e, 1024),
  SET_LAPIC: iow(0x8f, 1024),
  SET_CPUID2: iow(0x90, 8),
  GET_MP_STATE: ior(0x98, 4),
  SET_MP_STATE: iow(0x99, 4),
  GET_VCPU_EVENTS: ior(0x9f, 64),
  SET_VCPU_EVENTS: iow(0xa0, 64),
  GET_DEBUGREGS: ior(0xa1, 128),
  SET_DEBUGREGS: iow(0xa2, 128),
  GET_TSC_KHZ: io(0xa3),
  GET_XSAVE: ior(0xa4, 4096),
  SET_XSAVE: iow(0xa5, 4096),
  GET_XCRS: ior(0xa6, 392),
  SET_XCRS: iow(0xa7, 392),
  KVMCLOCK_CTRL: io(0xad),
  GET_XSAVE2: ior(0xcf, 4096),
} as const;

export type IoctlName = keyof typeof KVM;

/** KVM_CAP_* numbers tsvirt asks about. */
export const CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  PIT2: 33,
  IRQ_ROUTING: 25,
  IRQFD: 32,
  IOEVENTFD: 36,
  SIGNAL_MSI: 77,
  ADJUST_CLOCK: 39,
  VCPU_EVENTS: 41,
  DEBUGREGS: 50,
  XSAVE: 55,
  XCRS: 56,
  MAX_VCPUS: 66,
  IMMEDIATE_EXIT: 136,
  MANUAL_DIRTY_LOG_PROTECT2: 168,
  XSAVE2: 208,
} as const;

/** kvm_run.exit_reason values. */
export const EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
} as const;

/** kvm_run.system_event.type values. */
export const SYSTEM_EVENT = { SHUTDOWN: 1, RESET: 2, CRASH: 3 } as const;

/** kvm_userspace_memory_region.flags. */
export const MEM_LOG_DIRTY_PAGES = 1;
