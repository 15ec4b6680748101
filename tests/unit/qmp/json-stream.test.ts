// Unit tests of the incremental JSON splitter: framing, limits and recovery after bad input.
import { expect } from 'chai';
import { JsonStream, type JsonStreamItem } from '../../../qmp/json-stream.js';

const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');

function feed(stream: JsonStream, ...chunks: (string | Uint8Array)[]): JsonStreamItem[] {
  return chunks.flatMap((c) => stream.push(typeof c === 'string' ? enc(c) : c));
}

const values = (items: JsonStreamItem[]): unknown[] => items.filter((i) => i.kind === 'value').map((i) => (i as { value: unknown }).value);
const errors = (items: JsonStreamItem[]): string[] => items.filter((i) => i.kind === 'error').map((i) => (i as { message: string }).message);

describe('qmp json-stream', () => {
  it('emits one value per complete top-level object', () => {
    const items = feed(new JsonStream(), '{"execute":"query-status"}');
    expect(items).to.deep.equal([{ kind: 'value', value: { execute: 'query-status' } }]);
  });

  it('reassembles a message split across many packets, byte by byte', () => {
    const s = new JsonStream();
    const text = '{"execute":"migrate","arguments":{"uri":"tcp:1.2.3.4:5"},"id":{"n":[1,2]}}';
    const items: JsonStreamItem[] = [];
    for (const ch of text) items.push(...s.push(enc(ch)));
    expect(values(items)).to.deep.equal([JSON.parse(text)]);
  });

  it('splits several messages batched in one packet, with or without separators', () => {
    const items = feed(new JsonStream(), '{"a":1}{"b":2}\r\n{"c":3} [4]\n"five"\n');
    expect(values(items)).to.deep.equal([{ a: 1 }, { b: 2 }, { c: 3 }, [4], 'five']);
  });

  it('keeps nested containers together until the outermost one closes', () => {
    const s = new JsonStream();
    expect(feed(s, '{"a":{"b":[1,{"c":[]}]}', ',"d":{}')).to.deep.equal([]);
    expect(values(feed(s, '}'))).to.deep.equal([{ a: { b: [1, { c: [] }] }, d: {} }]);
  });

  it('is not fooled by braces, brackets and escaped quotes inside strings', () => {
    const text = '{"s":"}{][\\"}\\\\","t":"\\u007b"}';
    const s = new JsonStream();
    const items = [...feed(s, text.slice(0, 9)), ...feed(s, text.slice(9))];
    expect(values(items)).to.deep.equal([{ s: '}{][\"}\\', t: '{' }]);
  });

  it('splits inside an escape sequence without losing the escaped quote', () => {
    const s = new JsonStream();
    expect(feed(s, '{"s":"a\\')).to.deep.equal([]);
    expect(values(feed(s, '"b"}'))).to.deep.equal([{ s: 'a"b' }]);
  });

  it('decodes multi-byte UTF-8 split between packets', () => {
    const bytes = enc('{"name":"żółw 🐢"}');
    const s = new JsonStream();
    const items = [...s.push(bytes.subarray(0, 11)), ...s.push(bytes.subarray(11, 19)), ...s.push(bytes.subarray(19))];
    expect(values(items)).to.deep.equal([{ name: 'żółw 🐢' }]);
  });

  it('reports invalid UTF-8 in a string and carries on with the next message', () => {
    const s = new JsonStream();
    const bad = Uint8Array.from([...enc('{"s":"'), 0xc3, 0x28, ...enc('"}{"ok":1}')]);
    const items = s.push(bad);
    expect(errors(items)).to.deep.equal(['JSON parse error, invalid UTF-8 sequence']);
    expect(values(items)).to.deep.equal([{ ok: 1 }]);
  });

  it('reports a syntactically wrong but balanced value and parses the next one', () => {
    const items = feed(new JsonStream(), '{"execute": }{"execute":"x"}');
    expect(errors(items)).to.have.length(1);
    expect(errors(items)[0]).to.match(/^JSON parse error, /);
    expect(values(items)).to.deep.equal([{ execute: 'x' }]);
  });

  it('answers a lone closing brace with "expecting value", as QEMU does, and stays usable', () => {
    const items = feed(new JsonStream(), '}]{"a":1}');
    expect(errors(items)).to.deep.equal(['JSON parse error, expecting value', 'JSON parse error, expecting value']);
    expect(values(items)).to.deep.equal([{ a: 1 }]);
  });

  it('reports a run of garbage bytes once and resynchronises on the next object', () => {
    const items = feed(new JsonStream(), '{"a":1} @@@ ### {"b":2}');
    expect(errors(items)).to.deep.equal(["JSON parse error, stray '@'"]);
    expect(values(items)).to.deep.equal([{ a: 1 }, { b: 2 }]);
  });

  it('drops a message with a stray byte inside it and recovers at the next message', () => {
    const items = feed(new JsonStream(), '{"execute": @bad}\r\n{"execute":"ok"}');
    expect(errors(items)).to.deep.equal(["JSON parse error, stray '@'"]);
    expect(values(items)).to.deep.equal([{ execute: 'ok' }]);
  });

  it('treats a newline inside a string as a lexical error and a resync point', () => {
    const items = feed(new JsonStream(), '{"execute": "query-st\natus"}\n{"execute":"query-status"}');
    expect(errors(items)).to.deep.equal(["JSON parse error, stray '\n'"]);
    expect(values(items)).to.deep.equal([{ execute: 'query-status' }]);
  });

  it('lets a control byte or 0xFF reset a half-received message', () => {
    const s = new JsonStream();
    expect(feed(s, '{"execute":"query-status", "id": 1')).to.deep.equal([]);
    const items = feed(s, Uint8Array.of(0xff), '{"id":2}');
    expect(errors(items)).to.have.length(1);
    expect(values(items)).to.deep.equal([{ id: 2 }]);
    expect(feed(s, '{"x":', Uint8Array.of(0x00), '{"id":3}').filter((i) => i.kind === 'value')).to.have.length(1);
  });

  it('ignores reset bytes when nothing is pending', () => {
    expect(feed(new JsonStream(), Uint8Array.of(0x00, 0x01, 0xff, 0xfe, 0x1b), '{"a":1}')).to.deep.equal([
      { kind: 'value', value: { a: 1 } },
    ]);
  });

  it('emits bare top-level scalars once a delimiter ends them, and at end of input', () => {
    const s = new JsonStream();
    expect(values(feed(s, '42 true{"a":1}'))).to.deep.equal([42, true, { a: 1 }]);
    expect(feed(s, 'null')).to.deep.equal([]);
    expect(values(s.end())).to.deep.equal([null]);
  });

  it('rejects nesting deeper than the limit and skips the rest of that value', () => {
    const s = new JsonStream({ maxNesting: 8 });
    const deep = '['.repeat(20) + ']'.repeat(20);
    const items = feed(s, deep, '{"ok":true}');
    expect(errors(items)).to.deep.equal(['JSON nesting depth limit exceeded']);
    expect(values(items)).to.deep.equal([{ ok: true }]);
    expect(values(feed(s, '['.repeat(8) + ']'.repeat(8)))).to.have.length(1);
  });

  it('rejects a message over the size limit, skips it to its end and parses the next', () => {
    const s = new JsonStream({ maxMessageBytes: 1000 });
    const huge = JSON.stringify({ execute: 'x', arguments: { s: 'a'.repeat(5000), t: '}{' } });
    const items = feed(s, huge.slice(0, 2500), huge.slice(2500), '{"execute":"after"}');
    expect(errors(items)).to.deep.equal(['JSON token size limit exceeded']);
    expect(values(items)).to.deep.equal([{ execute: 'after' }]);
  });

  it('ends skipping an over-limit value at a line end, so an unclosed one cannot wedge the stream', () => {
    const s = new JsonStream({ maxNesting: 4 });
    const items = feed(s, '['.repeat(50) + '\r\n', '{"execute":"after"}');
    expect(errors(items)).to.deep.equal(['JSON nesting depth limit exceeded']);
    expect(values(items)).to.deep.equal([{ execute: 'after' }]);
  });

  it('accepts a message exactly at the size limit', () => {
    const msg = JSON.stringify({ s: 'x'.repeat(100) });
    const s = new JsonStream({ maxMessageBytes: Buffer.byteLength(msg) });
    expect(values(feed(s, msg))).to.have.length(1);
  });

  it('gives the same values however a valid stream is chunked', () => {
    const msgs = [
      { execute: 'a', id: 1 },
      { execute: 'b', arguments: { s: 'x}"\\y', n: [1, { z: null }] }, id: 'two' },
      { execute: 'c', arguments: { u: '→ ü' } },
    ];
    const bytes = enc(msgs.map((m) => JSON.stringify(m)).join('\r\n'));
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n) + 1;
    for (let round = 0; round < 200; round++) {
      const s = new JsonStream();
      const out: JsonStreamItem[] = [];
      for (let i = 0; i < bytes.length; ) {
        const n = rnd(12);
        out.push(...s.push(bytes.subarray(i, i + n)));
        i += n;
      }
      expect(values(out)).to.deep.equal(msgs);
    }
  });
});
