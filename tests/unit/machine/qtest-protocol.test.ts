// Unit tests of the qtest line protocol: every command's parse, the argument checks, reply and event formats.
import { expect } from 'chai';
import {
  QtestProtocolError, bytesToValue, formatEvent, parseCommand, parseEvent, parseUint, reply, valueToBytes,
  type QtestCommand,
} from '../../../machine/qtest/protocol.js';

function parseError(line: string): string {
  try {
    parseCommand(line);
  } catch (e) {
    expect(e).to.be.instanceOf(QtestProtocolError);
    return (e as Error).message;
  }
  throw new Error(`no error for '${line}'`);
}

describe('qtest protocol', () => {
  describe('numbers', () => {
    it('reads hex, octal and decimal like strtoull with base 0', () => {
      expect(parseUint('0x3F8', 'port')).to.equal(0x3f8n);
      expect(parseUint('010', 'x')).to.equal(8n);
      expect(parseUint('1016', 'x')).to.equal(1016n);
      expect(parseUint('0', 'x')).to.equal(0n);
      expect(parseUint('0xffffffffffffffff', 'x')).to.equal(0xffff_ffff_ffff_ffffn);
    });

    it('refuses signs, junk and octal digits out of range', () => {
      for (const w of ['-1', '0x', '12a', '09', 'ten', '+4']) expect(() => parseUint(w, 'value')).to.throw(QtestProtocolError);
    });
  });

  describe('commands', () => {
    const cases: [string, QtestCommand][] = [
      ['outb 0x3f8 0x41', { kind: 'out', size: 1, port: 0x3f8, value: 0x41 }],
      ['outw 0x604 0x2000', { kind: 'out', size: 2, port: 0x604, value: 0x2000 }],
      ['outl 0xcf8 0x80000000', { kind: 'out', size: 4, port: 0xcf8, value: 0x8000_0000 }],
      ['inb 0x3fd', { kind: 'in', size: 1, port: 0x3fd }],
      ['inw 0x608', { kind: 'in', size: 2, port: 0x608 }],
      ['inl 0xcfc', { kind: 'in', size: 4, port: 0xcfc }],
      ['writeb 0x1000 0xff', { kind: 'mmio-write', size: 1, addr: 0x1000n, value: 0xffn }],
      ['writew 0x1000 0xffff', { kind: 'mmio-write', size: 2, addr: 0x1000n, value: 0xffffn }],
      ['writel 0xfebf1000 1', { kind: 'mmio-write', size: 4, addr: 0xfebf_1000n, value: 1n }],
      ['writeq 0x100000000 0x123456789abcdef0', { kind: 'mmio-write', size: 8, addr: 0x1_0000_0000n, value: 0x1234_5678_9abc_def0n }],
      ['readb 0x10', { kind: 'mmio-read', size: 1, addr: 0x10n }],
      ['readw 0x10', { kind: 'mmio-read', size: 2, addr: 0x10n }],
      ['readl 0x10', { kind: 'mmio-read', size: 4, addr: 0x10n }],
      ['readq 0x10', { kind: 'mmio-read', size: 8, addr: 0x10n }],
      ['read 0x2000 4', { kind: 'read', addr: 0x2000n, size: 4, base64: false }],
      ['b64read 0x2000 4', { kind: 'read', addr: 0x2000n, size: 4, base64: true }],
      ['memset 0x2000 16 0xaa', { kind: 'memset', addr: 0x2000n, size: 16, value: 0xaa }],
      ['irq_intercept_in ioapic', { kind: 'irq_intercept' }],
      ['irq_intercept_out', { kind: 'irq_intercept' }],
      ['irq_level 4', { kind: 'irq_level', line: 4 }],
      ['msi_count', { kind: 'msi_count' }],
      ['msi_last', { kind: 'msi_last' }],
      ['endianness', { kind: 'endianness' }],
    ];
    for (const [line, want] of cases) {
      it(`parses '${line}'`, () => expect(parseCommand(line)).to.deep.equal(want));
    }

    it('decodes write data as hex byte pairs and zero-pads it to SIZE', () => {
      const cmd = parseCommand('write 0x100 4 0xdead');
      expect(cmd).to.deep.include({ kind: 'write', addr: 0x100n });
      expect([...(cmd as { data: Uint8Array }).data]).to.deep.equal([0xde, 0xad, 0, 0]);
    });

    it('decodes b64write data', () => {
      const cmd = parseCommand(`b64write 0x100 3 ${Buffer.from([1, 2, 3]).toString('base64')}`);
      expect([...(cmd as { data: Uint8Array }).data]).to.deep.equal([1, 2, 3]);
    });

    it('ignores blank lines and surrounding spaces', () => {
      expect(parseCommand('')).to.equal(undefined);
      expect(parseCommand('   ')).to.equal(undefined);
      expect(parseCommand('  inb   0x60  ')).to.deep.equal({ kind: 'in', size: 1, port: 0x60 });
    });
  });

  describe('errors', () => {
    it('names an unknown command as QEMU does', () => {
      expect(parseError('clock_step')).to.equal("Unknown command 'clock_step'");
    });

    it('refuses a wrong argument count', () => {
      expect(parseError('outb 0x80')).to.match(/outb takes 2 argument\(s\), got 1/);
      expect(parseError('inb 0x80 1')).to.match(/inb takes 1 argument\(s\), got 2/);
      expect(parseError('msi_count now')).to.match(/takes 0 argument/);
    });

    it('refuses values wider than the access', () => {
      expect(parseError('outb 0x80 0x100')).to.match(/value 0x100 does not fit in 1 byte/);
      expect(parseError('writew 0x0 0x10000')).to.match(/does not fit in 2 byte/);
      expect(parseError('outl 0x10000 0')).to.match(/port 0x10000 does not fit in 2 byte/);
      expect(parseError('memset 0 1 256')).to.match(/does not fit/);
    });

    it('refuses write data longer than SIZE or not in byte pairs', () => {
      expect(parseError('write 0 1 0xaabb')).to.match(/2 bytes, more than size 1/);
      expect(parseError('write 0 2 0xabc')).to.match(/bad data/);
      expect(parseError('write 0 2 abcd')).to.match(/bad data/);
    });

    it('caps transfer sizes', () => {
      expect(parseError('read 0 0x2000000')).to.match(/over the 16777216-byte limit/);
    });
  });

  describe('replies and events', () => {
    it('formats values with QEMU widths', () => {
      expect(reply.ok()).to.equal('OK');
      expect(reply.port(0x41)).to.equal('OK 0x0041');
      expect(reply.mmio(0x1af4n)).to.equal('OK 0x0000000000001af4');
      expect(reply.bytes(Uint8Array.from([0, 0xab, 0x10]))).to.equal('OK 0x00ab10');
      expect(reply.base64(Uint8Array.from([1, 2, 3]))).to.equal('OK AQID');
      expect(reply.fail('bad\nthing')).to.equal('FAIL bad thing');
    });

    it('formats and parses IRQ and MSI lines', () => {
      const evs = [
        { kind: 'irq', line: 4, level: true },
        { kind: 'irq', line: 11, level: false },
        { kind: 'msi', address: 0xfee0_0000n, data: 0x4041 },
      ] as const;
      expect(evs.map(formatEvent)).to.deep.equal(['IRQ raise 4', 'IRQ lower 11', 'MSI 0xfee00000 0x4041']);
      for (const ev of evs) expect(parseEvent(formatEvent(ev))).to.deep.equal(ev);
      expect(parseEvent('OK 0x0041')).to.equal(undefined);
    });

    it('converts little-endian access bytes both ways', () => {
      expect([...valueToBytes(0x1234_5678n, 4)]).to.deep.equal([0x78, 0x56, 0x34, 0x12]);
      expect(bytesToValue(Uint8Array.from([0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12]))).to.equal(0x1234_5678_9abc_def0n);
    });
  });
});
