// The named KVM blobs of VCPU_STATE, IRQCHIP, PIT and CLOCK: their names, checked sizes, and the vCPU state conversion.

import type { VcpuState } from '../machine/vcpu/state.js';
import {
  KVM_CLOCK_DATA,
  KVM_DEBUGREGS,
  KVM_FPU,
  KVM_IRQCHIP,
  KVM_LAPIC_STATE,
  KVM_MP_STATE,
  KVM_PIT_STATE2,
  KVM_REGS,
  KVM_SREGS,
  KVM_VCPU_EVENTS,
  KVM_XCRS,
  KVM_XSAVE,
} from '../machine/kvm/structs.js';
import { MigrationStreamError } from './errors.js';
import type { Blobs } from './format.js';

/**
 * Exact sizes of the fixed KVM structures a vCPU blob holds. Checked on load because these buffers go
 * to ioctls that read the full struct: a short one would let KVM read past it.
 */
export const VCPU_BLOB_SIZES: Readonly<Record<string, number>> = {
  regs: KVM_REGS.size,
  sregs: KVM_SREGS.size,
  fpu: KVM_FPU.size,
  xcrs: KVM_XCRS.size,
  lapic: KVM_LAPIC_STATE.size,
  events: KVM_VCPU_EVENTS.size,
  debugregs: KVM_DEBUGREGS.size,
  mp_state: KVM_MP_STATE.size,
};

/** IRQCHIP blobs: the two PICs and the IOAPIC, each a `kvm_irqchip`. */
export const IRQCHIP_BLOB_SIZES: Readonly<Record<string, number>> = {
  pic_master: KVM_IRQCHIP.size,
  pic_slave: KVM_IRQCHIP.size,
  ioapic: KVM_IRQCHIP.size,
};
/** PIT blob: `kvm_pit_state2`. */
export const PIT_BLOB_SIZES: Readonly<Record<string, number>> = { pit2: KVM_PIT_STATE2.size };
/** CLOCK blob: `kvm_clock_data` (kvmclock), to be set before the vCPUs run so guest time does not jump back. */
export const CLOCK_BLOB_SIZES: Readonly<Record<string, number>> = { clock: KVM_CLOCK_DATA.size };

/** Most MSRs one vCPU may carry; KVM's own list is a few dozen. */
export const MAX_MSRS = 1024;
/** Largest XSAVE area accepted (AMX needs about 11 KiB). */
export const MAX_XSAVE = 64 * 1024;

/**
 * Checks that `blobs` has exactly the names in `sizes`, each of its size. Throws a `corrupt` error naming
 * the blob; `where` says whose blobs they are (`VCPU_STATE 1`, `IRQCHIP`).
 */
export function checkBlobs(where: string, blobs: Blobs, sizes: Readonly<Record<string, number>>, extra: readonly string[] = []): void {
  for (const [name, size] of Object.entries(sizes)) {
    const b = blobs.get(name);
    if (b === undefined) throw new MigrationStreamError('corrupt', where, `${where}: no '${name}' blob`);
    if (b.length !== size) throw new MigrationStreamError('corrupt', where, `${where}: '${name}' is ${b.length} bytes, not ${size}`);
  }
  for (const name of blobs.keys()) {
    if (!Object.hasOwn(sizes, name) && !extra.includes(name)) throw new MigrationStreamError('unsupported', where, `${where}: unknown blob '${name}'`);
  }
}

/** MSR list as `kvm_msr_entry` records: u32 count, then per MSR u32 index, u32 zero, u64 value. */
export function encodeMsrs(msrs: ReadonlyMap<number, bigint>): Uint8Array {
  const b = new Uint8Array(4 + msrs.size * 16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, msrs.size, true);
  let at = 4;
  for (const [index, value] of msrs) {
    dv.setUint32(at, index, true);
    dv.setBigUint64(at + 8, BigInt.asUintN(64, value), true);
    at += 16;
  }
  return b;
}

/** Decodes and checks an `msrs` blob; `where` prefixes the error messages. */
export function decodeMsrs(where: string, b: Uint8Array): Map<number, bigint> {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 4) throw new MigrationStreamError('corrupt', where, `${where}: 'msrs' is ${b.length} bytes, too short for its count`);
  const count = dv.getUint32(0, true);
  if (count > MAX_MSRS) throw new MigrationStreamError('limit', where, `${where}: ${count} MSRs exceed the limit of ${MAX_MSRS}`);
  if (b.length !== 4 + count * 16) throw new MigrationStreamError('corrupt', where, `${where}: 'msrs' is ${b.length} bytes, not ${4 + count * 16} for ${count} MSRs`);
  const out = new Map<number, bigint>();
  for (let i = 0; i < count; i++) {
    const index = dv.getUint32(4 + i * 16, true);
    if (out.has(index)) throw new MigrationStreamError('corrupt', where, `${where}: MSR 0x${index.toString(16)} appears twice`);
    out.set(index, dv.getBigUint64(4 + i * 16 + 8, true));
  }
  return out;
}

/** A captured vCPU as VCPU_STATE blobs (views of the state's buffers, not copies). */
export function vcpuBlobs(s: VcpuState): Blobs {
  const mp = new Uint8Array(4);
  new DataView(mp.buffer).setUint32(0, s.mpState, true);
  return new Map([
    ['regs', s.regs], ['sregs', s.sregs], ['fpu', s.fpu], ['xsave', s.xsave], ['xcrs', s.xcrs], ['lapic', s.lapic],
    ['events', s.events], ['debugregs', s.debugregs], ['mp_state', mp], ['msrs', encodeMsrs(s.msrs)],
  ]);
}

/** VCPU_STATE blobs back into a vCPU state, every size checked first. */
export function vcpuStateFromBlobs(index: number, blobs: Blobs): VcpuState {
  const where = `VCPU_STATE ${index}`;
  checkBlobs(where, blobs, VCPU_BLOB_SIZES, ['xsave', 'msrs']);
  const xsave = blobs.get('xsave');
  if (xsave === undefined) throw new MigrationStreamError('corrupt', where, `${where}: no 'xsave' blob`);
  if (xsave.length < KVM_XSAVE.size || xsave.length > MAX_XSAVE || xsave.length % 64 !== 0) {
    throw new MigrationStreamError('corrupt', where, `${where}: 'xsave' is ${xsave.length} bytes; ${KVM_XSAVE.size} to ${MAX_XSAVE} in 64-byte steps expected`);
  }
  const msrs = blobs.get('msrs');
  if (msrs === undefined) throw new MigrationStreamError('corrupt', where, `${where}: no 'msrs' blob`);
  const mp = blobs.get('mp_state')!;
  const get = (n: string) => blobs.get(n)!;
  return {
    regs: get('regs'), sregs: get('sregs'), fpu: get('fpu'), xsave, xcrs: get('xcrs'), lapic: get('lapic'),
    events: get('events'), debugregs: get('debugregs'),
    mpState: new DataView(mp.buffer, mp.byteOffset, 4).getUint32(0, true),
    msrs: decodeMsrs(where, msrs),
  };
}
