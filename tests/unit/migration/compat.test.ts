// The destination's compatibility check: every mismatch found, each message naming the field and both values.

import { expect } from 'chai';
import { assertCompatible, compareVms, type VmIdentity } from '../../../migration/compat.js';
import { cpuFeatureSummary } from '../../../migration/description.js';
import { MigrationCompatError } from '../../../migration/errors.js';
import { description } from './fixtures.js';

const MiB = 1024 * 1024;

function vm(overrides: Partial<VmIdentity> = {}): VmIdentity {
  return { arch: 'x86_64', vendor: 'GenuineIntel', description: description(), ...overrides };
}

function messages(source: VmIdentity, destination: VmIdentity): string[] {
  return compareVms(source, destination).map((m) => m.message);
}

describe('migration compatibility check', () => {
  it('finds nothing to refuse between identical VMs', () => {
    expect(compareVms(vm(), vm())).to.deep.equal([]);
    assertCompatible(vm(), vm());
  });

  it('refuses a stream whose memory size differs', () => {
    const src = vm({ description: description({ memory: { size: 1024 * MiB, ranges: [{ gpa: 0, size: 1024 * MiB }] } }) });
    const dst = vm({ description: description({ memory: { size: 512 * MiB, ranges: [{ gpa: 0, size: 512 * MiB }] } }) });
    expect(messages(src, dst)).to.deep.equal([
      'memory size mismatch: source 1024 MiB, destination 512 MiB',
      'memory layout mismatch: source 0x0+1024 MiB, destination 0x0+512 MiB',
    ]);
  });

  it('refuses a different memory layout of the same size', () => {
    const a = description({ memory: { size: 8192, ranges: [{ gpa: 0, size: 8192 }] } });
    const b = description({ memory: { size: 8192, ranges: [{ gpa: 0, size: 4096 }, { gpa: 0x1_0000_0000, size: 4096 }] } });
    expect(messages(vm({ description: a }), vm({ description: b }))).to.deep.equal([
      'memory layout mismatch: source 0x0+8192 bytes, destination 0x0+4096 bytes, 0x100000000+4096 bytes',
    ]);
  });

  it('refuses another vCPU count, machine type, architecture and CPU vendor, all at once', () => {
    const src = vm();
    const dst = vm({ arch: 'aarch64', vendor: 'AuthenticAMD', description: description({ vcpus: 4, machineType: 'virt' }) });
    expect(messages(src, dst)).to.deep.equal([
      'architecture mismatch: source x86_64, destination aarch64',
      'CPU vendor mismatch: source GenuineIntel, destination AuthenticAMD',
      'machine type mismatch: source q35, destination virt',
      'vCPU count mismatch: source 2, destination 4',
    ]);
  });

  it('accepts a destination with more CPU features and refuses one lacking a source feature, by name', () => {
    const src = vm({ description: description({ cpuFeatures: { '0x7.0.ebx': (1 << 5) | (1 << 16) | (1 << 3), '0x1.ecx': 1 } }) });
    const more = vm({ description: description({ cpuFeatures: { '0x7.0.ebx': 0xffffffff, '0x1.ecx': 3, '0x80000001.edx': 1 } }) });
    expect(compareVms(src, more)).to.deep.equal([]);
    const fewer = vm({ description: description({ cpuFeatures: { '0x7.0.ebx': 1 << 3 } }) });
    const found = compareVms(src, fewer);
    expect(found.map((m) => m.message)).to.deep.equal([
      'CPUID 0x1.ecx mismatch: the destination lacks sse3 (source 0x00000001, destination 0x00000000)',
      'CPUID 0x7.0.ebx mismatch: the destination lacks avx2, avx512f (source 0x00010028, destination 0x00000008)',
    ]);
    expect(found[1]).to.deep.include({ field: 'CPUID 0x7.0.ebx', source: '0x00010028', destination: '0x00000008' });
  });

  it("names each device's differing type, PCI address and immutable attributes with both values", () => {
    const d = description();
    const dst = description({
      devices: [
        { ...d.devices[0], type: 'virtio-scsi-pci', pciAddress: '00:05.0', attributes: { file: '/images/other.raw', serial: 'SN1', readonly: true } },
        { ...d.devices[1], attributes: { mac: '52:54:00:00:00:01' } },
      ],
    });
    expect(messages(vm(), vm({ description: dst }))).to.deep.equal([
      "device 'disk0' type mismatch: source virtio-blk-pci, destination virtio-scsi-pci",
      "device 'disk0' PCI address mismatch: source 00:03.0, destination 00:05.0",
      "device 'disk0' file mismatch: source /images/root.raw, destination /images/other.raw",
      "device 'disk0' readonly mismatch: source false, destination true",
      "device 'net0' mac mismatch: source 52:54:00:12:34:56, destination 52:54:00:00:00:01",
    ]);
  });

  it('treats an attribute set on one side only as a mismatch against (unset)', () => {
    const d = description();
    const dst = description({ devices: [{ ...d.devices[0], attributes: { file: '/images/root.raw', readonly: false } }, d.devices[1]] });
    expect(messages(vm(), vm({ description: dst }))).to.deep.equal(["device 'disk0' serial mismatch: source SN1, destination (unset)"]);
  });

  it('reports devices missing on either side', () => {
    const d = description();
    const dst = description({ devices: [d.devices[0], { id: 'net1', type: 'virtio-net-pci', pciAddress: '00:04.0', attributes: {} }] });
    expect(messages(vm(), vm({ description: dst }))).to.deep.equal([
      "device 'net0' mismatch: source has virtio-net-pci, destination has no such device",
      "device 'net1' mismatch: source has no such device, destination has virtio-net-pci",
    ]);
  });

  it('throws MigrationCompatError carrying every mismatch', () => {
    const dst = vm({ description: description({ vcpus: 4, memory: { size: 512 * MiB, ranges: [{ gpa: 0, size: 512 * MiB }] } }) });
    let err: unknown;
    try {
      assertCompatible(vm(), dst);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(MigrationCompatError);
    const e = err as MigrationCompatError;
    expect(e.code).to.equal('ERR_MIGRATION_COMPAT');
    expect(e.mismatches).to.have.length(3);
    expect(e.message).to.contain('vCPU count mismatch: source 2, destination 4').and.contain('memory size mismatch: source 98304 bytes, destination 512 MiB');
  });

  it('summarises CPUID feature registers without state and topology bits', () => {
    const cpuid = [
      { function: 1, index: 0, eax: 0, ebx: 0, ecx: (1 << 27) | (1 << 28) | 1, edx: (1 << 28) | 1 },
      { function: 7, index: 0, eax: 0, ebx: 1 << 5, ecx: 1 << 4, edx: 0 },
      { function: 7, index: 1, eax: 1 << 4, ebx: 0, ecx: 0, edx: 0 },
      { function: 0x40000001, index: 0, eax: 0x1, ebx: 0, ecx: 0, edx: 0 },
    ];
    expect(cpuFeatureSummary(cpuid)).to.deep.equal({
      '0x1.ecx': (1 << 28) | 1,
      '0x1.edx': 1,
      '0x7.0.ebx': 1 << 5,
      '0x7.0.ecx': 0,
      '0x7.0.edx': 0,
      '0x7.1.eax': 1 << 4,
      '0x40000001.eax': 1,
    });
  });
});
