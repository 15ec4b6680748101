// A minimal guest-side PCI and virtio 1.x driver over qtest, so tests enumerate, map and use virtio-pci functions as Linux would.

import type { QtestClient } from './client.js';

const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const PCI_BASE_ADDRESS_0 = 0x10;
const PCI_HEADER_TYPE = 0x0e;
const PCI_CAPABILITY_LIST = 0x34;
const PCI_CAP_ID_MSIX = 0x11;
const PCI_CAP_ID_VNDR = 0x09;
const PCI_MSIX_FLAGS_ENABLE = 0x8000;
const MSIX_ENTRY_SIZE = 16;

// virtio_pci_cap cfg_type values and virtio_pci_common_cfg offsets (virtio 1.2 §4.1.4).
const VIRTIO_PCI_CAP_COMMON_CFG = 1;
const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
const COMMON = {
  DRIVER_FEATURE_SELECT: 0x08, DRIVER_FEATURE: 0x0c, MSIX_CONFIG: 0x10, DEVICE_STATUS: 0x14, QUEUE_SELECT: 0x16,
  QUEUE_SIZE: 0x18, QUEUE_MSIX_VECTOR: 0x1a, QUEUE_ENABLE: 0x1c, QUEUE_NOTIFY_OFF: 0x1e, QUEUE_DESC: 0x20,
  QUEUE_DRIVER: 0x28, QUEUE_DEVICE: 0x30,
} as const;
export const VIRTIO_STATUS = { ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, NEEDS_RESET: 64, FAILED: 128 } as const;
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;

/** Scans bus 0 for `vendor:device` as Linux does (functions 1-7 only behind a multi-function function 0); returns its devfn. */
export async function findPciFunction(q: QtestClient, vendor: number, device: number): Promise<number | undefined> {
  for (let slot = 0; slot < 32; slot++) {
    for (let fn = 0; fn < 8; fn++) {
      const devfn = (slot << 3) | fn;
      const id = await q.pciConfigReadl(devfn, 0);
      if ((id & 0xffff) === vendor && id >>> 16 === device) return devfn;
      if (fn === 0 && ((id & 0xffff) === 0xffff || ((await q.pciConfigReadb(devfn, PCI_HEADER_TYPE)) & 0x80) === 0)) break;
    }
  }
  return undefined;
}

/** Walks the capability list; offsets of every capability with `id`. */
export async function findCapabilities(q: QtestClient, devfn: number, id: number): Promise<number[]> {
  const found: number[] = [];
  let cap = (await q.pciConfigReadb(devfn, PCI_CAPABILITY_LIST)) & 0xfc;
  for (let guard = 0; cap !== 0 && guard < 48; guard++) {
    if ((await q.pciConfigReadb(devfn, cap)) === id) found.push(cap);
    cap = (await q.pciConfigReadb(devfn, cap + 1)) & 0xfc;
  }
  return found;
}

/** Sizes memory BAR `bar` (all-ones probe); returns its size and whether it is 64-bit. */
export async function sizeBar(q: QtestClient, devfn: number, bar: number): Promise<{ size: number; is64: boolean }> {
  const reg = PCI_BASE_ADDRESS_0 + bar * 4;
  const original = await q.pciConfigReadl(devfn, reg);
  await q.pciConfigWritel(devfn, reg, 0xffff_ffff);
  const mask = (await q.pciConfigReadl(devfn, reg)) & ~0xf;
  await q.pciConfigWritel(devfn, reg, original);
  return { size: (~mask + 1) >>> 0, is64: (original & 0x6) === 0x4 };
}

/** Programs memory BAR `bar` at `addr` (both halves of a 64-bit BAR). */
export async function mapBar(q: QtestClient, devfn: number, bar: number, addr: bigint, is64: boolean): Promise<void> {
  const reg = PCI_BASE_ADDRESS_0 + bar * 4;
  await q.pciConfigWritel(devfn, reg, Number(addr & 0xffff_fff0n));
  if (is64) await q.pciConfigWritel(devfn, reg + 4, Number(addr >> 32n));
}

export async function enableMemoryAndBusMaster(q: QtestClient, devfn: number): Promise<void> {
  const cmd = await q.pciConfigReadw(devfn, PCI_COMMAND);
  await q.pciConfigWritew(devfn, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

/**
 * Enables MSI-X and programs vectors 0..n-1 with `messages` (unmasked). `barBase` is the guest
 * address of every BAR by index (the table's BIR selects one).
 */
export async function enableMsix(q: QtestClient, devfn: number, barBase: (bar: number) => bigint,
  messages: readonly { address: bigint; data: number }[]): Promise<void> {
  const [cap] = await findCapabilities(q, devfn, PCI_CAP_ID_MSIX);
  if (cap === undefined) throw new Error(`no MSI-X capability at devfn ${devfn}`);
  const table = await q.pciConfigReadl(devfn, cap + 4);
  const base = barBase(table & 7) + BigInt(table & ~7);
  const flags = await q.pciConfigReadw(devfn, cap + 2);
  await q.pciConfigWritew(devfn, cap + 2, flags | PCI_MSIX_FLAGS_ENABLE);
  for (const [v, m] of messages.entries()) {
    const e = base + BigInt(v * MSIX_ENTRY_SIZE);
    await q.writel(e, Number(m.address & 0xffff_ffffn));
    await q.writel(e + 4n, Number(m.address >> 32n));
    await q.writel(e + 8n, m.data);
    await q.writel(e + 12n, 0);
  }
}

/** One split virtqueue laid out in guest RAM at `base`: descriptors, then avail, then used (4 KiB apart). */
export interface QueueLayout {
  readonly size: number;
  readonly desc: bigint;
  readonly avail: bigint;
  readonly used: bigint;
}

export function queueLayout(base: bigint, size: number): QueueLayout {
  return { size, desc: base, avail: base + 0x1000n, used: base + 0x2000n };
}

/** A virtio 1.x PCI function as a driver sees it, once its BARs are mapped. */
export class QtestVirtioPci {
  private availIdx = new Map<number, number>();

  private constructor(private readonly q: QtestClient, readonly devfn: number, readonly common: bigint,
    readonly notifyBase: bigint, readonly notifyMultiplier: number) {}

  /** Finds the common and notify regions from the vendor capabilities (BARs must be mapped). */
  static async attach(q: QtestClient, devfn: number, barBase: (bar: number) => bigint): Promise<QtestVirtioPci> {
    let common: bigint | undefined;
    let notify: { base: bigint; mult: number } | undefined;
    for (const cap of await findCapabilities(q, devfn, PCI_CAP_ID_VNDR)) {
      const type = await q.pciConfigReadb(devfn, cap + 3);
      const bar = await q.pciConfigReadb(devfn, cap + 4);
      const offset = BigInt(await q.pciConfigReadl(devfn, cap + 8));
      if (type === VIRTIO_PCI_CAP_COMMON_CFG) common = barBase(bar) + offset;
      if (type === VIRTIO_PCI_CAP_NOTIFY_CFG) notify = { base: barBase(bar) + offset, mult: await q.pciConfigReadl(devfn, cap + 16) };
    }
    if (common === undefined || notify === undefined) throw new Error(`devfn ${devfn} lacks virtio common or notify capabilities`);
    return new QtestVirtioPci(q, devfn, common, notify.base, notify.mult);
  }

  status(): Promise<number> {
    return this.q.readb(this.common + BigInt(COMMON.DEVICE_STATUS));
  }

  /** ACKNOWLEDGE, DRIVER, the feature words, FEATURES_OK; returns false when the device refused them. */
  async negotiate(features: bigint): Promise<boolean> {
    const c = this.common;
    await this.q.writeb(c + BigInt(COMMON.DEVICE_STATUS), 0);
    await this.q.writeb(c + BigInt(COMMON.DEVICE_STATUS), VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER);
    for (const word of [0, 1]) {
      await this.q.writel(c + BigInt(COMMON.DRIVER_FEATURE_SELECT), word);
      await this.q.writel(c + BigInt(COMMON.DRIVER_FEATURE), Number((features >> BigInt(32 * word)) & 0xffff_ffffn));
    }
    await this.q.writeb(c + BigInt(COMMON.DEVICE_STATUS), VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER | VIRTIO_STATUS.FEATURES_OK);
    return ((await this.status()) & VIRTIO_STATUS.FEATURES_OK) !== 0;
  }

  async setConfigVector(vector: number): Promise<void> {
    await this.q.writew(this.common + BigInt(COMMON.MSIX_CONFIG), vector);
  }

  /** Sets queue `index` up at `layout` with MSI-X `vector`, and enables it. */
  async setupQueue(index: number, layout: QueueLayout, vector: number): Promise<void> {
    const c = this.common;
    await this.q.writew(c + BigInt(COMMON.QUEUE_SELECT), index);
    await this.q.writew(c + BigInt(COMMON.QUEUE_SIZE), layout.size);
    await this.q.writew(c + BigInt(COMMON.QUEUE_MSIX_VECTOR), vector);
    await this.q.writeq(c + BigInt(COMMON.QUEUE_DESC), layout.desc);
    await this.q.writeq(c + BigInt(COMMON.QUEUE_DRIVER), layout.avail);
    await this.q.writeq(c + BigInt(COMMON.QUEUE_DEVICE), layout.used);
    await this.q.writew(c + BigInt(COMMON.QUEUE_ENABLE), 1);
    this.availIdx.set(index, 0);
  }

  async driverOk(): Promise<void> {
    await this.q.writeb(this.common + BigInt(COMMON.DEVICE_STATUS),
      VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER | VIRTIO_STATUS.FEATURES_OK | VIRTIO_STATUS.DRIVER_OK);
  }

  /** The guest address of queue `index`'s doorbell (what the machine's ioeventfd watches). */
  async notifyAddress(index: number): Promise<bigint> {
    await this.q.writew(this.common + BigInt(COMMON.QUEUE_SELECT), index);
    const off = await this.q.readw(this.common + BigInt(COMMON.QUEUE_NOTIFY_OFF));
    return this.notifyBase + BigInt(off * this.notifyMultiplier);
  }

  /**
   * Writes a descriptor chain at descriptor slots `first`.., publishes its head in the avail ring
   * and kicks the queue (a 16-bit write of the index, as Linux does).
   */
  async submit(index: number, layout: QueueLayout, first: number,
    chain: readonly { addr: bigint; len: number; write?: boolean }[]): Promise<void> {
    for (const [i, d] of chain.entries()) {
      const at = layout.desc + BigInt((first + i) * 16);
      const flags = (i + 1 < chain.length ? VIRTQ_DESC_F_NEXT : 0) | (d.write ? VIRTQ_DESC_F_WRITE : 0);
      await this.q.writeq(at, d.addr);
      await this.q.writel(at + 8n, d.len);
      await this.q.writew(at + 12n, flags);
      await this.q.writew(at + 14n, (first + i + 1) % layout.size);
    }
    const idx = this.availIdx.get(index) ?? 0;
    await this.q.writew(layout.avail + 4n + BigInt((idx % layout.size) * 2), first);
    await this.q.writew(layout.avail + 2n, (idx + 1) & 0xffff);
    this.availIdx.set(index, idx + 1);
    await this.q.writew(await this.notifyAddress(index), index);
  }

  /** The used ring's idx. */
  usedIdx(layout: QueueLayout): Promise<number> {
    return this.q.readw(layout.used + 2n);
  }
}
