// A guest-side virtio-blk driver over qtest for the -mod-test tests: probe a pre-assigned function, set it up with MSI-X, submit requests, write raw descriptors.

import type { QtestClient } from '../../machine/qtest/client.js';
import {
  QtestVirtioPci, VIRTIO_STATUS, enableMsix, findCapabilities, queueLayout, type QueueLayout,
} from '../../machine/qtest/virtio-driver.js';
import { SECTOR } from './qtest-vm.js';

export const VIRTIO_F_VERSION_1 = 1n << 32n;
export const VIRTIO_RING_F_INDIRECT_DESC = 1n << 28n;
export const VIRTIO_RING_F_EVENT_IDX = 1n << 29n;
export const VIRTIO_BLK_F_RO = 1n << 5n;
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const BLK_T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;
export const BLK_S = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
/** DRIVER_OK and everything before it. */
export const STATUS_RUNNING = VIRTIO_STATUS.ACKNOWLEDGE | VIRTIO_STATUS.DRIVER | VIRTIO_STATUS.FEATURES_OK | VIRTIO_STATUS.DRIVER_OK;

export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_ID_MSIX = 0x11;
export const MSI_ADDRESS = 0xfee0_0000n;

// virtio_pci_common_cfg offsets.
export const COMMON = {
  DFSELECT: 0x00, DF: 0x04, GFSELECT: 0x08, GF: 0x0c, MSIX: 0x10, NUMQ: 0x12, STATUS: 0x14, CFGGEN: 0x15,
  Q_SELECT: 0x16, Q_SIZE: 0x18, Q_MSIX: 0x1a, Q_ENABLE: 0x1c, Q_NOFF: 0x1e, Q_DESC: 0x20, Q_AVAIL: 0x28, Q_USED: 0x30,
} as const;

export interface RawDesc {
  addr: bigint;
  len: number;
  flags: number;
  next?: number;
}

/** Guest-physical layout of one driver instance, all inside `base`..`base + 0x100000`. */
export interface BlkMemory {
  /** Split ring (desc, avail, used 4 KiB apart). */
  readonly ring: QueueLayout;
  /** Request headers (16 bytes). */
  readonly header: number;
  /** Status byte(s). */
  readonly status: number;
  /** Indirect tables. */
  readonly indirect: number;
  /** Data buffers (64 KiB). */
  readonly data: number;
}

export function blkMemory(base: number, queueSize = 16): BlkMemory {
  return {
    ring: queueLayout(BigInt(base), queueSize),
    header: base + 0x4000,
    status: base + 0x5000,
    indirect: base + 0x6000,
    data: base + 0x10000,
  };
}

export interface BlkDriverOptions {
  /** Guest RAM the driver uses: ring, headers, data (1 MiB from here). */
  readonly base: number;
  /** MSI-X data of vector 0 (configuration changes) and vector 1 (the request queue). */
  readonly configData: number;
  readonly queueData: number;
  readonly msiAddress?: bigint;
  readonly queueSize?: number;
}

export interface Completion {
  status: number;
  /** The used element's len. */
  usedLen: number;
  /** The used element's id. */
  usedId: number;
  /** The IN buffer after completion (requests with `inLen`). */
  data?: Uint8Array;
}

/** Reads the address a (firmware-assigned) memory BAR decodes at. */
export async function barAddress(q: QtestClient, devfn: number, bar: number): Promise<bigint> {
  const lo = await q.pciConfigReadl(devfn, 0x10 + 4 * bar);
  const hi = (lo & 0x6) === 0x4 ? await q.pciConfigReadl(devfn, 0x14 + 4 * bar) : 0;
  return (BigInt(hi >>> 0) << 32n) | BigInt((lo & ~0xf) >>> 0);
}

/** The virtio vendor capabilities by cfg_type: { cap offset, bar, offset, length }. */
export async function virtioCaps(q: QtestClient, devfn: number): Promise<Map<number, { cap: number; bar: number; offset: number; length: number }>> {
  const out = new Map<number, { cap: number; bar: number; offset: number; length: number }>();
  for (const cap of await findCapabilities(q, devfn, PCI_CAP_ID_VNDR)) {
    const type = await q.pciConfigReadb(devfn, cap + 3);
    out.set(type, {
      cap,
      bar: await q.pciConfigReadb(devfn, cap + 4),
      offset: await q.pciConfigReadl(devfn, cap + 8),
      length: await q.pciConfigReadl(devfn, cap + 12),
    });
  }
  return out;
}

/**
 * A virtio-blk function used as a Linux driver would: MSI-X vector 0 for configuration changes,
 * vector 1 for the request queue, one queue of `queueSize` entries at `base`.
 */
export class BlkDriver {
  readonly mem: BlkMemory;

  private constructor(
    readonly q: QtestClient,
    readonly devfn: number,
    readonly bars: ReadonlyMap<number, bigint>,
    readonly dev: QtestVirtioPci,
    readonly deviceCfg: bigint,
    readonly isr: bigint,
    readonly msixTable: bigint,
    readonly msixPba: bigint,
    readonly opts: BlkDriverOptions,
  ) {
    this.mem = blkMemory(opts.base, opts.queueSize ?? 16);
  }

  /** Queue 0's doorbell (queue_notify_off times the multiplier, from the notify capability). */
  private notify = 0n;

  get common(): bigint {
    return this.dev.common;
  }

  get msiAddress(): bigint {
    return this.opts.msiAddress ?? MSI_ADDRESS;
  }

  /** Attaches to devfn (BARs as firmware left them), enables MSI-X with vectors 0 and 1; does not initialise the device. */
  static async probe(q: QtestClient, devfn: number, opts: BlkDriverOptions): Promise<BlkDriver> {
    const bars = new Map<number, bigint>([[1, await barAddress(q, devfn, 1)], [4, await barAddress(q, devfn, 4)]]);
    const barBase = (bar: number) => {
      const b = bars.get(bar);
      if (b === undefined) throw new Error(`BAR ${bar} is not a BAR of this function`);
      return b;
    };
    const msiAddress = opts.msiAddress ?? MSI_ADDRESS;
    await enableMsix(q, devfn, barBase, [{ address: msiAddress, data: opts.configData }, { address: msiAddress, data: opts.queueData }]);
    const dev = await QtestVirtioPci.attach(q, devfn, barBase);
    const caps = await virtioCaps(q, devfn);
    const devCfg = caps.get(4);
    const isr = caps.get(3);
    if (!devCfg || !isr) throw new Error('no device or ISR capability');
    const [msix] = await findCapabilities(q, devfn, PCI_CAP_ID_MSIX);
    const table = await q.pciConfigReadl(devfn, msix + 4);
    const pba = await q.pciConfigReadl(devfn, msix + 8);
    const d = new BlkDriver(q, devfn, bars, dev, barBase(devCfg.bar) + BigInt(devCfg.offset), barBase(isr.bar) + BigInt(isr.offset),
      barBase(table & 7) + BigInt(table & ~7), barBase(pba & 7) + BigInt(pba & ~7), opts);
    d.notify = await dev.notifyAddress(0);
    return d;
  }

  /** Fresh zeroed rings, negotiation, vectors, queue 0, DRIVER_OK. Throws when the device refuses the features. */
  async init(features = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC): Promise<void> {
    await this.q.memset(this.mem.ring.desc, 0x3000, 0);
    if (!(await this.dev.negotiate(features))) throw new Error(`device refused features 0x${features.toString(16)}`);
    await this.dev.setConfigVector(0);
    await this.dev.setupQueue(0, this.mem.ring, 1);
    await this.dev.driverOk();
  }

  status(): Promise<number> {
    return this.dev.status();
  }

  /** Writes 0 to device_status. */
  async reset(): Promise<void> {
    await this.q.writeb(this.common + BigInt(COMMON.STATUS), 0);
  }

  async configGeneration(): Promise<number> {
    return this.q.readb(this.common + BigInt(COMMON.CFGGEN));
  }

  // --- Raw ring access ----------------------------------------------------------------------------

  async writeDesc(table: bigint | number, index: number, d: RawDesc): Promise<void> {
    const at = BigInt(table) + BigInt(index * 16);
    const bytes = Buffer.alloc(16);
    bytes.writeBigUInt64LE(d.addr & 0xffff_ffff_ffff_ffffn, 0);
    bytes.writeUInt32LE(d.len >>> 0, 8);
    bytes.writeUInt16LE(d.flags, 12);
    bytes.writeUInt16LE(d.next ?? 0, 14);
    await this.q.write(at, bytes);
  }

  /** Publishes `head` in the avail ring (reading the current idx from guest memory); does not kick. */
  async publish(head: number): Promise<void> {
    const r = this.mem.ring;
    const idx = await this.q.readw(r.avail + 2n);
    await this.q.writew(r.avail + 4n + BigInt((idx % r.size) * 2), head);
    await this.q.writew(r.avail + 2n, (idx + 1) & 0xffff);
  }

  /** The qtest lines of a kick and of a reset, for QtestVm.batch. */
  get kickCommand(): string {
    return `writew 0x${this.notify.toString(16)} 0x0`;
  }

  get resetCommand(): string {
    return `writeb 0x${(this.common + BigInt(COMMON.STATUS)).toString(16)} 0x0`;
  }

  /** A 16-bit write of the queue index to its doorbell, as Linux's vp_notify does. */
  async kick(): Promise<void> {
    await this.q.writew(this.notify, 0);
  }

  usedIdx(): Promise<number> {
    return this.dev.usedIdx(this.mem.ring);
  }

  async usedElem(n: number): Promise<{ id: number; len: number }> {
    const at = this.mem.ring.used + 4n + BigInt((n % this.mem.ring.size) * 8);
    return { id: await this.q.readl(at), len: await this.q.readl(at + 4n) };
  }

  // --- Requests -----------------------------------------------------------------------------------

  /** Writes a request's header and chain (header, data, status) at descriptors 0.. and publishes it. */
  async prepare(type: number, sector: bigint | number, opts: { out?: Uint8Array; inLen?: number } = {}): Promise<void> {
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(type, 0);
    hdr.writeBigUInt64LE(BigInt(sector), 8);
    await this.q.write(this.mem.header, hdr);
    await this.q.writeb(this.mem.status, 0xff);
    const chain: RawDesc[] = [{ addr: BigInt(this.mem.header), len: 16, flags: 0 }];
    if (opts.out) {
      await this.q.command(`b64write 0x${this.mem.data.toString(16)} ${opts.out.length} ${Buffer.from(opts.out).toString('base64')}`);
      chain.push({ addr: BigInt(this.mem.data), len: opts.out.length, flags: 0 });
    }
    if (opts.inLen) {
      await this.q.memset(this.mem.data, opts.inLen, 0xcc);
      chain.push({ addr: BigInt(this.mem.data), len: opts.inLen, flags: VIRTQ_DESC_F_WRITE });
    }
    chain.push({ addr: BigInt(this.mem.status), len: 1, flags: VIRTQ_DESC_F_WRITE });
    for (const [i, d] of chain.entries()) {
      await this.writeDesc(this.mem.ring.desc, i, { ...d, flags: d.flags | (i + 1 < chain.length ? VIRTQ_DESC_F_NEXT : 0), next: i + 1 });
    }
    await this.publish(0);
  }

  /** Submits one request and waits for its completion MSI; returns status and used element. */
  async request(type: number, sector: bigint | number, opts: { out?: Uint8Array; inLen?: number; timeoutMs?: number } = {}): Promise<Completion> {
    const before = await this.usedIdx();
    await this.prepare(type, sector, opts);
    await this.kick();
    return this.completion(before, opts.inLen, opts.timeoutMs);
  }

  /** Waits for the queue vector's MSI and reads the completion that follows `before` in the used ring. */
  async completion(before: number, inLen?: number, timeoutMs = 5000): Promise<Completion> {
    const msi = await this.q.waitForMsi(this.opts.queueData, timeoutMs);
    if (msi.address !== this.msiAddress) throw new Error(`queue MSI at 0x${msi.address.toString(16)}, programmed 0x${this.msiAddress.toString(16)}`);
    const after = await this.usedIdx();
    if (after !== ((before + 1) & 0xffff)) throw new Error(`used idx went from ${before} to ${after}`);
    const elem = await this.usedElem(before);
    return {
      status: await this.q.readb(this.mem.status),
      usedLen: elem.len,
      usedId: elem.id,
      data: inLen ? await this.q.read(this.mem.data, inLen) : undefined,
    };
  }

  async read(sector: number, sectors = 1): Promise<Completion> {
    return this.request(BLK_T.IN, sector, { inLen: sectors * SECTOR });
  }

  async write(sector: number, data: Uint8Array): Promise<Completion> {
    return this.request(BLK_T.OUT, sector, { out: data });
  }

  async flush(): Promise<Completion> {
    return this.request(BLK_T.FLUSH, 0);
  }

  async getId(): Promise<Completion> {
    return this.request(BLK_T.GET_ID, 0, { inLen: 20 });
  }
}
