// Planning RAM_PAGES batches from a range and its dirty bitmap: runs, zero pages, batch limits, dirty counts.

import { expect } from 'chai';
import { countDirtyPages, isZeroPage, planRamBatches } from '../../../migration/ram.js';
import { PAGE } from './fixtures.js';

function ram(pages: number, written: number[]): Uint8Array {
  const b = new Uint8Array(pages * PAGE);
  for (const p of written) b[p * PAGE + (p % PAGE)] = 1;
  return b;
}

describe('migration RAM planning', () => {
  it('finds zero pages, including a page whose only non-zero byte is its last', () => {
    const b = new Uint8Array(3 * PAGE);
    b[2 * PAGE - 1] = 1;
    expect([0, 1, 2].map((p) => isZeroPage(b, p * PAGE))).to.deep.equal([true, false, true]);
  });

  it('merges consecutive pages of one kind into runs on the first pass', () => {
    const [batch, ...rest] = [...planRamBatches(ram(8, [2, 3, 6]), null)];
    expect(rest).to.deep.equal([]);
    expect(batch).to.deep.equal({
      runs: [
        { firstPage: 0, pageCount: 2, kind: 'zero' },
        { firstPage: 2, pageCount: 2, kind: 'normal' },
        { firstPage: 4, pageCount: 2, kind: 'zero' },
        { firstPage: 6, pageCount: 1, kind: 'normal' },
        { firstPage: 7, pageCount: 1, kind: 'zero' },
      ],
      normalPages: 3,
      zeroPages: 5,
    });
  });

  it('sends only the dirty pages of later passes, skipping clean bitmap words', () => {
    const dirty = new Uint32Array(4);
    dirty[0] = 1 << 3;
    dirty[2] = (1 << 0) | (1 << 1) | (1 << 31);
    const batches = [...planRamBatches(ram(128, [3, 64, 95]), dirty)];
    expect(batches.map((b) => b.runs)).to.deep.equal([[
      { firstPage: 3, pageCount: 1, kind: 'normal' },
      { firstPage: 64, pageCount: 1, kind: 'normal' },
      { firstPage: 65, pageCount: 1, kind: 'zero' },
      { firstPage: 95, pageCount: 1, kind: 'normal' },
    ]]);
  });

  it('splits batches at the page limit without merging runs across them', () => {
    const batches = [...planRamBatches(ram(10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), null, 4)];
    expect(batches.map((b) => b.runs)).to.deep.equal([
      [{ firstPage: 0, pageCount: 4, kind: 'normal' }],
      [{ firstPage: 4, pageCount: 4, kind: 'normal' }],
      [{ firstPage: 8, pageCount: 2, kind: 'normal' }],
    ]);
  });

  it('refuses a batch size readers would refuse', () => {
    expect(() => [...planRamBatches(ram(1, []), null, 4097)]).to.throw(RangeError);
  });

  it('counts dirty pages in a bitmap', () => {
    expect(countDirtyPages(new Uint32Array([0xffffffff, 0, 0x80000001, 0x10]))).to.equal(35);
  });
});
