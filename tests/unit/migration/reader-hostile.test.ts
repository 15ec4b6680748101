// The reader against hostile input: caps before allocation, typed errors naming the section, truncation, bit flips and noise.

import { expect } from 'chai';
import { TsvirtError } from '../../../machine/errors.js';
import { MigrationStreamError } from '../../../migration/errors.js';
import { FORMAT_MAJOR, FORMAT_MINOR, SectionType, STREAM_MAGIC } from '../../../migration/format.js';
import { ReplyWriter, StreamWriter } from '../../../migration/writer.js';
import { chipBlobs, collectingReader, concat, description, rng, validStream, vcpuBlobs } from './fixtures.js';

function section(type: number, body: Uint8Array | number[], version = 1, length?: number): Uint8Array {
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  const h = new Uint8Array(8 + b.length);
  const dv = new DataView(h.buffer);
  dv.setUint16(0, type, true);
  dv.setUint16(2, version, true);
  dv.setUint32(4, length ?? b.length, true);
  h.set(b, 8);
  return h;
}

function json(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}

/** Header and CONFIG of the fixture VM. */
function prefix(): Uint8Array {
  const w = new StreamWriter();
  return concat([...w.header('GenuineIntel'), ...w.config(description())]);
}

function ramSection(region: number, entries: [first: number, count: number, encoding: number, payload: number][], payloadBytes = 0, extraLength = 0, flags = 0, payload?: Uint8Array): Uint8Array {
  const body = new Uint8Array(8 + entries.length * 16 + payloadBytes);
  const dv = new DataView(body.buffer);
  dv.setUint16(0, region, true);
  dv.setUint16(2, flags, true);
  if (payload) body.set(payload, 8 + entries.length * 16);
  dv.setUint32(4, entries.length, true);
  entries.forEach(([first, count, enc, payload], i) => {
    dv.setUint32(8 + i * 16, first, true);
    dv.setUint32(12 + i * 16, count, true);
    dv.setUint8(16 + i * 16, enc);
    dv.setUint32(20 + i * 16, payload, true);
  });
  return section(SectionType.RAM_PAGES, body, 1, body.length + extraLength);
}

/** Runs `bytes` through a fresh stream reader (push + finish) and returns the error it threw. */
function failure(bytes: Uint8Array, direction: 'stream' | 'replies' = 'stream', opts = {}): MigrationStreamError {
  const { reader } = collectingReader(direction, opts);
  try {
    reader.push(bytes);
    reader.finish();
  } catch (e) {
    expect(e).to.be.instanceOf(MigrationStreamError);
    return e as MigrationStreamError;
  }
  throw new Error('the reader accepted the stream');
}

/** Feeds `bytes` in random chunks; returns the error if any. Only MigrationStreamError is acceptable. */
function feed(bytes: Uint8Array, next: () => number): unknown {
  const { reader } = collectingReader();
  try {
    for (let at = 0; at < bytes.length;) {
      const n = 1 + Math.floor(next() * 300);
      reader.push(bytes.subarray(at, at + n));
      at += n;
    }
    reader.finish();
    return undefined;
  } catch (e) {
    return e;
  }
}

describe('migration reader against hostile input', () => {
  describe('stream header', () => {
    it('refuses a stream without the magic', () => {
      const bad = validStream().bytes.slice();
      bad[1] ^= 0x20;
      const e = failure(bad);
      expect(e.code).to.equal('ERR_MIGRATION_CORRUPT');
      expect(e.message).to.match(/bad magic/);
    });

    it('refuses another major version, naming both versions', () => {
      const w = new StreamWriter({ major: 2, minor: 0 });
      const e = failure(concat(w.header('GenuineIntel')));
      expect(e.code).to.equal('ERR_MIGRATION_VERSION');
      expect(e.message).to.contain('format 2.0').and.contain(`format ${FORMAT_MAJOR}.${FORMAT_MINOR}`);
    });

    it('refuses a newer minor version and accepts an older or equal one', () => {
      const newer = new StreamWriter({ major: 1, minor: 3 });
      const e = failure(concat(newer.header('GenuineIntel')), 'stream', { version: { major: 1, minor: 2 } });
      expect(e.code).to.equal('ERR_MIGRATION_VERSION');
      expect(e.message).to.contain('1.3 is newer than this tsvirt reads (1.2)');
      for (const minor of [0, 2]) {
        const w = new StreamWriter({ major: 1, minor });
        const { reader, messages } = collectingReader('stream', { version: { major: 1, minor: 2 } });
        reader.push(concat([...w.header('GenuineIntel'), ...w.config(description())]));
        expect(messages[0]).to.deep.include({ type: 'header' });
      }
    });

    it('skips header fields a newer minor appended after the vendor', () => {
      const header = new StreamWriter().header('AuthenticAMD')[0];
      const longer = new Uint8Array(header.length + 5);
      longer.set(header);
      new DataView(longer.buffer).setUint32(12, header.length - 16 + 5, true);
      const { reader, messages } = collectingReader();
      reader.push(longer);
      expect(messages[0]).to.deep.equal({ type: 'header', header: { major: FORMAT_MAJOR, minor: FORMAT_MINOR, arch: 'x86_64', vendor: 'AuthenticAMD' } });
    });

    it('refuses an oversized header as soon as its length is read', () => {
      const h = new Uint8Array(16);
      h.set(STREAM_MAGIC);
      new DataView(h.buffer).setUint16(8, 1, true);
      new DataView(h.buffer).setUint32(12, 0xffffffff, true);
      const { reader } = collectingReader();
      expect(() => reader.push(h)).to.throw(MigrationStreamError, /4294967295 header bytes exceed/);
    });
  });

  describe('sections', () => {
    it('refuses a section longer than its cap from its 8-byte header, before reading or allocating the body', () => {
      const { reader } = collectingReader();
      reader.push(prefix());
      const e = (() => {
        try {
          reader.push(section(SectionType.DEVICE_STATE, [], 1, 0xfffffff0).subarray(0, 8));
        } catch (err) {
          return err as MigrationStreamError;
        }
        throw new Error('accepted');
      })();
      expect(e.code).to.equal('ERR_MIGRATION_LIMIT');
      expect(e.message).to.equal('DEVICE_STATE of 4294967280 bytes exceeds the 4194304-byte limit');
    });

    it('names an unknown section type', () => {
      const e = failure(concat([prefix(), section(0x99, [])]));
      expect(e.code).to.equal('ERR_MIGRATION_UNSUPPORTED');
      expect(e.message).to.match(/^unknown section type 0x99 after CONFIG/);
    });

    it('refuses a section version newer than this build reads', () => {
      const e = failure(concat([prefix(), section(SectionType.RAM_PASS_END, new Uint8Array(12), 2)]));
      expect(e.message).to.equal('RAM_PASS_END version 2 is newer than this tsvirt reads (1)');
    });

    it('refuses sections out of order', () => {
      const w = new StreamWriter();
      const header = concat(w.header('GenuineIntel'));
      expect(failure(concat([header, ramSection(0, [[0, 1, 0, 0]])])).message).to.equal('unexpected RAM_PAGES: expecting CONFIG (or ERROR)');
      const early = failure(concat([prefix(), section(SectionType.VCPU_STATE, new Uint8Array(6))]));
      expect(early.code).to.equal('ERR_MIGRATION_ORDER');
      expect(early.message).to.contain('unexpected VCPU_STATE: expecting RAM_PAGES or RAM_PASS_END');
      expect(failure(concat([prefix(), section(SectionType.ACCEPT, json({ major: 1, minor: 0 }))])).code).to.equal('ERR_MIGRATION_ORDER');
    });

    it('refuses RAM after the final pass, and a pass number out of sequence', () => {
      const pass = (n: number, final: number) => section(SectionType.RAM_PASS_END, new Uint8Array(new Uint32Array([n, 1, final]).buffer));
      expect(failure(concat([prefix(), pass(1, 1), ramSection(0, [[0, 1, 0, 0]])])).message).to.match(/^unexpected RAM_PAGES: expecting VCPU_STATE/);
      expect(failure(concat([prefix(), pass(2, 0)])).message).to.equal('RAM_PASS_END: pass 2 after pass 0');
    });

    it('refuses data after RUN', () => {
      const e = failure(concat([validStream().bytes, Uint8Array.of(0)]));
      expect(e.code).to.equal('ERR_MIGRATION_ORDER');
      expect(e.message).to.contain('after the stream was complete');
    });

    it('refuses READY before ACCEPT on the reply path', () => {
      const e = failure(section(SectionType.READY, json({ passes: 0, normalPages: 0, zeroPages: 0, vcpus: 0, devices: 0 })), 'replies');
      expect(e.message).to.equal('unexpected READY: expecting ACCEPT (or ERROR)');
    });

    it('refuses a CONFIG that is not JSON or lacks members, naming the member', () => {
      expect(failure(concat([new StreamWriter().header('X')[0], section(SectionType.CONFIG, [0x7b])])).message).to.match(/^CONFIG: body is not valid JSON/);
      const noVcpus = { ...description(), vcpus: 'two' };
      expect(failure(concat([new StreamWriter().header('X')[0], section(SectionType.CONFIG, json(noVcpus))])).message).to.equal('CONFIG: vcpus must be an integer from 1 to 1024');
      const badRange = { ...description(), memory: { size: 4096, ranges: [{ gpa: 1, size: 4096 }] } };
      expect(failure(concat([new StreamWriter().header('X')[0], section(SectionType.CONFIG, json(badRange))])).message).to.contain('memory.ranges[0] must start and end on a 4096-byte page boundary');
    });

    it('refuses invalid UTF-8 in a JSON body', () => {
      expect(failure(concat([new StreamWriter().header('X')[0], section(SectionType.CONFIG, [0xff, 0xfe])])).message).to.equal('CONFIG: body is not valid UTF-8');
    });
  });

  describe('RAM_PAGES', () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ['a region the CONFIG does not have', ramSection(2, [[0, 1, 0, 0]]), /^RAM_PAGES: region 2 out of range \(CONFIG has 2 memory ranges\)$/],
      ['pages past the end of the region', ramSection(1, [[7, 2, 0, 0]]), /^RAM_PAGES entry 0: pages 7\.\.8 lie outside region 1 \(8 pages\)$/],
      ['an unknown page encoding', ramSection(0, [[0, 1, 9, 0]]), /^RAM_PAGES entry 0: unknown page encoding 9$/],
      ['a reserved encoding this build cannot decode', ramSection(0, [[0, 1, 3, 100]], 100), /^RAM_PAGES entry 0: page encoding ZLIB is not supported/],
      ['an XBZRLE entry of two pages', ramSection(0, [[0, 2, 2, 3]], 3), /^RAM_PAGES entry 0: an XBZRLE entry covers one page, not 2$/],
      ['an XBZRLE delta larger than a page', ramSection(0, [[0, 1, 2, 5000]], 5000), /XBZRLE delta of 5000 bytes is larger than a page/],
      ['an XBZRLE delta running past its page', ramSection(0, [[0, 1, 2, 4]], 4, 0, 0, Uint8Array.of(0x80, 0x20, 1, 9)), /XBZRLE run ends at byte 4097/],
      ['unknown batch flags', ramSection(0, [[0, 1, 0, 0]], 0, 0, 2), /^RAM_PAGES: unknown batch flags 0x2$/],
      ['a zlib block that does not inflate', ramSection(0, [[0, 1, 1, 4096]], 10, 0, 1, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)), /^RAM_PAGES: the zlib block does not inflate/],
      ['a zlib block far larger than its pages', ramSection(0, [[0, 1, 1, 4096]], 6000, 0, 1), /a zlib block of 6000 bytes cannot hold 4096 bytes/],
      ['an XBZRLE entry in a zlib batch', ramSection(0, [[0, 1, 2, 3]], 3, 0, 1), /XBZRLE entry in a zlib batch/],
      ['NORMAL pages with the wrong payload size', ramSection(0, [[0, 1, 1, 100]], 100), /^RAM_PAGES entry 0: 1 NORMAL pages carry 100 bytes, not 4096$/],
      ['ZERO pages with a payload', ramSection(0, [[0, 1, 0, 8]], 8), /ZERO pages carry 8 payload bytes/],
      ['a length that disagrees with the entries', ramSection(0, [[0, 1, 0, 0]], 0, 4), /^RAM_PAGES: entries describe 24 bytes but the section is 28$/],
      ['no entries', ramSection(0, []), /^RAM_PAGES: batch has no entries$/],
      ['an entry of no pages', ramSection(0, [[0, 0, 0, 0]]), /entry 0: no pages/],
    ];
    for (const [what, bytes, message] of cases) {
      it(`refuses ${what}`, () => {
        expect(failure(concat([prefix(), bytes])).message).to.match(message);
      });
    }

    it('refuses more entries than the cap before reading the entry table', () => {
      const head = new Uint8Array(8);
      new DataView(head.buffer).setUint32(4, 5000, true);
      const { reader } = collectingReader();
      reader.push(prefix());
      expect(() => reader.push(concat([section(SectionType.RAM_PAGES, [], 1, 8 + 5000 * 16).subarray(0, 8), head]))).to.throw(MigrationStreamError, 'RAM_PAGES: 5000 entries exceed the limit of 4096');
    });

    it('refuses more pages per batch than the cap', () => {
      const e = failure(concat([prefix(), ramSection(0, [[0, 16, 0, 0]])]), 'stream', { limits: { batchPages: 8 } });
      expect(e.code).to.equal('ERR_MIGRATION_LIMIT');
      expect(e.message).to.equal('RAM_PAGES: more than 8 pages in one batch');
    });
  });

  describe('state sections and END', () => {
    function upToState(): Uint8Array {
      return concat([prefix(), section(SectionType.RAM_PASS_END, new Uint8Array(new Uint32Array([1, 1, 1]).buffer))]);
    }
    function vcpu(index: number): Uint8Array {
      const w = new StreamWriter();
      w.header('X');
      w.config(description());
      w.passEnd(1, true);
      return concat(w.vcpu(index, vcpuBlobs(index)));
    }

    it('refuses a vCPU index outside the CONFIG and a vCPU sent twice', () => {
      expect(failure(concat([upToState(), vcpu(2)])).message).to.equal('VCPU_STATE: vCPU index 2 out of range (CONFIG has 2 vCPUs)');
      expect(failure(concat([upToState(), vcpu(0), vcpu(0)])).message).to.equal('VCPU_STATE: vCPU 0 sent twice');
    });

    it('refuses a duplicate blob name and a blob longer than its body', () => {
      const dup = new Uint8Array([0, 0, 0, 0, 2, 0, 1, 0x61, 0, 0, 0, 0, 1, 0x61, 0, 0, 0, 0]);
      expect(failure(concat([upToState(), section(SectionType.VCPU_STATE, dup)])).message).to.equal("VCPU_STATE: blob 'a' appears twice");
      const long = new Uint8Array([0, 0, 0, 0, 1, 0, 1, 0x61, 0xff, 0xff, 0, 0, 1, 2]);
      expect(failure(concat([upToState(), section(SectionType.VCPU_STATE, long)])).message).to.equal("VCPU_STATE: body ends inside blob 'a' (needs 65535 bytes, 2 left)");
    });

    it('refuses END while a vCPU, a CONFIG device or a chip has no state', () => {
      const end = section(SectionType.END, json({ passes: 1, normalPages: 0, zeroPages: 0, vcpus: 1, devices: 0 }));
      expect(failure(concat([upToState(), vcpu(0), end])).message).to.equal('END: no VCPU_STATE for vCPU 1');
      const w = new StreamWriter();
      const all = concat([...w.header('X'), ...w.config(description()), ...w.passEnd(1, true), ...w.vcpu(0, vcpuBlobs(0)), ...w.vcpu(1, vcpuBlobs(1)), ...w.deviceJson('disk0', 1, {}), ...w.end()]);
      expect(failure(all).message).to.equal("END: no DEVICE_STATE for device 'net0'");
    });

    it('refuses an END whose summary disagrees with what arrived', () => {
      const { chunks } = validStream();
      // Everything up to END (the last two chunks are END and RUN), then an END claiming one page more.
      const summary = { passes: 2, normalPages: 7, zeroPages: 19, vcpus: 2, devices: 3 };
      const good = concat(chunks.slice(0, -2));
      const e = failure(concat([good, section(SectionType.END, json(summary))]));
      expect(e.message).to.equal("END: the source's summary disagrees with the stream (normalPages: sent 7, received 6)");
    });

    it('refuses a chip section sent twice', () => {
      const w = new StreamWriter();
      const s = concat([...w.header('X'), ...w.config(description()), ...w.passEnd(1, true), ...w.irqchip(chipBlobs())]);
      const w2 = new StreamWriter();
      w2.header('X');
      w2.config(description());
      w2.passEnd(1, true);
      const irq = concat(w2.irqchip(chipBlobs()));
      expect(failure(concat([s, irq])).message).to.equal('IRQCHIP: sent twice');
    });
  });

  describe('truncation and noise', () => {
    it('fails truncations around every section boundary and throughout every section with "truncated stream in <part>"', () => {
      const { bytes, chunks } = validStream();
      // Every byte near a section boundary (where the parser changes state), and a stride through bodies.
      const cuts = new Set<number>();
      const view = new DataView(bytes.buffer, bytes.byteOffset);
      for (let at = chunks[0].length; at + 8 <= bytes.length; at += 8 + view.getUint32(at + 4, true)) {
        for (let d = -4; d <= 72; d++) if (at + d >= 0 && at + d < bytes.length) cuts.add(at + d);
      }
      for (let cut = 0; cut < bytes.length; cut += cut < 64 ? 1 : 53) cuts.add(cut);
      const seen = new Set<string>();
      for (const cut of cuts) {
        const e = failure(bytes.subarray(0, cut));
        expect(e.code, `cut at ${cut}`).to.equal('ERR_MIGRATION_TRUNCATED');
        expect(e.message).to.match(/^truncated stream in [A-Za-z_ ]+: /);
        seen.add(e.where);
      }
      expect([...seen].sort()).to.deep.equal(['CLOCK', 'CONFIG', 'DEVICE_STATE', 'END', 'IRQCHIP', 'PIT', 'RAM_PAGES', 'RAM_PASS_END', 'VCPU_STATE', 'section header', 'stream header']);
    });

    it('says what it expected when the input ends between sections', () => {
      const { chunks } = validStream();
      const e = failure(concat(chunks.slice(0, -1)));
      expect(e.message).to.equal('truncated stream in section header: the input ended after END, expecting RUN (or ERROR)');
    });

    it('fails bit-flipped streams with MigrationStreamError or parses them, never anything else', () => {
      const { bytes } = validStream();
      const next = rng(11);
      for (let i = 0; i < 2000; i++) {
        const bad = bytes.slice();
        const flips = 1 + Math.floor(next() * 3);
        for (let f = 0; f < flips; f++) {
          const pos = Math.floor(next() * bad.length);
          bad[pos] ^= 1 << Math.floor(next() * 8);
        }
        const e = feed(bad, next);
        if (e !== undefined) expect(e, `round ${i}`).to.be.instanceOf(MigrationStreamError);
        if (e !== undefined) expect((e as Error).message).not.to.contain('internal parser error');
      }
    });

    it('fails random bytes, with or without a valid prefix, with MigrationStreamError only', () => {
      const next = rng(5);
      const valid = prefix();
      for (let i = 0; i < 1000; i++) {
        const noise = new Uint8Array(Math.floor(next() * 2000));
        for (let j = 0; j < noise.length; j++) noise[j] = Math.floor(next() * 256);
        const bytes = i % 2 ? noise : concat([valid.subarray(0, Math.floor(next() * valid.length)), noise]);
        const e = feed(bytes, next);
        expect(e).to.be.instanceOf(MigrationStreamError);
        expect((e as Error).message).not.to.contain('internal parser error');
      }
    });

    it('fails mutated section headers (type, version, length) with MigrationStreamError only', () => {
      const { bytes, chunks } = validStream();
      const offsets: number[] = [];
      // Section headers begin after the stream header, at each frame boundary the writer produced.
      let at = chunks[0].length;
      const view = new DataView(bytes.buffer, bytes.byteOffset);
      while (at + 8 <= bytes.length) {
        offsets.push(at);
        at += 8 + view.getUint32(at + 4, true);
      }
      const next = rng(99);
      for (const off of offsets) {
        for (let k = 0; k < 40; k++) {
          const bad = bytes.slice();
          bad[off + Math.floor(next() * 8)] = Math.floor(next() * 256);
          const e = feed(bad, next);
          if (e !== undefined) expect(e).to.be.instanceOf(MigrationStreamError);
        }
      }
    });
  });

  describe('failure handling', () => {
    it('passes a sink exception through untouched and stays failed', () => {
      class Boom extends TsvirtError {}
      const boom = new Boom('ERR_BOOM', 'device restore failed');
      const { reader } = collectingReader('stream', { onMessage: (m: { type: string }) => { if (m.type === 'config') throw boom; } });
      expect(() => reader.push(validStream().bytes)).to.throw(boom);
      expect(() => reader.push(Uint8Array.of(1))).to.throw(boom);
      expect(() => reader.finish()).to.throw(boom);
    });

    it('refuses a RAM sink view of the wrong size', () => {
      const { reader } = collectingReader('stream', { ram: { target: () => new Uint8Array(10), zero: () => {} } });
      expect(() => reader.push(validStream().bytes)).to.throw(TsvirtError, /RAM sink returned 10 bytes/);
    });

    it('refuses commit() without readBuffer() and beyond the lent buffer', () => {
      const { reader } = collectingReader();
      expect(() => reader.commit(1)).to.throw(TsvirtError, 'commit() without a preceding readBuffer()');
      const b = reader.readBuffer();
      expect(() => reader.commit(b.length + 1)).to.throw(TsvirtError, /outside the lent buffer/);
    });

    it('reports what it is waiting for', () => {
      const r = collectingReader();
      expect(r.reader.expecting).to.equal('the stream header');
      r.reader.push(prefix());
      expect(r.reader.expecting).to.equal('RAM_PAGES or RAM_PASS_END (or ERROR)');
      const replies = collectingReader('replies');
      replies.reader.push(concat(new ReplyWriter().accept()));
      expect(replies.reader.expecting).to.equal('READY or PASS_ACK (or ERROR)');
    });
  });
});
