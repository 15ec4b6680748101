// KVM state blobs: a vCPU's state through VCPU_STATE blobs and back, and the size checks that keep ioctls in bounds.

import { expect } from 'chai';
import type { VcpuState } from '../../../machine/vcpu/state.js';
import { MigrationStreamError } from '../../../migration/errors.js';
import { IRQCHIP_BLOB_SIZES, checkBlobs, decodeMsrs, encodeMsrs, vcpuBlobs, vcpuStateFromBlobs } from '../../../migration/kvm-state.js';

function state(): VcpuState {
  return {
    regs: new Uint8Array(144).fill(1),
    sregs: new Uint8Array(312).fill(2),
    fpu: new Uint8Array(416).fill(3),
    xsave: new Uint8Array(4096).fill(4),
    xcrs: new Uint8Array(392).fill(5),
    lapic: new Uint8Array(1024).fill(6),
    events: new Uint8Array(64).fill(7),
    debugregs: new Uint8Array(128).fill(8),
    mpState: 3,
    msrs: new Map([[0x10, 123456789n], [0xc0000080, 0xd01n], [0x6e0, 0xffff_ffff_ffff_ffffn]]),
  };
}

describe('migration KVM state blobs', () => {
  it('round-trips a vCPU state through its blobs', () => {
    expect(vcpuStateFromBlobs(0, vcpuBlobs(state()))).to.deep.equal(state());
  });

  it('refuses a missing or short blob, naming it, before it could reach an ioctl', () => {
    const missing = vcpuBlobs(state());
    missing.delete('lapic');
    expect(() => vcpuStateFromBlobs(1, missing)).to.throw(MigrationStreamError, "VCPU_STATE 1: no 'lapic' blob");
    const short = vcpuBlobs(state());
    short.set('sregs', new Uint8Array(100));
    expect(() => vcpuStateFromBlobs(1, short)).to.throw(MigrationStreamError, "VCPU_STATE 1: 'sregs' is 100 bytes, not 312");
    const xsave = vcpuBlobs(state());
    xsave.set('xsave', new Uint8Array(1000));
    expect(() => vcpuStateFromBlobs(1, xsave)).to.throw(MigrationStreamError, /'xsave' is 1000 bytes/);
  });

  it('refuses an unknown blob name', () => {
    const extra = vcpuBlobs(state());
    extra.set('pmu', new Uint8Array(8));
    expect(() => vcpuStateFromBlobs(0, extra)).to.throw(MigrationStreamError, "VCPU_STATE 0: unknown blob 'pmu'");
  });

  it('refuses an MSR list whose count disagrees with its size, or repeats an MSR', () => {
    const b = encodeMsrs(new Map([[1, 1n]]));
    expect(() => decodeMsrs('VCPU_STATE 0', b.subarray(0, 12))).to.throw(MigrationStreamError, /not 20 for 1 MSRs/);
    const twice = new Uint8Array(36);
    const dv = new DataView(twice.buffer);
    dv.setUint32(0, 2, true);
    dv.setUint32(4, 0x10, true);
    dv.setUint32(20, 0x10, true);
    expect(() => decodeMsrs('VCPU_STATE 0', twice)).to.throw(MigrationStreamError, 'MSR 0x10 appears twice');
    const huge = new Uint8Array(4);
    new DataView(huge.buffer).setUint32(0, 0xffffffff, true);
    expect(() => decodeMsrs('VCPU_STATE 0', huge)).to.throw(MigrationStreamError, /exceed the limit/);
  });

  it('checks the irqchip blobs by name and size', () => {
    const ok = new Map(Object.entries(IRQCHIP_BLOB_SIZES).map(([n, size]) => [n, new Uint8Array(size)]));
    checkBlobs('IRQCHIP', ok, IRQCHIP_BLOB_SIZES);
    ok.set('ioapic', new Uint8Array(8));
    expect(() => checkBlobs('IRQCHIP', ok, IRQCHIP_BLOB_SIZES)).to.throw(MigrationStreamError, "IRQCHIP: 'ioapic' is 8 bytes, not 520");
  });
});
