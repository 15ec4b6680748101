// Multifd data channels: preamble, plain and zlib batches and CHANNEL_SYNC round-trip; bad channels are refused by name.

import { expect } from 'chai';
import { deflateRawSync } from 'node:zlib';
import { MigrationStreamError } from '../../../migration/errors.js';
import { CHANNEL_PREAMBLE_SIZE, FORMAT_MAJOR, FORMAT_MINOR, type StreamMessage } from '../../../migration/format.js';
import { planRamBatches } from '../../../migration/ram.js';
import { StreamReader } from '../../../migration/reader.js';
import { ChannelStreamWriter } from '../../../migration/writer.js';
import { concat, description, guestRam, PAGE } from './fixtures.js';

const SESSION = Uint8Array.from({ length: 16 }, (_, i) => i);

function channelReader(): { reader: StreamReader; messages: StreamMessage[]; ram: Uint8Array[] } {
  const ram = [new Uint8Array(16 * PAGE).fill(0xcc), new Uint8Array(8 * PAGE).fill(0xcc)];
  const messages: StreamMessage[] = [];
  const reader = new StreamReader({
    direction: 'channel',
    config: description(),
    onMessage: (m) => messages.push(m),
    ram: {
      target: (r, off, len) => ram[r].subarray(off, off + len),
      zero: (r, off, len) => ram[r].fill(0, off, off + len),
    },
  });
  return { reader, messages, ram };
}

/** A channel carrying every page of guestRam(), zlib-compressed when `zlib`, then its final sync. */
function channelStream(zlib: boolean): Uint8Array {
  const source = guestRam();
  const w = new ChannelStreamWriter(description());
  const chunks = [...w.preamble(1, 2, SESSION)];
  source.forEach((bytes, region) => {
    for (const b of planRamBatches(bytes, null, 8)) {
      const normal = b.runs.filter((r) => r.kind === 'normal').map((r) => bytes.subarray(r.firstPage * PAGE, (r.firstPage + r.pageCount) * PAGE));
      const packed = zlib && normal.length ? deflateRawSync(concat(normal)) : undefined;
      chunks.push(...w.ramPages(region, bytes, b.runs, packed));
    }
  });
  chunks.push(...w.sync(1, false), ...w.sync(2, true));
  return concat(chunks);
}

describe('multifd data channels', () => {
  for (const zlib of [false, true]) {
    it(`carries pages ${zlib ? 'zlib-compressed' : 'plain'} into RAM and ends at the final sync`, () => {
      const { reader, messages, ram } = channelReader();
      const bytes = channelStream(zlib);
      for (let i = 0; i < bytes.length; i += 777) reader.push(bytes.subarray(i, i + 777));
      reader.finish();
      expect(reader.done).to.equal(true);
      expect(ram).to.deep.equal(guestRam());
      expect(messages.map((m) => m.type)).to.deep.equal(['channel', 'channel-sync', 'channel-sync']);
      expect(messages[0]).to.deep.equal({ type: 'channel', major: FORMAT_MAJOR, minor: FORMAT_MINOR, index: 1, count: 2, session: Buffer.from(SESSION).toString('hex') });
    });
  }

  it('makes a compressible guest page cost far less than a page on the wire', () => {
    expect(channelStream(true).length).to.be.lessThan(channelStream(false).length / 4);
  });

  it('refuses a connection that is not a channel, a channel index out of range, and a sync going backwards', () => {
    const notChannel = new Uint8Array(CHANNEL_PREAMBLE_SIZE).fill(0x41);
    expect(() => channelReader().reader.push(notChannel)).to.throw(MigrationStreamError, /channel preamble: bad magic/);
    const bad = channelStream(false).slice(0, CHANNEL_PREAMBLE_SIZE);
    new DataView(bad.buffer).setUint16(12, 5, true);
    expect(() => channelReader().reader.push(bad)).to.throw(MigrationStreamError, /channel 5 of 2/);
    const w = new ChannelStreamWriter(description());
    const backwards = concat([...w.preamble(0, 1, SESSION), ...w.sync(3, false), ...new ChannelStreamWriter(description()).sync(2, false)]);
    expect(() => channelReader().reader.push(backwards)).to.throw(MigrationStreamError, /CHANNEL_SYNC: pass 2 after pass 3/);
  });

  it('reports a channel cut before its final sync as truncated', () => {
    const bytes = channelStream(true);
    const { reader } = channelReader();
    reader.push(bytes.subarray(0, bytes.length - 20));
    expect(() => reader.finish()).to.throw(MigrationStreamError, /truncated/);
  });

  it('refuses sections that belong to the main stream', () => {
    const { reader } = channelReader();
    const w = new ChannelStreamWriter(description());
    const passEnd = Uint8Array.of(3, 0, 1, 0, 12, 0, 0, 0);
    expect(() => reader.push(concat([...w.preamble(0, 1, SESSION), passEnd]))).to.throw(MigrationStreamError, /unexpected RAM_PASS_END: expecting RAM_PAGES or CHANNEL_SYNC/);
  });
});
