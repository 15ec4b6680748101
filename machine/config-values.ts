// Small value parsers for tsvirt's command line: key=value option lists, sizes, numbers, addresses, URIs, chardevs.
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

// --- Option lists ----------------------------------------------------------------------------------

/**
 * Splits a QEMU option list at its commas. A doubled comma stands for a literal one, as in QEMU, so
 * `file=a,,b.img` names the file `a,b.img`.
 */
export function splitOptions(text: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== ',') {
      cur += c;
    } else if (text[i + 1] === ',') {
      cur += ',';
      i++;
    } else {
      parts.push(cur);
      cur = '';
    }
  }
  parts.push(cur);
  return parts;
}

/**
 * One `-flag key=value,...` argument, read key by key. Every key a parser asks for counts as supported,
 * so `finish()` can refuse the rest by name and list what this flag (and backend) would have taken.
 * A bare word (`server`, `nowait`) is a key without a value; the first element may be the value of an
 * implied key (`-machine q35` is `type=q35`), as in QEMU.
 */
export class OptionList {
  /** The flag (without the dash) that errors name. */
  readonly flag: string;
  private readonly values = new Map<string, string | undefined>();
  private readonly asked = new Set<string>();

  constructor(flag: string, text: string, impliedKey?: string) {
    this.flag = flag;
    if (text === '') throw new ConfigError(flag, 'needs a non-empty value');
    const parts = splitOptions(text);
    parts.forEach((part, index) => {
      if (part === '') {
        throw new ConfigError(flag, `empty option in '${text}'`);
      }
      const eq = part.indexOf('=');
      // A URI such as `unix:/a=b` is a value, never a key: keys do not contain ':'.
      const looksLikeValue = eq < 0 || part.slice(0, eq).includes(':');
      if (index === 0 && impliedKey !== undefined && looksLikeValue) {
        this.set(impliedKey, part);
      } else if (eq < 0) {
        this.set(part, undefined);
      } else {
        this.set(part.slice(0, eq), part.slice(eq + 1));
      }
    });
  }

  private set(key: string, value: string | undefined): void {
    if (key === '') throw new ConfigError(this.flag, `option '=${value ?? ''}' has no key`);
    if (this.values.has(key)) throw new ConfigError(this.flag, `key '${key}' is given twice`);
    this.values.set(key, value);
  }

  /** Whether `key` was given at all (with or without a value). */
  has(key: string): boolean {
    this.asked.add(key);
    return this.values.has(key);
  }

  /** The value of `key`, or undefined when absent; a bare `key` or an empty `key=` is refused. */
  get(key: string): string | undefined {
    this.asked.add(key);
    if (!this.values.has(key)) return undefined;
    const v = this.values.get(key);
    if (v === undefined || v === '') throw new ConfigError(this.flag, `'${key}' needs a value`);
    return v;
  }

  /** The value of `key`, which must be given. */
  require(key: string, why = ''): string {
    const v = this.get(key);
    if (v === undefined) throw new ConfigError(this.flag, `'${key}=' is required${why ? ' ' + why : ''}`);
    return v;
  }

  /** A boolean `key`: bare means on; values as {@link parseBool}; absent gives `dflt`. */
  bool(key: string, dflt: boolean): boolean {
    this.asked.add(key);
    if (!this.values.has(key)) return dflt;
    const v = this.values.get(key);
    return v === undefined ? true : parseBool(this.flag, key, v);
  }

  /** A boolean `key` whose absence is kept as undefined (for defaults that depend on other keys). */
  optionalBool(key: string): boolean | undefined {
    return this.has(key) ? this.bool(key, true) : undefined;
  }

  /** Refuses every key no parser asked for, naming it and listing the keys that are supported here. */
  finish(context = ''): void {
    for (const key of this.values.keys()) {
      if (!this.asked.has(key)) {
        const supported = [...this.asked].join(', ');
        throw new ConfigError(
          this.flag,
          `unknown key '${key}'${context ? ' for ' + context : ''}` + (supported ? ` (supported: ${supported})` : ''),
        );
      }
    }
  }
}

// --- Scalars ---------------------------------------------------------------------------------------

const TRUE_WORDS = new Set(['on', 'true', 'yes']);
const FALSE_WORDS = new Set(['off', 'false', 'no']);

/** `on|off|true|false|yes|no` (any case), as QEMU and StratoVirt accept them. */
export function parseBool(flag: string, key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  throw new ConfigError(flag, `'${key}' must be on or off (or true/false, yes/no), not '${value}'`);
}

/** A decimal integer in [min, max]; `what` names it in errors. */
export function parseDecimal(flag: string, what: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new ConfigError(flag, `${what} must be a whole number, not '${text}'`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(flag, `${what} must be between ${min} and ${max}, not ${text}`);
  return n;
}

const UNIT_SHIFT: Record<string, number> = { '': 0, K: 10, M: 20, G: 30, T: 40 };

/**
 * A size with an optional K/M/G/T suffix (any case, optionally followed by `B` or `iB`, all binary);
 * a bare number is in `bareUnit`, a number ending in `B` alone is in bytes. The result may be
 * fractional or huge: the caller checks ranges and alignment so it can say which rule failed.
 */
export function parseSize(flag: string, text: string, bareUnit: 'B' | 'K' | 'M' | 'G'): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT])?(IB|B)?$/.exec(text.toUpperCase());
  if (m === null || (m[3] === 'IB' && m[2] === undefined)) {
    throw new ConfigError(flag, `invalid size '${text}' (examples: 512M, 2G, 1024 for MiB)`);
  }
  const unit = m[2] ?? (m[3] === 'B' ? '' : bareUnit === 'B' ? '' : bareUnit);
  return Number(m[1]) * 2 ** UNIT_SHIFT[unit];
}

// --- Names and addresses ---------------------------------------------------------------------------

/** Checks an id the way QEMU does: a letter, then letters, digits, `-`, `.` or `_`. */
export function checkId(flag: string, what: string, id: string): string {
  if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(id)) {
    throw new ConfigError(flag, `${what} id '${id}' must start with a letter and hold only letters, digits, '-', '.', '_'`);
  }
  return id;
}

/** A host and a TCP port, as `tcp:` URIs and `host=,port=` keys give them. */
export interface HostPort {
  host: string;
  port: number;
}

/** Host name, IPv4 address, or IPv6 address (without brackets). */
export function checkHost(flag: string, host: string): string {
  if (isIP(host) !== 0) return host;
  const label = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
  const name = new RegExp(`^${label}(?:\\.${label})*$`);
  // All-digit dotted names are mistyped IPv4 addresses, not host names.
  if (host.length > 253 || !name.test(host) || /^[\d.]+$/.test(host)) {
    throw new ConfigError(flag, `invalid host '${host}'`);
  }
  return host;
}

/** A TCP port, 1-65535 (port 0 would pick one at random that nobody could find). */
export function parsePort(flag: string, text: string): number {
  return parseDecimal(flag, 'port', text, 1, 65535);
}

/**
 * `HOST:PORT`, `[IPV6]:PORT`, or `:PORT`. An empty host means every interface (0.0.0.0), which only
 * a listening socket can use.
 */
export function parseHostPort(flag: string, text: string, listening: boolean): HostPort {
  let host: string;
  let portText: string;
  const bracket = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
  if (bracket !== null) {
    host = bracket[1];
    portText = bracket[2];
    if (isIP(host) !== 6) throw new ConfigError(flag, `'${host}' in brackets is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) throw new ConfigError(flag, `'${text}' is not HOST:PORT`);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) throw new ConfigError(flag, `IPv6 address '${host}' must be in brackets: [${host}]:${portText}`);
  }
  if (portText === '') throw new ConfigError(flag, `'${text}' has no port`);
  const port = parsePort(flag, portText);
  if (host === '') {
    if (!listening) throw new ConfigError(flag, `'${text}' has no host to connect to`);
    host = '0.0.0.0';
  } else {
    checkHost(flag, host);
  }
  return { host, port };
}

/** A PCI slot and function on a bus. */
export interface DevFn {
  slot: number;
  function: number;
}

/**
 * One number of a PCI address. QEMU reads `addr` in hex and (newer) StratoVirt in decimal, so a bare
 * number is accepted only where both readings agree (0-9) or where it cannot be decimal (`1f`);
 * `0x` makes anything unambiguous.
 */
function parseAddrNumber(flag: string, what: string, text: string, max: number): number {
  let n: number;
  if (/^0x[0-9a-f]+$/i.test(text)) {
    n = parseInt(text.slice(2), 16);
  } else if (/^\d+$/.test(text)) {
    n = parseInt(text, 10);
    if (n !== parseInt(text, 16)) {
      throw new ConfigError(flag, `${what} '${text}' is ambiguous (QEMU reads hex, StratoVirt decimal): write 0x${n.toString(16)} or 0x${text}`);
    }
  } else if (/^[0-9a-f]+$/i.test(text)) {
    n = parseInt(text, 16);
  } else {
    throw new ConfigError(flag, `invalid ${what} '${text}'`);
  }
  if (n > max) throw new ConfigError(flag, `${what} ${text} is out of range (0-${max})`);
  return n;
}

/** `SLOT[.FUNCTION]` with slot 0-31 and function 0-7: `2`, `0x2`, `0x2.0`, `0x3.0x1`, `1f.0`. */
export function parsePciAddr(flag: string, text: string): DevFn {
  const parts = text.split('.');
  if (parts.length > 2) throw new ConfigError(flag, `addr '${text}' must be SLOT[.FUNCTION]`);
  return {
    slot: parseAddrNumber(flag, 'PCI slot', parts[0], 31),
    function: parts.length === 2 ? parseAddrNumber(flag, 'PCI function', parts[1], 7) : 0,
  };
}

/** A unicast Ethernet address `xx:xx:xx:xx:xx:xx`, returned in lower case. */
export function parseMac(flag: string, text: string): string {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(text)) {
    throw new ConfigError(flag, `invalid MAC address '${text}' (expected six hex pairs: 52:54:00:12:34:56)`);
  }
  if (parseInt(text.slice(0, 2), 16) & 1) {
    throw new ConfigError(flag, `MAC address '${text}' is a multicast address`);
  }
  return text.toLowerCase();
}

// --- URIs ------------------------------------------------------------------------------------------

/** Where a migration destination (or a restore) reads its stream from, as `-incoming` gives it. */
export type IncomingUri =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'file'; path: string }
  | { kind: 'defer' };

/** `tcp:HOST:PORT` (HOST a name, IPv4, `[IPv6]`, or empty for all), `unix:PATH`, `file:PATH`, or `defer`. */
export function parseIncoming(flag: string, text: string): IncomingUri {
  const supported = 'supported: tcp:HOST:PORT, unix:PATH, file:PATH, defer';
  if (text === 'defer') return { kind: 'defer' };
  const colon = text.indexOf(':');
  const scheme = colon < 0 ? '' : text.slice(0, colon);
  const rest = text.slice(colon + 1);
  switch (scheme) {
    case 'tcp':
      return { kind: 'tcp', ...parseHostPort(flag, rest, true) };
    case 'unix':
    case 'file':
      if (rest === '') throw new ConfigError(flag, `'${text}' has no path`);
      return { kind: scheme, path: rest };
    default:
      throw new ConfigError(flag, `unsupported URI '${text}' (${supported})`);
  }
}

// --- Character devices -----------------------------------------------------------------------------

/** Fields every character-device spec carries: the `-chardev` id it came from, if any. */
interface ChardevCommon {
  /** The id of the `-chardev` that defined it; absent for the short spellings (`-serial stdio`). */
  id?: string;
}

/**
 * A host character device: where a serial port's bytes or a QMP connection go. Sockets carry the
 * QEMU `server` (listen rather than connect) and `nowait` (do not block start-up until a client
 * connects) switches; `nowait` is only meaningful for servers.
 */
export type ChardevSpec =
  | (ChardevCommon & { kind: 'stdio' })
  | (ChardevCommon & { kind: 'pty' })
  | (ChardevCommon & { kind: 'null' })
  | (ChardevCommon & { kind: 'file'; path: string })
  | (ChardevCommon & { kind: 'unix'; path: string; server: boolean; nowait: boolean })
  | (ChardevCommon & { kind: 'tcp'; host: string; port: number; server: boolean; nowait: boolean });

/** The socket kinds of {@link ChardevSpec}: what QMP can listen on. */
export type SocketChardevSpec = Extract<ChardevSpec, { kind: 'unix' | 'tcp' }>;

/** What `-serial` names: a backend, another `-chardev` by id, or no serial port at all (`none`). */
export type SerialArg = ChardevSpec | { kind: 'chardev'; id: string } | { kind: 'none' };

/** Reads `server`, `nowait` and QEMU's newer `server=on|off`, `wait=on|off` for a socket. */
function socketMode(opts: OptionList): { server: boolean; nowait: boolean } {
  const server = opts.bool('server', false);
  const nowaitWord = opts.optionalBool('nowait');
  const wait = opts.optionalBool('wait');
  if (nowaitWord !== undefined && wait !== undefined && nowaitWord === wait) {
    throw new ConfigError(opts.flag, `'nowait' and 'wait=${wait ? 'on' : 'off'}' contradict each other`);
  }
  const nowait = nowaitWord ?? (wait === undefined ? false : !wait);
  if (nowait && !server) throw new ConfigError(opts.flag, `'nowait' only applies to a server socket (add 'server')`);
  return { server, nowait };
}

const CHARDEV_BACKENDS = 'stdio, pty, null, file, socket';
const SERIAL_FORMS = 'stdio, pty, null, none, file:PATH, file,path=PATH, unix:PATH, socket,path=PATH, tcp:HOST:PORT, chardev:ID';

/**
 * The backend named by `head` with its keys in `opts`. `-chardev` takes the backend words
 * (`socket,path=P`); `-serial` and `-qmp` also take QEMU's short URIs (`unix:P`, `tcp:H:P`, `file:P`).
 */
function readBackend(opts: OptionList, head: string, uris: boolean): ChardevSpec {
  const flag = opts.flag;
  const expected = uris ? SERIAL_FORMS : CHARDEV_BACKENDS;
  if (uris) {
    const colon = head.indexOf(':');
    if (colon > 0) {
      const scheme = head.slice(0, colon);
      const rest = head.slice(colon + 1);
      switch (scheme) {
        case 'file':
          if (rest === '') throw new ConfigError(flag, `'${head}' has no path`);
          return { kind: 'file', path: rest };
        case 'unix':
          if (rest === '') throw new ConfigError(flag, `'${head}' has no path`);
          return { kind: 'unix', path: rest, ...socketMode(opts) };
        case 'tcp': {
          const mode = socketMode(opts);
          return { kind: 'tcp', ...parseHostPort(flag, rest, mode.server), ...mode };
        }
        default:
          throw new ConfigError(flag, `unsupported backend '${head}' (supported: ${expected})`);
      }
    }
  }
  switch (head) {
    case 'stdio':
    case 'pty':
    case 'null':
      return { kind: head };
    case 'file':
      return { kind: 'file', path: opts.require('path', 'for a file backend') };
    case 'socket': {
      const path = opts.get('path');
      const hostText = opts.get('host');
      const portText = opts.get('port');
      const mode = socketMode(opts);
      if (path !== undefined) {
        if (hostText !== undefined || portText !== undefined) {
          throw new ConfigError(flag, `a socket takes either path= (unix) or host=,port= (tcp), not both`);
        }
        return { kind: 'unix', path, ...mode };
      }
      if (portText === undefined) throw new ConfigError(flag, `a socket needs path= (unix) or port= (tcp)`);
      const port = parsePort(flag, portText);
      let host: string;
      if (hostText !== undefined) host = checkHost(flag, hostText.replace(/^\[(.*)\]$/, '$1'));
      else if (mode.server) host = '0.0.0.0';
      else throw new ConfigError(flag, `a client tcp socket needs host=`);
      return { kind: 'tcp', host, port, ...mode };
    }
    default:
      throw new ConfigError(flag, `unsupported backend '${head}' (supported: ${expected})`);
  }
}

/** `-chardev BACKEND,id=ID[,...]`: returns the spec with its id. */
export function parseChardevArg(text: string): ChardevSpec & { id: string } {
  const opts = new OptionList('chardev', text, 'backend');
  const backend = opts.get('backend');
  if (backend === undefined) throw new ConfigError('chardev', `'${text}' names no backend (supported: ${CHARDEV_BACKENDS})`);
  const id = checkId('chardev', 'chardev', opts.require('id'));
  const spec = readBackend(opts, backend, false);
  opts.finish(`a ${backend} chardev`);
  return { ...spec, id };
}

/** `-serial` in QEMU's and StratoVirt's spellings (see {@link SERIAL_FORMS}). */
export function parseSerialArg(text: string): SerialArg {
  const opts = new OptionList('serial', text, 'backend');
  const head = opts.get('backend');
  if (head === undefined) throw new ConfigError('serial', `'${text}' names no backend (supported: ${SERIAL_FORMS})`);
  let result: SerialArg;
  if (head === 'none') {
    result = { kind: 'none' };
  } else if (head.startsWith('chardev:')) {
    result = { kind: 'chardev', id: checkId('serial', 'chardev', head.slice('chardev:'.length)) };
  } else {
    result = readBackend(opts, head, true);
  }
  opts.finish(`-serial ${head}`);
  return result;
}

/** `-qmp unix:PATH,server,nowait` or `-qmp tcp:HOST:PORT,server,nowait`: a listening QMP socket. */
export function parseQmpArg(text: string): SocketChardevSpec {
  const opts = new OptionList('qmp', text, 'backend');
  const head = opts.get('backend');
  if (head === undefined) throw new ConfigError('qmp', `'${text}' names no socket`);
  const spec = readBackend(opts, head, true);
  opts.finish(`-qmp ${head}`);
  if (spec.kind !== 'unix' && spec.kind !== 'tcp') {
    throw new ConfigError('qmp', `'${head}' is not a socket (supported: unix:PATH,server,nowait or tcp:HOST:PORT,server,nowait)`);
  }
  if (!spec.server) throw new ConfigError('qmp', `only server sockets are supported (add ',server,nowait')`);
  return spec;
}

/** Describes a chardev for error messages: `unix socket /tmp/x`, `tcp 0.0.0.0:4444`, `stdio`. */
export function describeChardev(spec: ChardevSpec): string {
  switch (spec.kind) {
    case 'unix':
      return `unix socket ${spec.path}`;
    case 'tcp':
      return `tcp ${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
    case 'file':
      return `file ${spec.path}`;
    default:
      return spec.kind;
  }
}
