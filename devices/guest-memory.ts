// Guest RAM as the device models and loaders see it: bounds-checked reads, and the one write path that marks pages dirty.

import { TsvirtError } from '../machine/errors.js';

const PAGE_SHIFT = 12;

/** One contiguous range of guest RAM, with a host view of its bytes. */
export interface MemoryRegion {
  readonly gpa: number;
  readonly size: number;
  readonly bytes: Uint8Array;
}

/** A guest-physical access outside RAM or across a region boundary. */
export class GuestMemoryError extends TsvirtError {
  readonly gpa: number;
  readonly length: number;
  constructor(gpa: number, length: number) {
    super('ERR_GUEST_MEMORY', `guest memory access out of range: 0x${gpa.toString(16)} + ${length}`);
    this.gpa = gpa;
    this.length = length;
  }
}

/**
 * Guest RAM. Every write a device or loader makes goes through `write`, `writableSlice` or the
 * typed setters, which mark the touched pages in a per-region dirty bitmap once tracking is on:
 * migration merges that bitmap with KVM's dirty log.
 */
export class GuestMemory {
  readonly regions: readonly MemoryRegion[];
  readonly totalSize: number;
  private readonly dirty: Uint32Array[];
  private tracking = false;

  constructor(regions: MemoryRegion[]) {
    this.regions = [...regions].sort((a, b) => a.gpa - b.gpa);
    this.totalSize = this.regions.reduce((n, r) => n + r.size, 0);
    this.dirty = this.regions.map((r) => new Uint32Array(Math.ceil(r.size / 4096 / 32)));
  }

  /** Finds the region holding [gpa, gpa+len) entirely; throws GuestMemoryError otherwise. */
  locate(gpa: number, len: number): { index: number; region: MemoryRegion; offset: number } {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0) {
      throw new GuestMemoryError(gpa, len);
    }
    for (let index = 0; index < this.regions.length; index++) {
      const region = this.regions[index];
      if (gpa >= region.gpa && gpa + len <= region.gpa + region.size) {
        return { index, region, offset: gpa - region.gpa };
      }
    }
    throw new GuestMemoryError(gpa, len);
  }

  /** True when [gpa, gpa+len) lies inside one region. */
  contains(gpa: number, len: number): boolean {
    try {
      this.locate(gpa, len);
      return true;
    } catch {
      return false;
    }
  }

  /** A read-only-by-convention view of guest bytes (no copy). Use `writableSlice` to write. */
  slice(gpa: number, len: number): Uint8Array {
    const { region, offset } = this.locate(gpa, len);
    return region.bytes.subarray(offset, offset + len);
  }

  /** A view the caller will write into (DMA target); its pages are marked dirty now. */
  writableSlice(gpa: number, len: number): Uint8Array {
    const { index, region, offset } = this.locate(gpa, len);
    this.markDirty(index, offset, len);
    return region.bytes.subarray(offset, offset + len);
  }

  /** Copies `data` into guest memory at `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    this.writableSlice(gpa, data.length).set(data);
  }

  read(gpa: number, len: number): Uint8Array {
    return Uint8Array.from(this.slice(gpa, len));
  }

  private dv(gpa: number, len: number, writing: boolean): DataView {
    const s = writing ? this.writableSlice(gpa, len) : this.slice(gpa, len);
    return new DataView(s.buffer, s.byteOffset, len);
  }

  readU8(gpa: number): number { return this.slice(gpa, 1)[0]; }
  readU16(gpa: number): number { return this.dv(gpa, 2, false).getUint16(0, true); }
  readU32(gpa: number): number { return this.dv(gpa, 4, false).getUint32(0, true); }
  readU64(gpa: number): bigint { return this.dv(gpa, 8, false).getBigUint64(0, true); }
  writeU8(gpa: number, v: number): void { this.writableSlice(gpa, 1)[0] = v; }
  writeU16(gpa: number, v: number): void { this.dv(gpa, 2, true).setUint16(0, v, true); }
  writeU32(gpa: number, v: number): void { this.dv(gpa, 4, true).setUint32(0, v, true); }
  writeU64(gpa: number, v: bigint): void { this.dv(gpa, 8, true).setBigUint64(0, v, true); }

  /** Starts recording device writes in the dirty bitmaps (clearing them). */
  startDirtyTracking(): void {
    for (const d of this.dirty) d.fill(0);
    this.tracking = true;
  }

  stopDirtyTracking(): void {
    this.tracking = false;
  }

  /** Returns region `index`'s bitmap of pages written since the last call and clears it. */
  takeDirtyBitmap(index: number): Uint32Array {
    const bitmap = this.dirty[index].slice();
    this.dirty[index].fill(0);
    return bitmap;
  }

  private markDirty(index: number, offset: number, len: number): void {
    if (!this.tracking || len === 0) return;
    const bitmap = this.dirty[index];
    const last = (offset + len - 1) >>> PAGE_SHIFT;
    for (let page = offset >>> PAGE_SHIFT; page <= last; page++) {
      bitmap[page >>> 5] |= 1 << (page & 31);
    }
  }
}
