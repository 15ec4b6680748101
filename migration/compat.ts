// The destination's check of the source's CONFIG against its own VM, before any RAM: every mismatch, each naming both values.

import type { CompatMismatch } from './errors.js';
import { MigrationCompatError } from './errors.js';
import { featureNames, type DeviceDescription, type RangeDescription, type VmDescription } from './description.js';

/** One side of the comparison: the stream header's architecture and CPU vendor, and the VM description. */
export interface VmIdentity {
  arch: string;
  vendor: string;
  description: VmDescription;
}

const MiB = 1024 * 1024;

/** `1024 MiB` when the size is whole MiB, else bytes. */
export function formatSize(bytes: number): string {
  return bytes % MiB === 0 ? `${bytes / MiB} MiB` : `${bytes} bytes`;
}

function formatRanges(ranges: readonly RangeDescription[]): string {
  return ranges.length === 0 ? '(none)' : ranges.map((r) => `0x${r.gpa.toString(16)}+${formatSize(r.size)}`).join(', ');
}

function show(v: unknown): string {
  return v === undefined || v === null ? '(unset)' : typeof v === 'string' ? v : JSON.stringify(v);
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

function mismatch(field: string, source: string, destination: string, message?: string): CompatMismatch {
  return { field, source, destination, message: message ?? `${field} mismatch: source ${source}, destination ${destination}` };
}

function compareDevice(s: DeviceDescription, d: DeviceDescription, out: CompatMismatch[]): void {
  const name = `device '${s.id}'`;
  if (s.type !== d.type) out.push(mismatch(`${name} type`, s.type, d.type));
  if (s.pciAddress !== d.pciAddress) out.push(mismatch(`${name} PCI address`, show(s.pciAddress), show(d.pciAddress)));
  const keys = [...new Set([...Object.keys(s.attributes), ...Object.keys(d.attributes)])].sort();
  for (const k of keys) {
    const a = s.attributes[k] ?? null;
    const b = d.attributes[k] ?? null;
    if (a !== b) out.push(mismatch(`${name} ${k}`, show(a), show(b)));
  }
}

/**
 * Everything that keeps the source's guest from running on the destination: architecture, CPU vendor,
 * CPUID features (the source's must be a subset of the destination's), machine type, memory size and
 * layout, vCPU count, and each device by id (type, PCI address, every immutable attribute, missing or
 * extra devices). Returns all mismatches; an empty list means compatible.
 */
export function compareVms(source: VmIdentity, destination: VmIdentity): CompatMismatch[] {
  const out: CompatMismatch[] = [];
  const s = source.description;
  const d = destination.description;
  if (source.arch !== destination.arch) out.push(mismatch('architecture', source.arch, destination.arch));
  if (source.vendor !== destination.vendor) out.push(mismatch('CPU vendor', source.vendor, destination.vendor));
  if (s.machineType !== d.machineType) out.push(mismatch('machine type', s.machineType, d.machineType));
  if (s.memory.size !== d.memory.size) out.push(mismatch('memory size', formatSize(s.memory.size), formatSize(d.memory.size)));
  const sameLayout = s.memory.ranges.length === d.memory.ranges.length
    && s.memory.ranges.every((r, i) => r.gpa === d.memory.ranges[i].gpa && r.size === d.memory.ranges[i].size);
  if (!sameLayout) out.push(mismatch('memory layout', formatRanges(s.memory.ranges), formatRanges(d.memory.ranges)));
  if (s.vcpus !== d.vcpus) out.push(mismatch('vCPU count', String(s.vcpus), String(d.vcpus)));

  for (const key of Object.keys(s.cpuFeatures).sort()) {
    const have = s.cpuFeatures[key];
    const can = d.cpuFeatures[key] ?? 0;
    const missing = (have & ~can) >>> 0;
    if (missing === 0) continue;
    out.push(mismatch(`CPUID ${key}`, hex(have), hex(can),
      `CPUID ${key} mismatch: the destination lacks ${featureNames(key, missing).join(', ')} (source ${hex(have)}, destination ${hex(can)})`));
  }

  const dest = new Map(d.devices.map((x) => [x.id, x]));
  const src = new Set(s.devices.map((x) => x.id));
  for (const sd of s.devices) {
    const dd = dest.get(sd.id);
    if (dd === undefined) {
      out.push(mismatch(`device '${sd.id}'`, sd.type, '(absent)', `device '${sd.id}' mismatch: source has ${sd.type}, destination has no such device`));
    } else {
      compareDevice(sd, dd, out);
    }
  }
  for (const dd of d.devices) {
    if (!src.has(dd.id)) {
      out.push(mismatch(`device '${dd.id}'`, '(absent)', dd.type, `device '${dd.id}' mismatch: source has no such device, destination has ${dd.type}`));
    }
  }
  return out;
}

/** Throws MigrationCompatError listing every mismatch, unless there are none. */
export function assertCompatible(source: VmIdentity, destination: VmIdentity): void {
  const mismatches = compareVms(source, destination);
  if (mismatches.length > 0) throw new MigrationCompatError(mismatches);
}
