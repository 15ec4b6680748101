// The CONFIG section's content: what a destination must match, its checks on untrusted JSON, and the CPUID summary.

import { MigrationStreamError } from './errors.js';

/** One guest-physical RAM range (as `ramRanges()` in machine/layout.ts yields them). */
export interface RangeDescription {
  gpa: number;
  size: number;
}

/**
 * One guest device. `attributes` holds what may not change across migration: a NIC's `mac`, a disk's
 * `file` and `serial`, `readonly`... Absent attributes and `null` mean the same: not set.
 */
export interface DeviceDescription {
  /** Stable and unique; devices without a user id get one derived from their address (e.g. `pci-00:03.0`). */
  id: string;
  /** The `-device` driver, e.g. `virtio-blk-pci`. */
  type: string;
  /** `bus:slot.function` in hex, e.g. `00:03.0`; absent for devices outside PCI. */
  pciAddress?: string;
  attributes: Record<string, string | number | boolean | null>;
}

/** The source VM's shape, sent as CONFIG before any RAM so the destination can refuse a mismatch first. */
export interface VmDescription {
  machineType: string;
  memory: { size: number; ranges: RangeDescription[] };
  vcpus: number;
  /** CPUID feature registers, keyed `leaf[.subleaf].reg` in hex (`0x7.0.ebx`); see `cpuFeatureSummary`. */
  cpuFeatures: Record<string, number>;
  devices: DeviceDescription[];
  /** Local migration: the source hands its RAM over (memfds over the unix socket) instead of sending pages. */
  memoryHandover?: boolean;
  /** Stream 1.1: RAM comes over this many extra connections to the same address, each opened with `session`. */
  multifd?: MultifdDescription;
}

/** How the RAM of a multifd migration travels. Not part of the VM: the destination does not compare it. */
export interface MultifdDescription {
  channels: number;
  compression: 'none' | 'zlib';
  /** 32 lowercase hex digits, repeated in every channel's preamble. */
  session: string;
}

const MAX_CHANNELS = 255;

function multifd(v: unknown): MultifdDescription {
  const o = record(v, 'multifd');
  const compression = str(o.compression, 'multifd.compression');
  if (compression !== 'none' && compression !== 'zlib') fail('multifd.compression', `'${compression.slice(0, 20)}' is not none or zlib`);
  const session = str(o.session, 'multifd.session');
  if (!/^[0-9a-f]{32}$/.test(session)) fail('multifd.session', 'must be 32 lowercase hex digits');
  return { channels: int(o.channels, 'multifd.channels', 1, MAX_CHANNELS), compression, session };
}

/** Bounds on a description: far above what tsvirt builds, low enough to keep hostile input cheap. */
const MAX_RANGES = 64;
const MAX_DEVICES = 1024;
const MAX_VCPUS = 1024;
const MAX_FEATURE_KEYS = 64;
const MAX_ATTRIBUTES = 32;
const MAX_STRING = 4096;
const PAGE_BYTES = 4096;
const FEATURE_KEY = /^0x[0-9a-f]{1,8}(\.[0-9]{1,3})?\.(eax|ebx|ecx|edx)$/;
const PCI_ADDRESS = /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
/** Starts with a letter, which also keeps `__proto__` and friends out of the objects built from it. */
const ATTRIBUTE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

function fail(path: string, what: string): never {
  throw new MigrationStreamError('corrupt', 'CONFIG', `CONFIG: ${path} ${what}`);
}

function record(v: unknown, path: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, 'must be an object');
  return v as Record<string, unknown>;
}

function list(v: unknown, path: string, max: number): unknown[] {
  if (!Array.isArray(v)) fail(path, 'must be an array');
  if (v.length > max) fail(path, `has ${v.length} entries, at most ${max} allowed`);
  return v;
}

function str(v: unknown, path: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_STRING) fail(path, `must be a non-empty string of at most ${MAX_STRING} characters`);
  return v;
}

function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) fail(path, `must be an integer from ${min} to ${max}`);
  return v;
}

function device(v: unknown, path: string): DeviceDescription {
  const o = record(v, path);
  const out: DeviceDescription = { id: str(o.id, `${path}.id`), type: str(o.type, `${path}.type`), attributes: {} };
  if (o.pciAddress !== undefined) {
    const a = str(o.pciAddress, `${path}.pciAddress`);
    if (!PCI_ADDRESS.test(a)) fail(`${path}.pciAddress`, `'${a}' is not bus:slot.function`);
    out.pciAddress = a;
  }
  const attrs = record(o.attributes, `${path}.attributes`);
  const keys = Object.keys(attrs);
  if (keys.length > MAX_ATTRIBUTES) fail(`${path}.attributes`, `has ${keys.length} members, at most ${MAX_ATTRIBUTES} allowed`);
  for (const k of keys) {
    const a = attrs[k];
    if (!ATTRIBUTE_NAME.test(k)) fail(`${path}.attributes`, `has a member '${k.slice(0, 70)}' that is not a name (a letter, then up to 63 letters, digits, '_', '.', '-')`);
    if (typeof a === 'string' ? a.length > MAX_STRING : !(a === null || typeof a === 'boolean' || (typeof a === 'number' && Number.isFinite(a)))) {
      fail(`${path}.attributes.${k}`, 'must be a string, finite number, boolean or null');
    }
    out.attributes[k] = a as string | number | boolean | null;
  }
  return out;
}

/**
 * Checks untrusted CONFIG JSON and returns a description built only from checked members (unknown members
 * are dropped, so nothing unvalidated reaches the machine). Throws a `corrupt` MigrationStreamError naming
 * the member.
 */
export function parseVmDescription(json: unknown): VmDescription {
  const o = record(json, 'the body');
  const mem = record(o.memory, 'memory');
  const ranges = list(mem.ranges, 'memory.ranges', MAX_RANGES).map((r, i) => {
    const ro = record(r, `memory.ranges[${i}]`);
    const range = { gpa: int(ro.gpa, `memory.ranges[${i}].gpa`, 0, Number.MAX_SAFE_INTEGER), size: int(ro.size, `memory.ranges[${i}].size`, 1, Number.MAX_SAFE_INTEGER) };
    // RAM_PAGES addresses whole pages of a range, so a range must be whole pages too.
    if (range.gpa % PAGE_BYTES !== 0 || range.size % PAGE_BYTES !== 0) fail(`memory.ranges[${i}]`, 'must start and end on a 4096-byte page boundary');
    return range;
  });
  const features = record(o.cpuFeatures, 'cpuFeatures');
  const featureKeys = Object.keys(features);
  if (featureKeys.length > MAX_FEATURE_KEYS) fail('cpuFeatures', `has ${featureKeys.length} members, at most ${MAX_FEATURE_KEYS} allowed`);
  const cpuFeatures: Record<string, number> = {};
  for (const k of featureKeys) {
    if (!FEATURE_KEY.test(k)) fail('cpuFeatures', `has a member '${k.slice(0, 40)}' that is not leaf[.subleaf].reg`);
    cpuFeatures[k] = int(features[k], `cpuFeatures.${k}`, 0, 0xffff_ffff);
  }
  const devices = list(o.devices, 'devices', MAX_DEVICES).map((d, i) => device(d, `devices[${i}]`));
  const ids = new Set<string>();
  for (const d of devices) {
    if (ids.has(d.id)) fail('devices', `lists device id '${d.id}' twice`);
    ids.add(d.id);
  }
  const size = int(mem.size, 'memory.size', 1, Number.MAX_SAFE_INTEGER);
  const covered = ranges.reduce((n, r) => n + r.size, 0);
  if (covered !== size) fail('memory.size', `${size} is not the sum of memory.ranges (${covered})`);
  return {
    machineType: str(o.machineType, 'machineType'),
    memory: { size, ranges },
    vcpus: int(o.vcpus, 'vcpus', 1, MAX_VCPUS),
    cpuFeatures,
    devices,
    ...(o.memoryHandover === undefined ? {} : { memoryHandover: o.memoryHandover === true }),
    ...(o.multifd === undefined ? {} : { multifd: multifd(o.multifd) }),
  };
}

// --- CPUID feature summary -------------------------------------------------------------------------

/** A CPUID entry as KVM reports it (structurally the same as machine/kvm's CpuidEntry). */
export interface CpuidLeaf {
  readonly function: number;
  readonly index: number;
  readonly eax: number;
  readonly ebx: number;
  readonly ecx: number;
  readonly edx: number;
}

type Reg = 'eax' | 'ebx' | 'ecx' | 'edx';

/**
 * The registers that hold guest-visible feature bits, and the bits in them that are not features but
 * state (OSXSAVE, OSPKE follow CR4) or topology (HTT follows the vCPU count, compared separately).
 */
const FEATURE_REGISTERS: readonly { leaf: number; sub?: number; reg: Reg; ignore: number }[] = [
  { leaf: 0x1, reg: 'ecx', ignore: 1 << 27 },
  { leaf: 0x1, reg: 'edx', ignore: 1 << 28 },
  { leaf: 0x7, sub: 0, reg: 'ebx', ignore: 0 },
  { leaf: 0x7, sub: 0, reg: 'ecx', ignore: 1 << 4 },
  { leaf: 0x7, sub: 0, reg: 'edx', ignore: 0 },
  { leaf: 0x7, sub: 1, reg: 'eax', ignore: 0 },
  { leaf: 0xd, sub: 0, reg: 'eax', ignore: 0 },
  { leaf: 0xd, sub: 0, reg: 'edx', ignore: 0 },
  { leaf: 0xd, sub: 1, reg: 'eax', ignore: 0 },
  { leaf: 0x40000001, reg: 'eax', ignore: 0 },
  { leaf: 0x80000001, reg: 'ecx', ignore: 0 },
  { leaf: 0x80000001, reg: 'edx', ignore: 0 },
  { leaf: 0x80000007, reg: 'edx', ignore: 0 },
  { leaf: 0x80000008, reg: 'ebx', ignore: 0 },
];

/** `0x7.0.ebx` for leaf 7 subleaf 0 register ebx; `0x1.ecx` when the leaf has no subleaves. */
export function featureKey(leaf: number, sub: number | undefined, reg: string): string {
  return `0x${leaf.toString(16)}${sub === undefined ? '' : `.${sub}`}.${reg}`;
}

/** The feature registers of a vCPU's CPUID, masked of state and topology bits, for CONFIG. */
export function cpuFeatureSummary(cpuid: readonly CpuidLeaf[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of FEATURE_REGISTERS) {
    const e = cpuid.find((c) => c.function === f.leaf && (f.sub === undefined || c.index === f.sub));
    if (e) out[featureKey(f.leaf, f.sub, f.reg)] = (e[f.reg] & ~f.ignore) >>> 0;
  }
  return out;
}

/** Names of the feature bits worth naming in a mismatch message (Linux's /proc/cpuinfo spellings). */
const FEATURE_NAMES: Readonly<Record<string, Readonly<Record<number, string>>>> = {
  '0x1.ecx': { 0: 'sse3', 1: 'pclmulqdq', 9: 'ssse3', 12: 'fma', 13: 'cx16', 19: 'sse4_1', 20: 'sse4_2', 21: 'x2apic', 22: 'movbe', 23: 'popcnt', 24: 'tsc_deadline_timer', 25: 'aes', 26: 'xsave', 28: 'avx', 29: 'f16c', 30: 'rdrand', 31: 'hypervisor' },
  '0x1.edx': { 0: 'fpu', 4: 'tsc', 5: 'msr', 6: 'pae', 8: 'cx8', 9: 'apic', 11: 'sep', 12: 'mtrr', 13: 'pge', 15: 'cmov', 16: 'pat', 19: 'clflush', 23: 'mmx', 24: 'fxsr', 25: 'sse', 26: 'sse2' },
  '0x7.0.ebx': { 0: 'fsgsbase', 3: 'bmi1', 4: 'hle', 5: 'avx2', 7: 'smep', 8: 'bmi2', 9: 'erms', 10: 'invpcid', 11: 'rtm', 16: 'avx512f', 17: 'avx512dq', 18: 'rdseed', 19: 'adx', 20: 'smap', 23: 'clflushopt', 24: 'clwb', 28: 'avx512cd', 29: 'sha_ni', 30: 'avx512bw', 31: 'avx512vl' },
  '0x7.0.ecx': { 1: 'avx512vbmi', 2: 'umip', 3: 'pku', 5: 'waitpkg', 8: 'gfni', 9: 'vaes', 10: 'vpclmulqdq', 11: 'avx512_vnni', 22: 'rdpid' },
  '0x7.0.edx': { 10: 'md_clear', 14: 'serialize', 26: 'spec_ctrl', 29: 'arch_capabilities', 31: 'ssbd' },
  '0xd.0.eax': { 0: 'xsave-x87', 1: 'xsave-sse', 2: 'xsave-avx', 5: 'xsave-opmask', 6: 'xsave-zmm_hi256', 7: 'xsave-hi16_zmm', 9: 'xsave-pkru', 17: 'xsave-xtilecfg', 18: 'xsave-xtiledata' },
  '0xd.1.eax': { 0: 'xsaveopt', 1: 'xsavec', 2: 'xgetbv1', 3: 'xsaves' },
  '0x40000001.eax': { 0: 'kvmclock', 1: 'nopiodelay', 3: 'kvmclock2', 4: 'async_pf', 5: 'steal_time', 6: 'pv_eoi', 7: 'pv_unhalt', 9: 'pv_tlb_flush', 11: 'pv_send_ipi', 12: 'poll_control', 13: 'pv_sched_yield', 15: 'msi_ext_dest_id', 24: 'kvmclock_stable' },
  '0x80000001.ecx': { 0: 'lahf_lm', 5: 'abm', 6: 'sse4a', 8: '3dnowprefetch' },
  '0x80000001.edx': { 11: 'syscall', 20: 'nx', 26: 'pdpe1gb', 27: 'rdtscp', 29: 'lm' },
  '0x80000007.edx': { 8: 'invtsc' },
};

/** Names of the set bits of `mask` in register `key`, `bit N` where unnamed. */
export function featureNames(key: string, mask: number): string[] {
  const names = FEATURE_NAMES[key] ?? {};
  const out: string[] = [];
  for (let bit = 0; bit < 32; bit++) if ((mask >>> bit) & 1) out.push(names[bit] ?? `bit ${bit}`);
  return out;
}
