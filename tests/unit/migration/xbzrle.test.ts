// XBZRLE: deltas round-trip, stay small for small changes, give up when large, and hostile deltas are refused.

import { expect } from 'chai';
import { MigrationStreamError } from '../../../migration/errors.js';
import { applyDelta, encodeDelta, XbzrleCache, xbzrleRuns } from '../../../migration/xbzrle.js';
import { rng } from './fixtures.js';

const PAGE = 4096;

function page(fill = 0): Uint8Array {
  return new Uint8Array(PAGE).fill(fill);
}

describe('XBZRLE page deltas', () => {
  it('turns the old page into the new one for random sparse changes', () => {
    const next = rng(11);
    for (let round = 0; round < 200; round++) {
      const old = page();
      for (let i = 0; i < PAGE; i++) old[i] = Math.floor(next() * 256);
      const cur = old.slice();
      const changes = Math.floor(next() * 40);
      for (let i = 0; i < changes; i++) cur[Math.floor(next() * PAGE)] ^= 1 + Math.floor(next() * 255);
      const out = new Uint8Array(PAGE);
      const n = encodeDelta(cur, old, out);
      expect(n).to.be.greaterThan(-1);
      const dest = old.slice();
      applyDelta(out.subarray(0, n), dest, 'test');
      expect(dest).to.deep.equal(cur);
    }
  });

  it('encodes an unchanged page as nothing and one changed byte in a few bytes', () => {
    const old = page(7);
    const out = new Uint8Array(PAGE);
    expect(encodeDelta(old.slice(), old, out)).to.equal(0);
    const cur = old.slice();
    cur[3000] = 8;
    const n = encodeDelta(cur, old, out);
    expect(n).to.be.within(1, 10);
  });

  it('gives up (-1) when the delta would reach the limit', () => {
    const old = page(0);
    const cur = page(1);
    expect(encodeDelta(cur, old, new Uint8Array(PAGE), PAGE / 2)).to.equal(-1);
  });

  it('refuses deltas that run past the page, past their own end, or carry empty runs', () => {
    const dest = page();
    const cases: [string, number[], RegExp][] = [
      ['past the page', [0x80, 0x20, 4, 1, 2, 3, 4], /ends at byte 4100/],
      ['past the delta', [0, 10, 1, 2], /run of 10 bytes but 2 left/],
      ['an empty run', [5, 0], /changed run of 0 bytes/],
      ['a cut count', [0x80], /ends inside a count/],
      ['an overlong count', [0xff, 0xff, 0xff, 0x01], /longer than 3 bytes/],
    ];
    for (const [what, bytes, message] of cases) {
      expect(() => applyDelta(Uint8Array.from(bytes), dest, 'RAM_PAGES page 3'), what).to.throw(MigrationStreamError, message);
    }
    expect(dest).to.deep.equal(page(), 'a refused delta wrote nothing');
  });
});

describe('XBZRLE cache on the source', () => {
  it('sends a page whole the first time and as a delta the second time', () => {
    const cache = new XbzrleCache(16 * PAGE);
    const live = page(3);
    const out = new Uint8Array(PAGE);
    expect(cache.prepare(5, live, out)).to.deep.equal({ kind: 'normal', length: PAGE });
    expect(out).to.deep.equal(live);
    live[10] = 4;
    const r = cache.prepare(5, live, out);
    expect(r.kind).to.equal('delta');
    const dest = page(3);
    applyDelta(out.subarray(0, r.length), dest, 'test');
    expect(dest).to.deep.equal(live);
    expect(cache.counters).to.deep.include({ pages: 1, cacheMiss: 1, overflow: 0 });
  });

  it('evicts by page number and forgets pages sent as zero', () => {
    const cache = new XbzrleCache(4 * PAGE);
    const out = new Uint8Array(PAGE);
    cache.prepare(1, page(1), out);
    cache.prepare(5, page(5), out); // same slot as page 1
    expect(cache.prepare(1, page(1), out).kind).to.equal('normal');
    cache.forget(1);
    expect(cache.prepare(1, page(1), out).kind).to.equal('normal');
  });

  it('builds runs whose payloads replay the guest pages exactly, while the guest keeps writing', () => {
    const cache = new XbzrleCache(64 * PAGE);
    const guest = new Uint8Array(32 * PAGE);
    const dest = new Uint8Array(32 * PAGE);
    const next = rng(3);
    for (let pass = 0; pass < 6; pass++) {
      for (let i = 0; i < 64; i++) guest[Math.floor(next() * guest.length)] = Math.floor(next() * 256);
      const runs = xbzrleRuns(cache, 0, guest, { runs: [{ firstPage: 0, pageCount: 32, kind: 'normal' }], normalPages: 32, zeroPages: 0 });
      const sent = guest.slice();
      guest.fill(0xee, 0, PAGE); // the guest writes after the snapshot: must not leak into what was prepared
      for (const r of runs) {
        const view = dest.subarray(r.firstPage * PAGE, (r.firstPage + 1) * PAGE);
        if (r.kind === 'xbzrle') applyDelta(r.data!, view, 'test');
        else view.set(r.data!);
      }
      expect(dest).to.deep.equal(sent);
      if (pass > 0) expect(runs.filter((r) => r.kind === 'xbzrle').length).to.be.greaterThan(20);
    }
  });

  it('builds the last pass from guest memory itself: deltas for cached pages, plain runs for the rest', () => {
    const cache = new XbzrleCache(64 * PAGE);
    const guest = new Uint8Array(32 * PAGE).fill(1);
    const dest = new Uint8Array(32 * PAGE);
    const apply = (runs: ReturnType<typeof xbzrleRuns>) => {
      for (const r of runs) {
        const view = dest.subarray(r.firstPage * PAGE, (r.firstPage + r.pageCount) * PAGE);
        if (r.kind === 'xbzrle') applyDelta(r.data!, view, 'test');
        else if (r.kind === 'normal') view.set(r.data ?? guest.subarray(r.firstPage * PAGE, (r.firstPage + r.pageCount) * PAGE));
      }
    };
    apply(xbzrleRuns(cache, 0, guest, { runs: [{ firstPage: 0, pageCount: 16, kind: 'normal' }], normalPages: 16, zeroPages: 0 }));
    for (let p = 0; p < 32; p++) guest[p * PAGE + 7] = 9;
    const last = xbzrleRuns(cache, 0, guest, { runs: [{ firstPage: 0, pageCount: 32, kind: 'normal' }], normalPages: 32, zeroPages: 0 }, true);
    expect(last.filter((r) => r.kind === 'xbzrle').length).to.equal(16);
    expect(last.filter((r) => r.kind === 'normal')).to.deep.equal([{ firstPage: 16, pageCount: 16, kind: 'normal' }]);
    apply(last);
    expect(dest).to.deep.equal(guest);
  });
});
