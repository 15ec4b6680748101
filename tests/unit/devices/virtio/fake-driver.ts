// A fake guest for virtio tests: guest RAM, a split-ring writer, and a driver that speaks the modern PCI transport.

import { GuestMemory } from '../../../../devices/guest-memory.js';
import type { MsiSink } from '../../../../devices/pci/msix.js';
import { VIRTIO_PCI_MODERN_BAR, VIRTIO_PCI_MSIX_BAR, type VirtioPciDevice } from '../../../../devices/virtio/pci-transport.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../../devices/virtio/queue.js';
import {
  VIRTIO_STATUS_ACKNOWLEDGE, VIRTIO_STATUS_DRIVER, VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_FEATURES_OK,
} from '../../../../devices/virtio/spec.js';

export const RAM_SIZE = 1 << 20;

/** Guest RAM at gpa 0 with a bump allocator (from 0x1000 so address 0 stays unused). */
export class FakeRam {
  readonly bytes: Uint8Array;
  readonly memory: GuestMemory;
  private next = 0x1000;

  constructor(size = RAM_SIZE) {
    this.bytes = new Uint8Array(size);
    this.memory = new GuestMemory([{ gpa: 0, size, bytes: this.bytes }]);
  }

  alloc(len: number, align = 16): number {
    this.next = Math.ceil(this.next / align) * align;
    const at = this.next;
    this.next += len;
    if (this.next > this.bytes.length) throw new Error('fake RAM exhausted');
    return at;
  }

  /** Allocates and fills a buffer. */
  put(data: Uint8Array | number[], align = 16): number {
    const at = this.alloc(data.length, align);
    this.bytes.set(data, at);
    return at;
  }

  snapshot(): Uint8Array {
    return this.bytes.slice();
  }
}

/** One descriptor as a driver writes it. */
export interface Desc {
  addr: number | bigint;
  len: number;
  write?: boolean;
  flags?: number;
}

/** The driver's half of a split ring in fake RAM. */
export class DriverRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  private nextDesc = 0;
  private availIdx = 0;
  private readonly view: DataView;

  constructor(private readonly ram: FakeRam, readonly size: number) {
    this.desc = ram.alloc(16 * size, 16);
    this.avail = ram.alloc(6 + 2 * size, 2);
    this.used = ram.alloc(6 + 8 * size, 4);
    this.view = new DataView(ram.bytes.buffer);
  }

  /** Writes descriptor `i` of the table at `table` (default: the ring's own table). */
  setDesc(i: number, d: Desc & { next?: number }, table = this.desc): void {
    const at = table + 16 * i;
    this.view.setBigUint64(at, BigInt(d.addr), true);
    this.view.setUint32(at + 8, d.len, true);
    this.view.setUint16(at + 12, (d.flags ?? 0) | (d.write ? VIRTQ_DESC_F_WRITE : 0), true);
    this.view.setUint16(at + 14, d.next ?? 0, true);
  }

  /** Writes `descs` as a NEXT-linked chain in fresh slots; returns the head index. */
  chain(descs: Desc[]): number {
    const head = this.nextDesc;
    descs.forEach((d, k) => {
      const i = this.nextDesc++ % this.size;
      const last = k === descs.length - 1;
      this.setDesc(i, { ...d, flags: (d.flags ?? 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), next: (i + 1) % this.size });
    });
    return head % this.size;
  }

  /** Writes an indirect table in fresh RAM holding `descs` chained in order; returns its address. */
  indirectTable(descs: Desc[]): number {
    const table = this.ram.alloc(16 * descs.length, 16);
    descs.forEach((d, k) => {
      const last = k === descs.length - 1;
      this.setDesc(k, { ...d, flags: (d.flags ?? 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), next: k + 1 }, table);
    });
    return table;
  }

  /** Publishes `head` in the available ring. */
  publish(head: number): void {
    this.view.setUint16(this.avail + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.view.setUint16(this.avail + 2, this.availIdx, true);
  }

  /** `chain` then `publish`. */
  add(descs: Desc[]): number {
    const head = this.chain(descs);
    this.publish(head);
    return head;
  }

  setAvailFlags(flags: number): void {
    this.view.setUint16(this.avail, flags, true);
  }

  setUsedEvent(v: number): void {
    this.view.setUint16(this.avail + 4 + 2 * this.size, v, true);
  }

  availEvent(): number {
    return this.view.getUint16(this.used + 4 + 8 * this.size, true);
  }

  usedIdx(): number {
    return this.view.getUint16(this.used + 2, true);
  }

  usedElem(i: number): { id: number; len: number } {
    const at = this.used + 4 + 8 * (i % this.size);
    return { id: this.view.getUint32(at, true), len: this.view.getUint32(at + 4, true) };
  }
}

/** Records MSI-X messages. */
export class RecordingMsiSink implements MsiSink {
  readonly signals: { vector: number; address: bigint; data: number }[] = [];
  signal(vector: number, address: bigint, data: number): void {
    this.signals.push({ vector, address, data });
  }
  vectors(): number[] {
    return this.signals.map((s) => s.vector);
  }
}

// Common-config offsets the driver uses.
export const COMMON = {
  DFSELECT: 0x00, DF: 0x04, GFSELECT: 0x08, GF: 0x0c, MSIX: 0x10, NUMQ: 0x12, STATUS: 0x14, CFGGEN: 0x15,
  Q_SELECT: 0x16, Q_SIZE: 0x18, Q_MSIX: 0x1a, Q_ENABLE: 0x1c, Q_NOFF: 0x1e, Q_DESC: 0x20, Q_AVAIL: 0x28, Q_USED: 0x30,
};
const ISR = 0x1000;
const DEVICE_CFG = 0x2000;
const NOTIFY = 0x3000;
const MSIX_MSG_ADDRESS = 0xfee0_0000;

/** A modern virtio-pci driver talking to the transport's BARs directly (as if mapped). */
export class FakeDriver {
  constructor(readonly dev: VirtioPciDevice) {}

  private get bar() {
    return this.dev.barRegion(VIRTIO_PCI_MODERN_BAR)!;
  }

  read(offset: number, size: number): number {
    const d = new Uint8Array(size);
    this.bar.read(offset, d);
    return d.reduceRight((v, b) => v * 256 + b, 0);
  }

  write(offset: number, size: number, value: number | bigint): void {
    const d = new Uint8Array(size);
    let v = BigInt(value);
    for (let i = 0; i < size; i++) {
      d[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    this.bar.write(offset, d);
  }

  status(): number {
    return this.read(COMMON.STATUS, 1);
  }

  setStatus(v: number): void {
    this.write(COMMON.STATUS, 1, v);
  }

  deviceFeatures(): bigint {
    this.write(COMMON.DFSELECT, 4, 0);
    const lo = this.read(COMMON.DF, 4);
    this.write(COMMON.DFSELECT, 4, 1);
    const hi = this.read(COMMON.DF, 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Reset, ACKNOWLEDGE, DRIVER, write features, FEATURES_OK; returns the status read back. */
  negotiate(features: bigint): number {
    // Memory decoding and bus mastering on, as firmware and Linux's pci_set_master leave them.
    this.dev.writeConfig(0x04, Uint8Array.of(0x06, this.dev.config.command >> 8));
    this.setStatus(0);
    this.setStatus(VIRTIO_STATUS_ACKNOWLEDGE);
    this.setStatus(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    this.write(COMMON.GFSELECT, 4, 0);
    this.write(COMMON.GF, 4, features & 0xffff_ffffn);
    this.write(COMMON.GFSELECT, 4, 1);
    this.write(COMMON.GF, 4, features >> 32n);
    this.setStatus(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    return this.status();
  }

  /** Programs queue `index` with `ring` and enables it, the 64-bit addresses as two dword halves like Linux. */
  setupQueue(index: number, ring: DriverRing, vector?: number): void {
    this.write(COMMON.Q_SELECT, 2, index);
    this.write(COMMON.Q_SIZE, 2, ring.size);
    for (const [reg, addr] of [[COMMON.Q_DESC, ring.desc], [COMMON.Q_AVAIL, ring.avail], [COMMON.Q_USED, ring.used]]) {
      this.write(reg, 4, addr);
      this.write(reg + 4, 4, 0);
    }
    if (vector !== undefined) this.write(COMMON.Q_MSIX, 2, vector);
    this.write(COMMON.Q_ENABLE, 2, 1);
  }

  driverOk(): void {
    this.setStatus(this.status() | VIRTIO_STATUS_DRIVER_OK);
  }

  kick(index: number): void {
    this.write(NOTIFY + 4 * index, 2, index);
  }

  readIsr(): number {
    return this.read(ISR, 1);
  }

  readDeviceConfig(offset: number, size: number): number {
    return this.read(DEVICE_CFG + offset, size);
  }

  writeDeviceConfig(offset: number, size: number, value: number): void {
    this.write(DEVICE_CFG + offset, size, value);
  }

  /** Enables MSI-X in config space and programs/unmasks `count` vectors (data = 0x40 + vector). */
  enableMsix(count: number): void {
    const cfg = this.dev.config;
    const cap = cfg.capabilities().find((c) => c.id === 0x11)!.offset;
    const msix = this.dev.barRegion(VIRTIO_PCI_MSIX_BAR)!;
    for (let v = 0; v < count; v++) {
      const entry = new Uint8Array(16);
      const dv = new DataView(entry.buffer);
      dv.setUint32(0, MSIX_MSG_ADDRESS, true);
      dv.setUint32(8, 0x40 + v, true);
      msix.write(16 * v, entry);
    }
    const ctl = cfg.getU16(cap + 2) | 0x8000;
    this.dev.writeConfig(cap + 2, Uint8Array.of(ctl & 0xff, ctl >> 8));
  }
}
