// Shared fixtures of the migration tests: a small VM description, fake guest RAM, a complete stream and a collecting reader.

import type { VmDescription } from '../../../migration/description.js';
import type { StreamMessage } from '../../../migration/format.js';
import { planRamBatches } from '../../../migration/ram.js';
import { StreamReader, type ReaderOptions } from '../../../migration/reader.js';
import { StreamWriter } from '../../../migration/writer.js';
import { mulberry32 } from '../../harness/prng.js';

export const PAGE = 4096;

/** A deterministic PRNG (mulberry32), so fuzz failures reproduce. */
export const rng = mulberry32;

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Two small RAM ranges (16 and 8 pages), two vCPUs, a disk and a NIC. */
export function description(overrides: Partial<VmDescription> = {}): VmDescription {
  return {
    machineType: 'q35',
    memory: { size: 24 * PAGE, ranges: [{ gpa: 0, size: 16 * PAGE }, { gpa: 0x1_0000_0000, size: 8 * PAGE }] },
    vcpus: 2,
    cpuFeatures: { '0x1.ecx': 0x80202201, '0x7.0.ebx': 0x00000029 },
    devices: [
      { id: 'disk0', type: 'virtio-blk-pci', pciAddress: '00:03.0', attributes: { file: '/images/root.raw', serial: 'SN1', readonly: false } },
      { id: 'net0', type: 'virtio-net-pci', pciAddress: '00:04.0', attributes: { mac: '52:54:00:12:34:56' } },
    ],
    ...overrides,
  };
}

/** Guest RAM for `description()`: range 0 has pages 1, 2, 5 and 15 written, range 1 page 7. */
export function guestRam(): Uint8Array[] {
  const r0 = new Uint8Array(16 * PAGE);
  const r1 = new Uint8Array(8 * PAGE);
  for (const p of [1, 2, 5, 15]) r0.fill(p + 0x10, p * PAGE, (p + 1) * PAGE);
  r0[5 * PAGE + 100] = 0xee;
  r1.fill(0x77, 7 * PAGE, 8 * PAGE);
  return [r0, r1];
}

export const vcpuBlobs = (i: number) => new Map([['regs', new Uint8Array(144).fill(i + 1)], ['xsave', new Uint8Array(4096).fill(0xa0 + i)]]);
export const chipBlobs = () => new Map([['pic_master', Uint8Array.of(1, 2, 3)], ['ioapic', Uint8Array.of(4)]]);

/** A complete, valid stream of `description()`: header, CONFIG, two passes (the second final), state, END, RUN. */
export function validStream(ram = guestRam()): { chunks: Uint8Array[]; bytes: Uint8Array; writer: StreamWriter } {
  const w = new StreamWriter();
  const chunks: Uint8Array[] = [];
  chunks.push(...w.header('GenuineIntel'), ...w.config(description()));
  ram.forEach((bytes, region) => {
    for (const b of planRamBatches(bytes, null, 8)) chunks.push(...w.ramPages(region, bytes, b.runs));
  });
  chunks.push(...w.passEnd(1, false));
  const dirty = new Uint32Array([1 << 5]);
  for (const b of planRamBatches(ram[0], dirty)) chunks.push(...w.ramPages(0, ram[0], b.runs));
  chunks.push(...w.passEnd(2, true));
  chunks.push(...w.vcpu(0, vcpuBlobs(0)), ...w.vcpu(1, vcpuBlobs(1)));
  chunks.push(...w.irqchip(chipBlobs()), ...w.pit(new Map([['pit2', new Uint8Array(112)]])), ...w.clock(new Map([['clock', new Uint8Array(48).fill(9)]])));
  chunks.push(...w.deviceJson('disk0', 1, { queues: [{ size: 256, avail: 12 }] }), ...w.deviceBinary('net0', 3, Uint8Array.of(9, 8, 7)));
  chunks.push(...w.deviceJson('serial0', 1, { ier: 1 }));
  chunks.push(...w.end(), ...w.run());
  return { chunks, bytes: concat(chunks), writer: w };
}

/** A stream reader whose RAM goes to fresh zeroed ranges of `description()`'s sizes; collects messages and sink calls. */
export function collectingReader(direction: 'stream' | 'replies' = 'stream', extra: Partial<ReaderOptions> = {}) {
  const ram = [new Uint8Array(16 * PAGE), new Uint8Array(8 * PAGE)];
  const messages: StreamMessage[] = [];
  const zeroCalls: [number, number, number][] = [];
  const reader = new StreamReader({
    direction,
    onMessage: (m) => messages.push(m),
    ram: {
      target: (region, offset, length) => ram[region].subarray(offset, offset + length),
      zero: (region, offset, length) => {
        zeroCalls.push([region, offset, length]);
        ram[region].fill(0, offset, offset + length);
      },
    },
    ...extra,
  });
  return { reader, ram, messages, zeroCalls };
}
