// Which guest pages a destination has written from the stream, so a later ZERO run only clears those.

const PAGE_SHIFT = 12;

/**
 * One bit per page of each RAM range. Fresh destination memory is zero already, so a ZERO run needs to clear
 * only pages an earlier pass wrote; the rest stay untouched (and unallocated).
 */
export class WrittenPages {
  private readonly bits: Uint32Array[];

  constructor(regionSizes: readonly number[]) {
    this.bits = regionSizes.map((size) => new Uint32Array(Math.ceil(size / 4096 / 32)));
  }

  /** Pages [offset, offset + length) of range `region` now hold data from the stream. */
  mark(region: number, offset: number, length: number): void {
    const b = this.bits[region];
    for (let p = offset >>> PAGE_SHIFT, end = (offset + length) >>> PAGE_SHIFT; p < end; p++) b[p >>> 5] |= 1 << (p & 31);
  }

  /** The source's pages [offset, offset + length) are zero: clears, in `bytes`, those of them written before. */
  clearWritten(region: number, offset: number, length: number, bytes: Uint8Array): void {
    const b = this.bits[region];
    for (let p = offset >>> PAGE_SHIFT, end = (offset + length) >>> PAGE_SHIFT; p < end; p++) {
      if (b[p >>> 5] & (1 << (p & 31))) bytes.fill(0, p << PAGE_SHIFT, (p + 1) << PAGE_SHIFT);
    }
  }
}
