// Byte layouts of the KVM structures tsvirt passes to ioctls, with codecs (checked against kvm.h by a test).

type FieldType = 'u8' | 'u16' | 'u32' | 'u64';

/** A C struct: total size and each scalar field's offset and type. */
export interface Layout {
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, readonly [number, FieldType]>>;
}

function layout(name: string, size: number, fields: Record<string, readonly [number, FieldType]>): Layout {
  return { name, size, fields };
}

/** Fields of a layout decoded: u64 as bigint, smaller types as number. */
export type Decoded = Record<string, number | bigint>;

export function decode(l: Layout, buf: Uint8Array, base = 0): Decoded {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Decoded = {};
  for (const [k, [off, t]] of Object.entries(l.fields)) {
    const o = base + off;
    out[k] = t === 'u8' ? dv.getUint8(o) : t === 'u16' ? dv.getUint16(o, true) : t === 'u32' ? dv.getUint32(o, true) : dv.getBigUint64(o, true);
  }
  return out;
}

/** Writes the given fields (others untouched). */
export function encode(l: Layout, values: Partial<Decoded>, buf: Uint8Array, base = 0): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const [k, v] of Object.entries(values)) {
    const f = l.fields[k];
    if (!f || v === undefined) throw new Error(`${l.name} has no field ${k}`);
    const [off, t] = f;
    const o = base + off;
    if (t === 'u64') dv.setBigUint64(o, BigInt(v), true);
    else if (t === 'u32') dv.setUint32(o, Number(v), true);
    else if (t === 'u16') dv.setUint16(o, Number(v), true);
    else dv.setUint8(o, Number(v));
  }
}

const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;

export const KVM_REGS = layout('kvm_regs', 144, Object.fromEntries(REG_NAMES.map((n, i) => [n, [i * 8, 'u64'] as const])));

export const KVM_SEGMENT = layout('kvm_segment', 24, {
  base: [0, 'u64'], limit: [8, 'u32'], selector: [12, 'u16'], type: [14, 'u8'], present: [15, 'u8'], dpl: [16, 'u8'],
  db: [17, 'u8'], s: [18, 'u8'], l: [19, 'u8'], g: [20, 'u8'], avl: [21, 'u8'], unusable: [22, 'u8'],
});
export const KVM_DTABLE = layout('kvm_dtable', 16, { base: [0, 'u64'], limit: [8, 'u16'] });

const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const CONTROL = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;
/** Offsets of kvm_sregs members (segments are kvm_segment, gdt/idt kvm_dtable). */
export const KVM_SREGS = layout('kvm_sregs', 312, {
  ...Object.fromEntries(SEGMENTS.map((n, i) => [n, [i * 24, 'u64'] as const])),
  gdt: [192, 'u64'], idt: [208, 'u64'],
  ...Object.fromEntries(CONTROL.map((n, i) => [n, [224 + i * 8, 'u64'] as const])),
  interrupt_bitmap: [280, 'u64'],
});

export interface Segment {
  base: bigint; limit: number; selector: number; type: number; present: number; dpl: number;
  db: number; s: number; l: number; g: number; avl: number; unusable: number;
}
export interface DescriptorTable { base: bigint; limit: number }
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apic_base: bigint;
}

export function decodeRegs(buf: Uint8Array): Regs {
  return decode(KVM_REGS, buf) as Regs;
}

export function decodeSregs(buf: Uint8Array): Sregs {
  const s: Record<string, unknown> = {};
  for (const n of SEGMENTS) s[n] = decode(KVM_SEGMENT, buf, KVM_SREGS.fields[n][0]);
  s.gdt = decode(KVM_DTABLE, buf, 192);
  s.idt = decode(KVM_DTABLE, buf, 208);
  for (const n of CONTROL) s[n] = decode(KVM_SREGS, buf)[n];
  return s as unknown as Sregs;
}

/** Writes the given members of kvm_sregs into `buf` (a buffer read with KVM_GET_SREGS). */
export function encodeSregs(values: Partial<Sregs>, buf: Uint8Array): void {
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    if ((SEGMENTS as readonly string[]).includes(k)) encode(KVM_SEGMENT, v as unknown as Decoded, buf, KVM_SREGS.fields[k][0]);
    else if (k === 'gdt' || k === 'idt') encode(KVM_DTABLE, v as unknown as Decoded, buf, KVM_SREGS.fields[k][0]);
    else encode(KVM_SREGS, { [k]: v as bigint }, buf);
  }
}

export const KVM_USERSPACE_MEMORY_REGION = layout('kvm_userspace_memory_region', 32, {
  slot: [0, 'u32'], flags: [4, 'u32'], guest_phys_addr: [8, 'u64'], memory_size: [16, 'u64'], userspace_addr: [24, 'u64'],
});

export const KVM_CPUID2 = layout('kvm_cpuid2', 8, { nent: [0, 'u32'] });
export const KVM_CPUID_ENTRY2 = layout('kvm_cpuid_entry2', 40, {
  function: [0, 'u32'], index: [4, 'u32'], flags: [8, 'u32'], eax: [12, 'u32'], ebx: [16, 'u32'], ecx: [20, 'u32'], edx: [24, 'u32'],
});
export interface CpuidEntry { function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number }

export const KVM_MSRS = layout('kvm_msrs', 8, { nmsrs: [0, 'u32'] });
export const KVM_MSR_ENTRY = layout('kvm_msr_entry', 16, { index: [0, 'u32'], data: [8, 'u64'] });

export const KVM_RUN_LAYOUT = layout('kvm_run', 2352, {
  request_interrupt_window: [0, 'u8'], immediate_exit: [1, 'u8'], exit_reason: [8, 'u32'],
  ready_for_interrupt_injection: [12, 'u8'], if_flag: [13, 'u8'], cr8: [16, 'u64'], apic_base: [24, 'u64'],
  // union members, all at offset 32
  io_direction: [32, 'u8'], io_size: [33, 'u8'], io_port: [34, 'u16'], io_count: [36, 'u32'], io_data_offset: [40, 'u64'],
  mmio_phys_addr: [32, 'u64'], mmio_data: [40, 'u64'], mmio_len: [48, 'u32'], mmio_is_write: [52, 'u8'],
  fail_entry_reason: [32, 'u64'], fail_entry_cpu: [40, 'u32'],
  internal_suberror: [32, 'u32'], internal_ndata: [36, 'u32'], internal_data: [40, 'u64'],
  system_event_type: [32, 'u32'], system_event_ndata: [36, 'u32'],
});

export const KVM_IRQ_LEVEL = layout('kvm_irq_level', 8, { irq: [0, 'u32'], level: [4, 'u32'] });
export const KVM_PIT_CONFIG = layout('kvm_pit_config', 64, { flags: [0, 'u32'] });
export const KVM_CLOCK_DATA = layout('kvm_clock_data', 48, { clock: [0, 'u64'], flags: [8, 'u32'], realtime: [16, 'u64'], host_tsc: [24, 'u64'] });
export const KVM_DIRTY_LOG = layout('kvm_dirty_log', 16, { slot: [0, 'u32'], dirty_bitmap: [8, 'u64'] });
export const KVM_IRQCHIP = layout('kvm_irqchip', 520, { chip_id: [0, 'u32'] });
export const KVM_PIT_STATE2 = layout('kvm_pit_state2', 112, { flags: [72, 'u32'] });
export const KVM_MP_STATE = layout('kvm_mp_state', 4, { mp_state: [0, 'u32'] });
export const KVM_VCPU_EVENTS = layout('kvm_vcpu_events', 64, { flags: [20, 'u32'] });
export const KVM_DEBUGREGS = layout('kvm_debugregs', 128, { dr6: [32, 'u64'], dr7: [40, 'u64'], flags: [48, 'u64'] });
export const KVM_XCRS = layout('kvm_xcrs', 392, { nr_xcrs: [0, 'u32'], flags: [4, 'u32'] });
export const KVM_FPU = layout('kvm_fpu', 416, { fcw: [128, 'u16'], mxcsr: [408, 'u32'] });
export const KVM_LAPIC_STATE = layout('kvm_lapic_state', 1024, {});
export const KVM_XSAVE = layout('kvm_xsave', 4096, {});

export const KVM_IOEVENTFD = layout('kvm_ioeventfd', 64, {
  datamatch: [0, 'u64'], addr: [8, 'u64'], len: [16, 'u32'], fd: [20, 'u32'], flags: [24, 'u32'],
});
export const KVM_IRQFD = layout('kvm_irqfd', 32, { fd: [0, 'u32'], gsi: [4, 'u32'], flags: [8, 'u32'], resamplefd: [12, 'u32'] });
/** Header of KVM_SET_GSI_ROUTING's argument; `nr` kvm_irq_routing_entry follow it. */
export const KVM_IRQ_ROUTING = layout('kvm_irq_routing', 8, { nr: [0, 'u32'], flags: [4, 'u32'] });
/** One route; its union `u` holds a kvm_irq_routing_irqchip or a kvm_irq_routing_msi (encoded at base + u). */
export const KVM_IRQ_ROUTING_ENTRY = layout('kvm_irq_routing_entry', 48, { gsi: [0, 'u32'], type: [4, 'u32'], flags: [8, 'u32'], u: [16, 'u32'] });
export const KVM_IRQ_ROUTING_IRQCHIP = layout('kvm_irq_routing_irqchip', 8, { irqchip: [0, 'u32'], pin: [4, 'u32'] });
export const KVM_IRQ_ROUTING_MSI = layout('kvm_irq_routing_msi', 16, { address_lo: [0, 'u32'], address_hi: [4, 'u32'], data: [8, 'u32'] });
export const KVM_MSI = layout('kvm_msi', 32, { address_lo: [0, 'u32'], address_hi: [4, 'u32'], data: [8, 'u32'], flags: [12, 'u32'], devid: [16, 'u32'] });
/** The chip states inside kvm_irqchip (at offset 8): what tests and diagnostics read pending IRQs from. */
export const KVM_PIC_STATE = layout('kvm_pic_state', 16, { last_irr: [0, 'u8'], irr: [1, 'u8'], imr: [2, 'u8'], isr: [3, 'u8'] });
export const KVM_IOAPIC_STATE = layout('kvm_ioapic_state', 216, { base_address: [0, 'u64'], ioregsel: [8, 'u32'], id: [12, 'u32'], irr: [16, 'u32'], redirtbl: [24, 'u64'] });

/** Every layout, for the header check. */
export const ALL_LAYOUTS: readonly Layout[] = [
  KVM_REGS, KVM_SEGMENT, KVM_DTABLE, KVM_SREGS, KVM_USERSPACE_MEMORY_REGION, KVM_CPUID2, KVM_CPUID_ENTRY2, KVM_MSRS,
  KVM_MSR_ENTRY, KVM_RUN_LAYOUT, KVM_IRQ_LEVEL, KVM_PIT_CONFIG, KVM_CLOCK_DATA, KVM_DIRTY_LOG, KVM_IRQCHIP, KVM_PIT_STATE2,
  KVM_MP_STATE, KVM_VCPU_EVENTS, KVM_DEBUGREGS, KVM_XCRS, KVM_FPU, KVM_LAPIC_STATE, KVM_XSAVE,
  KVM_IOEVENTFD, KVM_IRQFD, KVM_IRQ_ROUTING, KVM_IRQ_ROUTING_ENTRY, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MSI,
  KVM_PIC_STATE, KVM_IOAPIC_STATE,
];
