// Round trips of every section type through StreamWriter and StreamReader, in any chunking and through readBuffer/commit.

import { expect } from 'chai';
import { FORMAT_MAJOR, FORMAT_MINOR, SECTION_HEADER_SIZE, type StreamMessage } from '../../../migration/format.js';
import { ReplyWriter, StreamWriter } from '../../../migration/writer.js';
import { collectingReader, concat, description, guestRam, rng, validStream } from './fixtures.js';

function types(messages: StreamMessage[]): string[] {
  return messages.map((m) => m.type);
}

describe('migration stream round trip', () => {
  it('carries every section type from writer to reader', () => {
    const { bytes } = validStream();
    const { reader, messages } = collectingReader();
    reader.push(bytes);
    reader.finish();
    expect(reader.done).to.equal(true);
    expect(types(messages)).to.deep.equal([
      'header', 'config', 'pass-end', 'pass-end', 'vcpu', 'vcpu', 'irqchip', 'pit', 'clock', 'device', 'device', 'device', 'end', 'run',
    ]);
    expect(messages[0]).to.deep.equal({ type: 'header', header: { major: FORMAT_MAJOR, minor: FORMAT_MINOR, arch: 'x86_64', vendor: 'GenuineIntel' } });
    expect(messages[1]).to.deep.equal({ type: 'config', description: description() });
    expect(messages[2]).to.deep.equal({ type: 'pass-end', pass: 1, dirtySyncs: 1, final: false });
    expect(messages[3]).to.deep.equal({ type: 'pass-end', pass: 2, dirtySyncs: 2, final: true });
  });

  it('decodes vCPU, chip and device bodies exactly as written', () => {
    const { reader, messages } = collectingReader();
    reader.push(validStream().bytes);
    const vcpu1 = messages.find((m) => m.type === 'vcpu' && m.index === 1);
    if (vcpu1?.type !== 'vcpu') throw new Error('no vcpu 1');
    expect([...vcpu1.blobs.keys()]).to.deep.equal(['regs', 'xsave']);
    expect(vcpu1.blobs.get('regs')).to.deep.equal(new Uint8Array(144).fill(2));
    expect(vcpu1.blobs.get('xsave')).to.deep.equal(new Uint8Array(4096).fill(0xa1));
    const irq = messages.find((m) => m.type === 'irqchip');
    if (irq?.type !== 'irqchip') throw new Error('no irqchip');
    expect(irq.blobs.get('pic_master')).to.deep.equal(Uint8Array.of(1, 2, 3));
    const devices = messages.filter((m) => m.type === 'device');
    expect(devices[0]).to.deep.equal({ type: 'device', id: 'disk0', version: 1, encoding: 'json', state: { queues: [{ size: 256, avail: 12 }] } });
    expect(devices[1]).to.deep.include({ id: 'net0', version: 3, encoding: 'binary' });
    if (devices[1].type === 'device' && devices[1].encoding === 'binary') expect([...devices[1].bytes]).to.deep.equal([9, 8, 7]);
  });

  it('puts every page into the RAM sink and reports zero runs separately', () => {
    const source = guestRam();
    const { reader, ram, zeroCalls } = collectingReader();
    reader.push(validStream(source).bytes);
    expect(ram[0]).to.deep.equal(source[0]);
    expect(ram[1]).to.deep.equal(source[1]);
    expect(zeroCalls).to.deep.include([0, 3 * 4096, 2 * 4096]);
    expect(reader.summary).to.deep.equal({ passes: 2, normalPages: 6, zeroPages: 19, vcpus: 2, devices: 3 });
  });

  it('counts the same summary on both ends', () => {
    const { bytes, writer } = validStream();
    const { reader } = collectingReader();
    reader.push(bytes);
    expect(reader.summary).to.deep.equal(writer.summary);
  });

  it('parses the same stream fed one byte at a time', () => {
    const { bytes } = validStream();
    const whole = collectingReader();
    whole.reader.push(bytes);
    const bytewise = collectingReader();
    for (let i = 0; i < bytes.length; i++) bytewise.reader.push(bytes.subarray(i, i + 1));
    bytewise.reader.finish();
    expect(bytewise.messages).to.deep.equal(whole.messages);
    expect(bytewise.ram).to.deep.equal(whole.ram);
  });

  it('parses the same stream in random chunk sizes, and keeps no view of a reused chunk buffer', () => {
    const { bytes } = validStream();
    const whole = collectingReader();
    whole.reader.push(bytes);
    const next = rng(7);
    for (let round = 0; round < 20; round++) {
      const r = collectingReader();
      const reused = new Uint8Array(5000);
      for (let at = 0; at < bytes.length;) {
        const n = Math.min(bytes.length - at, 1 + Math.floor(next() * 4999));
        reused.set(bytes.subarray(at, at + n));
        r.reader.push(reused.subarray(0, n));
        reused.fill(0xcc);
        at += n;
      }
      r.reader.finish();
      expect(r.messages).to.deep.equal(whole.messages);
      expect(r.ram).to.deep.equal(whole.ram);
    }
  });

  it('lends guest RAM itself to readBuffer while page data is due, so the socket can read straight into it', () => {
    const { bytes } = validStream();
    const r = collectingReader();
    let direct = 0;
    let at = 0;
    const next = rng(3);
    while (at < bytes.length) {
      const buf = r.reader.readBuffer();
      if (buf.buffer === r.ram[0].buffer || buf.buffer === r.ram[1].buffer) direct += 1;
      const n = Math.min(buf.length, bytes.length - at, 1 + Math.floor(next() * 6000));
      buf.set(bytes.subarray(at, at + n));
      r.reader.commit(n);
      at += n;
    }
    r.reader.finish();
    const whole = collectingReader();
    whole.reader.push(bytes);
    expect(direct).to.be.greaterThan(0);
    expect(r.ram).to.deep.equal(whole.ram);
    expect(r.messages).to.deep.equal(whole.messages);
  });

  it('round-trips the replies: ACCEPT, READY with the summary, RUNNING', () => {
    const w = new ReplyWriter();
    const summary = { passes: 3, normalPages: 10, zeroPages: 5, vcpus: 2, devices: 4 };
    const { reader, messages } = collectingReader('replies');
    reader.push(concat([...w.accept(), ...w.ready(summary), ...w.running()]));
    reader.finish();
    expect(messages).to.deep.equal([{ type: 'accept', major: FORMAT_MAJOR, minor: FORMAT_MINOR }, { type: 'ready', summary }, { type: 'running' }]);
  });

  it('round-trips ERROR in both directions with its message and code', () => {
    const w = new ReplyWriter();
    const replies = collectingReader('replies');
    replies.reader.push(concat([...w.accept(), ...w.error('memory size mismatch: source 1024 MiB, destination 512 MiB', 'ERR_MIGRATION_COMPAT')]));
    replies.reader.finish();
    expect(replies.messages[1]).to.deep.equal({ type: 'error', message: 'memory size mismatch: source 1024 MiB, destination 512 MiB', code: 'ERR_MIGRATION_COMPAT' });

    const w2 = new StreamWriter();
    const stream = collectingReader();
    stream.reader.push(concat([...w2.header('GenuineIntel'), ...w2.config(description()), ...w2.error('migration cancelled by migrate_cancel', 'cancelled')]));
    stream.reader.finish();
    expect(stream.messages.at(-1)).to.deep.equal({ type: 'error', message: 'migration cancelled by migrate_cancel', code: 'cancelled' });
  });

  it('merges small parts but passes page data on as views of guest RAM', () => {
    const ram = guestRam();
    const { chunks } = validStream(ram);
    const views = chunks.filter((c) => c.buffer === ram[0].buffer || c.buffer === ram[1].buffer);
    expect(views.length).to.be.greaterThan(0);
    expect(views.every((v) => v.length % 4096 === 0)).to.equal(true);
    // The headers are built separately: a RAM_PAGES section is its header and entry table, then the views.
    const w = new StreamWriter();
    w.header('GenuineIntel');
    w.config(description());
    const out = w.ramPages(0, ram[0], [{ firstPage: 1, pageCount: 2, kind: 'normal' }, { firstPage: 3, pageCount: 2, kind: 'zero' }, { firstPage: 5, pageCount: 1, kind: 'normal' }]);
    expect(out.map((c) => c.length)).to.deep.equal([SECTION_HEADER_SIZE + 8 + 3 * 16, 2 * 4096, 4096]);
    expect(out[1].buffer).to.equal(ram[0].buffer);
    expect(out[1].byteOffset).to.equal(ram[0].byteOffset + 4096);
  });
});
