// Unit tests of the small command-line value parsers: option lists, booleans, sizes, hosts, PCI addresses, MACs.
import { expect } from 'chai';
import {
  OptionList,
  parseBool,
  parseHostPort,
  parseIncoming,
  parseMac,
  parsePciAddr,
  parseSize,
  splitOptions,
} from '../../../machine/config-values.js';
import { ConfigError } from '../../../machine/errors.js';

/** Asserts that `fn` throws a ConfigError for `flag` whose message matches `pattern`. */
function expectConfigError(fn: () => unknown, flag: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).to.be.instanceOf(ConfigError);
  expect((caught as ConfigError).flag).to.equal(flag);
  expect((caught as ConfigError).message).to.match(pattern);
}

describe('config: value parsers', () => {
  describe('option lists', () => {
    it('splits at commas and reads a doubled comma as a literal one', () => {
      expect(splitOptions('a=1,b,c=x,,y')).to.deep.equal(['a=1', 'b', 'c=x,y']);
      expect(splitOptions('file=a,,,,b')).to.deep.equal(['file=a,,b']);
    });

    it('gives the first bare element to the implied key and later bare words the value on', () => {
      const o = new OptionList('chardev', 'socket,id=c,server', 'backend');
      expect(o.get('backend')).to.equal('socket');
      expect(o.get('id')).to.equal('c');
      expect(o.bool('server', false)).to.equal(true);
      expect(o.bool('nowait', false)).to.equal(false);
      o.finish();
    });

    it('reads a URI with "=" in it as the implied value, not as a key', () => {
      expect(new OptionList('serial', 'file:/tmp/a=b', 'backend').get('backend')).to.equal('file:/tmp/a=b');
    });

    it('refuses keys no parser asked for, listing those it did', () => {
      const o = new OptionList('drive', 'id=a,bogus=1');
      o.get('id');
      o.get('file');
      expectConfigError(() => o.finish(), 'drive', /unknown key 'bogus' \(supported: id, file\)/);
    });

    it('refuses a bare word where a value is needed, a key without a name, and repeats', () => {
      expectConfigError(() => new OptionList('drive', 'id').get('id'), 'drive', /'id' needs a value/);
      expectConfigError(() => new OptionList('drive', '=x'), 'drive', /has no key/);
      expectConfigError(() => new OptionList('drive', 'id=a,id=b'), 'drive', /key 'id' is given twice/);
      expectConfigError(() => new OptionList('drive', ''), 'drive', /needs a non-empty value/);
    });
  });

  describe('booleans', () => {
    it('reads on/off, true/false, yes/no in any case', () => {
      for (const w of ['on', 'true', 'yes', 'ON', 'Yes']) expect(parseBool('x', 'k', w)).to.equal(true);
      for (const w of ['off', 'false', 'no', 'OFF']) expect(parseBool('x', 'k', w)).to.equal(false);
    });

    it('refuses anything else, naming the key', () => {
      expectConfigError(() => parseBool('drive', 'readonly', '1'), 'drive', /'readonly' must be on or off.*not '1'/);
    });
  });

  describe('sizes', () => {
    it('reads suffixes in either case, with or without B or iB', () => {
      expect(parseSize('m', '1k', 'M')).to.equal(1024);
      expect(parseSize('m', '3KiB', 'M')).to.equal(3072);
      expect(parseSize('m', '2MB', 'M')).to.equal(2 * 1024 * 1024);
      expect(parseSize('m', '100B', 'M')).to.equal(100);
      expect(parseSize('m', '7', 'M')).to.equal(7 * 1024 * 1024);
      expect(parseSize('m', '7', 'B')).to.equal(7);
    });

    it('refuses a dangling iB and garbage', () => {
      expectConfigError(() => parseSize('m', '5iB', 'M'), 'm', /invalid size '5iB'/);
      expectConfigError(() => parseSize('m', '1 G', 'M'), 'm', /invalid size/);
      expectConfigError(() => parseSize('m', 'G', 'M'), 'm', /invalid size 'G'/);
    });
  });

  describe('hosts and ports', () => {
    it('reads names, IPv4, bracketed IPv6 and an empty host for listeners', () => {
      expect(parseHostPort('x', 'a.example:1', false)).to.deep.equal({ host: 'a.example', port: 1 });
      expect(parseHostPort('x', '10.0.0.1:65535', false)).to.deep.equal({ host: '10.0.0.1', port: 65535 });
      expect(parseHostPort('x', '[fe80::1]:80', false)).to.deep.equal({ host: 'fe80::1', port: 80 });
      expect(parseHostPort('x', ':80', true)).to.deep.equal({ host: '0.0.0.0', port: 80 });
    });

    it('refuses bad hosts and ports', () => {
      expectConfigError(() => parseHostPort('x', ':80', false), 'x', /no host to connect to/);
      expectConfigError(() => parseHostPort('x', 'bad_host:80', false), 'x', /invalid host 'bad_host'/);
      expectConfigError(() => parseHostPort('x', '-lead.example:80', false), 'x', /invalid host/);
      expectConfigError(() => parseHostPort('x', 'h:', false), 'x', /has no port/);
      expectConfigError(() => parseHostPort('x', 'h:8o', false), 'x', /port must be a whole number/);
      expectConfigError(() => parseHostPort('x', 'noport', false), 'x', /is not HOST:PORT/);
    });

    it('reads every -incoming form', () => {
      expect(parseIncoming('incoming', 'tcp:[::]:1')).to.deep.equal({ kind: 'tcp', host: '::', port: 1 });
      expect(parseIncoming('incoming', 'unix:rel.sock')).to.deep.equal({ kind: 'unix', path: 'rel.sock' });
      expect(parseIncoming('incoming', 'file:t')).to.deep.equal({ kind: 'file', path: 't' });
      expect(parseIncoming('incoming', 'defer')).to.deep.equal({ kind: 'defer' });
      expectConfigError(() => parseIncoming('incoming', 'rdma:h:1'), 'incoming', /unsupported URI 'rdma:h:1'/);
    });
  });

  describe('PCI addresses', () => {
    it('reads hex with 0x, unambiguous bare numbers and bare hex letters', () => {
      expect(parsePciAddr('device', '9')).to.deep.equal({ slot: 9, function: 0 });
      expect(parsePciAddr('device', '0x1F.0x7')).to.deep.equal({ slot: 31, function: 7 });
      expect(parsePciAddr('device', 'a.3')).to.deep.equal({ slot: 10, function: 3 });
      expect(parsePciAddr('device', '05')).to.deep.equal({ slot: 5, function: 0 });
    });

    it('refuses bare numbers that QEMU and StratoVirt read differently', () => {
      expectConfigError(() => parsePciAddr('device', '12'), 'device', /PCI slot '12' is ambiguous.*0xc or 0x12/);
    });

    it('refuses empty parts', () => {
      expectConfigError(() => parsePciAddr('device', '2.'), 'device', /invalid PCI function ''/);
      expectConfigError(() => parsePciAddr('device', ''), 'device', /invalid PCI slot ''/);
    });
  });

  describe('MAC addresses', () => {
    it('normalises to lower case', () => {
      expect(parseMac('device', '52:54:00:AA:BB:CC')).to.equal('52:54:00:aa:bb:cc');
    });

    it('refuses group addresses and wrong shapes', () => {
      expectConfigError(() => parseMac('device', 'ff:ff:ff:ff:ff:ff'), 'device', /multicast/);
      expectConfigError(() => parseMac('device', '52:54:00:aa:bb:cc:dd'), 'device', /invalid MAC address/);
      expectConfigError(() => parseMac('device', '52:54:00:aa:bb:gg'), 'device', /invalid MAC address/);
    });
  });
});
