// tsvirt's command line, spelled as StratoVirt and QEMU spell it, parsed and checked into one typed VmConfig.
import { ConfigError } from './errors.js';
import { CMDLINE_MAX_SIZE, KiB, MiB, PAGE_SIZE } from './layout.js';
import {
  OptionList,
  checkId,
  describeChardev,
  parseChardevArg,
  parseIncoming,
  parseMac,
  parsePciAddr,
  parseQmpArg,
  parseSerialArg,
  parseSize,
  type ChardevSpec,
  type IncomingUri,
  type SerialArg,
  type SocketChardevSpec,
} from './config-values.js';

export type { ChardevSpec, IncomingUri, SocketChardevSpec } from './config-values.js';

// --- The configuration -----------------------------------------------------------------------------

/** CPU topology; `sockets * dies * clusters * cores * threads === maxCpus` always holds. */
export interface CpuTopology {
  /** CPUs the machine could have (room for hot-plug); at least `cpus`. */
  maxCpus: number;
  sockets: number;
  dies: number;
  clusters: number;
  cores: number;
  threads: number;
}

/** Host-side cache mode of a drive, as QEMU names them. */
export type DriveCache = 'writeback' | 'writethrough' | 'none' | 'directsync' | 'unsafe';

/** How a drive's I/O is submitted: Linux AIO, io_uring, a thread pool, or synchronously (`off`). */
export type DriveAio = 'native' | 'io_uring' | 'threads' | 'off';

/** A block backend from `-drive`; a `-device virtio-blk-pci,drive=ID` gives it to the guest. */
export interface DriveConfig {
  id: string;
  /** Host path of the image; whether it exists is checked when the machine is built. */
  file: string;
  readonly: boolean;
  /** Open with O_DIRECT. */
  direct: boolean;
  cache: DriveCache;
  aio: DriveAio;
  /** Only raw images are supported. */
  format: 'raw';
  /** Only `if=none` drives exist: every guest disk is a `-device`. */
  interface: 'none';
  /** Serial number from the drive (QEMU's older spelling); the device's own `serial` wins. */
  serial?: string;
}

/** A network backend from `-netdev`; only tap exists. */
export interface NetdevConfig {
  type: 'tap';
  id: string;
  /** Host tap interface to attach to; absent lets the runtime create one. */
  ifname?: string;
}

/** Where a PCI device sits: tsvirt has one root bus, `pcie.0`. */
export interface PciAddress {
  bus: 'pcie.0';
  /** 0-31. */
  slot: number;
  /** 0-7. */
  function: number;
}

/** What every PCI `-device` has. */
interface PciDeviceCommon {
  /** The device's `id=`, unique among devices (QMP's `device_del` names it). */
  id?: string;
  addr: PciAddress;
  /** Function 0 of a slot announces more functions in the slot. */
  multifunction: boolean;
}

/** `-device virtio-blk-pci`: a disk backed by a `-drive`. */
export interface VirtioBlkPciConfig extends PciDeviceCommon {
  driver: 'virtio-blk-pci';
  /** The drive it serves (the same object as in `VmConfig.drives`). */
  drive: DriveConfig;
  /** Serial number the guest reads (at most 20 bytes); the device's `serial=`, else the drive's. */
  serial?: string;
}

/** `-device virtio-net-pci`: a NIC backed by a `-netdev`. */
export interface VirtioNetPciConfig extends PciDeviceCommon {
  driver: 'virtio-net-pci';
  /** The backend it uses (the same object as in `VmConfig.netdevs`). */
  netdev: NetdevConfig;
  /** Lower-case unicast MAC; absent lets the runtime pick one (it must be stable across migration). */
  mac?: string;
}

/** A guest device from `-device`. */
export type DeviceConfig = VirtioBlkPciConfig | VirtioNetPciConfig;

/** Everything the command line asks of a VM, checked and with every cross-reference resolved. */
export interface VmConfig {
  action: 'run';
  /** `-name`: the guest's name (QMP `query-name`). */
  name?: string;
  machineType: 'q35';
  /** `-machine dump-guest-core=`: include guest RAM in core dumps (default true, as StratoVirt). */
  dumpGuestCore: boolean;
  /** `-machine mem-share=`: map guest RAM shared (default false). */
  memShare: boolean;
  /** `-kernel`: required unless `testSocket` is set. */
  kernel?: string;
  initrd?: string;
  /** `-append`: kernel command line (default empty). */
  append: string;
  /** `-m`: guest RAM in bytes (default 256 MiB). */
  memSize: number;
  /** `-smp`: vCPUs present at start (default 1). */
  cpus: number;
  topology: CpuTopology;
  /** The COM1 backend; null when `-serial none` removes the port (default: a `null` backend that discards). */
  serial: ChardevSpec | null;
  /** QMP sockets, from `-qmp` and from `-mon mode=control` in that order; all are servers. */
  qmp: SocketChardevSpec[];
  /** `-D`: undefined without -D, null for `-D` alone (log to stderr), else the log file path. */
  logFile?: string | null;
  /** True when `-D` was given without a path. */
  logToStderr: boolean;
  pidfile?: string;
  daemonize: boolean;
  /** `-S`: create the vCPUs paused; QMP `cont` starts them. */
  startPaused: boolean;
  /** `-no-reboot`: a guest reset makes the process exit 0 instead of rebooting. */
  noReboot: boolean;
  /** `-no-shutdown`: a guest power-off stops the vCPUs but keeps the process (and QMP) alive. */
  noShutdown: boolean;
  /** `-nographic` was given (it also implies `-serial stdio` when -serial is absent). */
  nographic: boolean;
  /** `-nodefaults` was given; tsvirt makes no default devices besides COM1 anyway. */
  nodefaults: boolean;
  /** `-incoming`: wait for a migration stream (or read a snapshot file) instead of booting. */
  incoming?: IncomingUri;
  drives: DriveConfig[];
  netdevs: NetdevConfig[];
  devices: DeviceConfig[];
  /** `-mod-test SOCKET`: start without vCPUs, driven by a test over this unix socket. */
  testSocket?: string;
}

/** `-h`/`-help`: main prints `text` and exits 0. */
export interface HelpRequest {
  action: 'help';
  text: string;
}

/** `-version`: main prints its version and exits 0. */
export interface VersionRequest {
  action: 'version';
}

/** What the command line asks for: run a VM, or print help or the version. */
export type CommandLine = VmConfig | HelpRequest | VersionRequest;

// --- Limits and defaults ---------------------------------------------------------------------------

/** Default guest RAM, as StratoVirt. */
export const DEFAULT_MEM_SIZE = 256 * MiB;
/** Smallest guest RAM accepted: the boot structures alone fill the first MiB. */
export const MIN_MEM_SIZE = 2 * MiB;
/** Largest guest RAM accepted. */
export const MAX_MEM_SIZE = 1024 * 1024 * MiB;
/** Most vCPUs the command line accepts (what q35 can address without x2APIC); KVM's own limit is checked at run time. */
export const MAX_CPUS = 255;
/** Longest virtio-blk serial (VIRTIO_BLK_ID_BYTES). */
export const MAX_BLK_SERIAL = 20;
/** Longest Linux interface name (IFNAMSIZ - 1). */
export const MAX_IFNAME = 15;

// --- Flags -----------------------------------------------------------------------------------------

/** How a flag takes its argument: none, always the next word, or the next word unless it is a flag. */
type ArgKind = 'none' | 'value' | 'optional';

/** How repeats of a flag combine: later wins, all are kept, or a repeat is refused. */
type Repeat = 'last' | 'list' | 'once';

interface FlagDef {
  name: string;
  aliases?: string[];
  arg: ArgKind;
  repeat: Repeat;
  usage: string;
  help: string;
}

/**
 * Every flag tsvirt knows. The tokenizer, the help text and the unknown-flag check all read this table.
 * A repeated single-valued flag takes the last value, as QEMU does, except `-serial` (tsvirt has one
 * port) and `-incoming` (two sources for one migration is a mistake that would otherwise wait forever).
 */
const FLAGS: FlagDef[] = [
  { name: 'machine', aliases: ['M'], arg: 'value', repeat: 'last', usage: '[type=]q35[,accel=kvm][,dump-guest-core=on|off][,mem-share=on|off]', help: 'machine type (only q35)' },
  { name: 'accel', arg: 'value', repeat: 'last', usage: 'kvm', help: 'accelerator (only kvm)' },
  { name: 'enable-kvm', arg: 'none', repeat: 'last', usage: '', help: 'same as -accel kvm' },
  { name: 'kernel', arg: 'value', repeat: 'last', usage: 'PATH', help: 'Linux kernel (bzImage or vmlinux) to boot; required' },
  { name: 'initrd', arg: 'value', repeat: 'last', usage: 'PATH', help: 'initial RAM disk' },
  { name: 'append', arg: 'value', repeat: 'last', usage: 'CMDLINE', help: 'kernel command line' },
  { name: 'm', arg: 'value', repeat: 'last', usage: '[size=]SIZE', help: 'guest RAM: MiB, or with a K/M/G/T suffix (default 256M)' },
  { name: 'smp', arg: 'value', repeat: 'last', usage: '[cpus=]N[,maxcpus=M][,sockets=S][,dies=D][,clusters=C][,cores=C][,threads=T]', help: 'vCPUs and topology (default 1)' },
  { name: 'chardev', arg: 'value', repeat: 'list', usage: 'stdio|pty|null|file,path=P|socket,path=P|socket,host=H,port=N,id=ID[,server][,nowait]', help: 'host character device for -serial chardev:ID or -mon' },
  { name: 'serial', arg: 'value', repeat: 'once', usage: 'stdio|pty|null|none|file:PATH|unix:PATH[,server][,nowait]|tcp:HOST:PORT[,server][,nowait]|chardev:ID', help: 'COM1 backend (default null: output discarded)' },
  { name: 'qmp', arg: 'value', repeat: 'list', usage: 'unix:PATH,server,nowait|tcp:HOST:PORT,server,nowait', help: 'QMP server socket' },
  { name: 'mon', arg: 'value', repeat: 'list', usage: '[chardev=]ID[,id=ID][,mode=control]', help: 'QMP on a -chardev server socket' },
  { name: 'name', arg: 'value', repeat: 'last', usage: '[guest=]NAME[,debug-threads=on|off]', help: 'guest name' },
  { name: 'D', arg: 'optional', repeat: 'last', usage: '[LOGFILE]', help: 'log to LOGFILE, or to stderr without one' },
  { name: 'pidfile', arg: 'value', repeat: 'last', usage: 'PATH', help: 'write the process id to PATH' },
  { name: 'daemonize', arg: 'none', repeat: 'last', usage: '', help: 'detach and run in the background' },
  { name: 'S', arg: 'none', repeat: 'last', usage: '', help: 'start with the vCPUs paused (QMP cont starts them)' },
  { name: 'no-reboot', arg: 'none', repeat: 'last', usage: '', help: 'exit (status 0) when the guest resets' },
  { name: 'no-shutdown', arg: 'none', repeat: 'last', usage: '', help: 'keep running when the guest powers off' },
  { name: 'display', arg: 'value', repeat: 'last', usage: 'none', help: 'display (only none)' },
  { name: 'nographic', arg: 'none', repeat: 'last', usage: '', help: 'no display; implies -serial stdio' },
  { name: 'nodefaults', arg: 'none', repeat: 'last', usage: '', help: 'accepted for compatibility' },
  { name: 'incoming', arg: 'value', repeat: 'once', usage: 'tcp:HOST:PORT|unix:PATH|file:PATH|defer', help: 'wait for an incoming migration' },
  { name: 'drive', arg: 'value', repeat: 'list', usage: 'id=ID,file=PATH[,readonly=on|off][,direct=on|off][,cache=MODE][,aio=MODE][,format=raw][,if=none][,serial=S]', help: 'block backend' },
  { name: 'netdev', arg: 'value', repeat: 'list', usage: 'tap,id=ID[,ifname=NAME][,script=no][,downscript=no][,vhost=off]', help: 'network backend' },
  { name: 'device', arg: 'value', repeat: 'list', usage: 'virtio-blk-pci|virtio-net-pci,KEY=VALUE,...', help: 'guest device (see below)' },
  { name: 'mod-test', arg: 'value', repeat: 'last', usage: 'SOCKET', help: 'test mode: no vCPUs, driven over the unix socket SOCKET' },
  { name: 'help', aliases: ['h'], arg: 'none', repeat: 'last', usage: '', help: 'print this help and exit' },
  { name: 'version', arg: 'none', repeat: 'last', usage: '', help: 'print the version and exit' },
];

const FLAG_BY_NAME = new Map<string, FlagDef>();
for (const def of FLAGS) for (const n of [def.name, ...(def.aliases ?? [])]) FLAG_BY_NAME.set(n, def);

/** The help text `-help` prints, listing every flag. */
export function helpText(): string {
  const lines = ['Usage: tsvirt [options]', '', 'Options (one dash or two):'];
  for (const def of FLAGS) {
    const names = [def.name, ...(def.aliases ?? [])].map((n) => '-' + n).join(', ');
    lines.push(`  ${names}${def.usage ? ' ' + def.usage : ''}`, `        ${def.help}`);
  }
  lines.push(
    '',
    'Devices:',
    '  -device virtio-blk-pci,drive=ID[,id=ID][,bus=pcie.0],addr=SLOT[.FN][,serial=S][,multifunction=on|off]',
    '  -device virtio-net-pci,netdev=ID[,id=ID][,bus=pcie.0],addr=SLOT[.FN][,mac=XX:XX:XX:XX:XX:XX][,multifunction=on|off]',
    '',
  );
  return lines.join('\n');
}

/** Flag occurrences in command-line order, keyed by canonical flag name. */
type Occurrences = Map<string, string[]>;

/*
 * Written here rather than with yargs (a dependency the project keeps): QEMU's and StratoVirt's rule is that a flag
 * taking a value takes the next word whatever it looks like, and yargs, even with short-option-groups and
 * camel-case-expansion off, took `-append "-quiet x"` apart into an empty append plus an option named `quiet x`, and
 * read `-daemonize=yes` as false. A tokenizer driven by the flag table below is short and exact.
 */
/**
 * Splits argv into flags and their values with QEMU's rule: a flag that takes a value takes the next
 * word whatever it looks like (so `-append "-v"` works); only `-D`'s optional value is guessed.
 */
function tokenize(argv: string[]): Occurrences {
  const seen: Occurrences = new Map();
  let previous: FlagDef | undefined;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    const m = /^--?(.+)$/.exec(word);
    if (m === null) {
      if (previous !== undefined) {
        throw new ConfigError(previous.name, `takes no value, but '${word}' follows it`);
      }
      throw new ConfigError('drive', `a bare disk image ('${word}') is not supported: use -drive id=ID,file=${word} with -device virtio-blk-pci,drive=ID,addr=SLOT`);
    }
    const def = FLAG_BY_NAME.get(m[1]);
    if (def === undefined) throw new ConfigError(m[1], `unknown option (tsvirt -help lists the supported ones)`);
    let value = '';
    if (def.arg === 'value') {
      if (i + 1 >= argv.length) throw new ConfigError(def.name, `needs a value: -${def.name} ${def.usage}`);
      value = argv[++i];
    } else if (def.arg === 'optional' && i + 1 < argv.length && !argv[i + 1].startsWith('-')) {
      value = argv[++i];
    }
    const list = seen.get(def.name) ?? [];
    if (def.repeat === 'once' && list.length > 0) {
      throw new ConfigError(def.name, `given twice ('${list[0]}' and '${value}'); only one is supported`);
    }
    list.push(value);
    seen.set(def.name, list);
    previous = def.arg === 'none' ? def : undefined;
  }
  return seen;
}

// --- Per-flag parsers ------------------------------------------------------------------------------

/** The last value of a flag, as QEMU takes it. */
function last(seen: Occurrences, flag: string): string | undefined {
  const list = seen.get(flag);
  return list === undefined ? undefined : list[list.length - 1];
}

/** The last value of a flag that names a path: it must not be empty. */
function lastPath(seen: Occurrences, flag: string): string | undefined {
  const v = last(seen, flag);
  if (v === '') throw new ConfigError(flag, 'needs a non-empty path');
  return v;
}

function parseMachine(text: string): { dumpGuestCore: boolean; memShare: boolean } {
  const opts = new OptionList('machine', text, 'type');
  const type = opts.get('type') ?? 'q35';
  if (type !== 'q35') throw new ConfigError('machine', `machine type '${type}' is not supported (supported: q35)`);
  const accel = opts.get('accel');
  if (accel !== undefined && accel !== 'kvm') throw new ConfigError('machine', `accel '${accel}' is not supported (only kvm)`);
  const result = { dumpGuestCore: opts.bool('dump-guest-core', true), memShare: opts.bool('mem-share', false) };
  opts.finish();
  return result;
}

function checkAccel(text: string): void {
  const opts = new OptionList('accel', text, 'accel');
  const accel = opts.get('accel');
  if (accel !== 'kvm') throw new ConfigError('accel', `accelerator '${accel ?? text}' is not supported (only kvm)`);
  opts.finish();
}

/** `-m`: bytes, checked against the limits above. */
export function parseMemory(text: string): number {
  const opts = new OptionList('m', text, 'size');
  const sizeText = opts.require('size');
  opts.finish();
  const size = parseSize('m', sizeText, 'M');
  if (size === 0) throw new ConfigError('m', 'memory size must be greater than 0');
  if (size < MIN_MEM_SIZE) throw new ConfigError('m', `memory size ${sizeText} is too small (minimum ${MIN_MEM_SIZE / MiB}M)`);
  if (size > MAX_MEM_SIZE) {
    const bare = /^\d+$/.test(sizeText) ? '; a bare number is in MiB' : '';
    throw new ConfigError('m', `memory size ${sizeText} is too large (maximum 1T${bare})`);
  }
  if (size % PAGE_SIZE !== 0) throw new ConfigError('m', `memory size ${sizeText} is not a multiple of ${PAGE_SIZE / KiB} KiB`);
  return size;
}

/**
 * `-smp`, as QEMU computes it: omitted topology members default to 1, except that the first missing
 * of sockets, then cores, then threads takes up the remainder of maxcpus; maxcpus defaults to cpus (or
 * the topology's product) and cpus to maxcpus.
 */
export function parseSmp(text: string): { cpus: number; topology: CpuTopology } {
  const opts = new OptionList('smp', text, 'cpus');
  const read = (key: string): number | undefined => {
    const v = opts.get(key);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new ConfigError('smp', `${key} must be a whole number, not '${v}'`);
    const n = Number(v);
    if (n === 0) {
      throw new ConfigError('smp', key === 'cpus' ? 'CPU count must be at least 1' : `${key} must be at least 1`);
    }
    if (n > MAX_CPUS) {
      throw new ConfigError('smp', `${key === 'cpus' ? 'CPU count' : key} ${n} exceeds the maximum of ${MAX_CPUS}`);
    }
    return n;
  };
  const cpusGiven = read('cpus');
  const maxGiven = read('maxcpus');
  let sockets = read('sockets');
  const dies = read('dies') ?? 1;
  const clusters = read('clusters') ?? 1;
  let cores = read('cores');
  let threads = read('threads');
  opts.finish();

  const partial = (sockets ?? 1) * dies * clusters * (cores ?? 1) * (threads ?? 1);
  const base = maxGiven ?? cpusGiven ?? partial;
  const fill = (others: number) => Math.floor(base / others);
  if (sockets === undefined) {
    cores ??= 1;
    threads ??= 1;
    sockets = fill(dies * clusters * cores * threads);
  } else if (cores === undefined) {
    threads ??= 1;
    cores = fill(sockets * dies * clusters * threads);
  } else if (threads === undefined) {
    threads = fill(sockets * dies * clusters * cores);
  }
  const product = sockets * dies * clusters * cores * threads;
  const maxCpus = maxGiven ?? (cpusGiven !== undefined ? base : product);
  const cpus = cpusGiven ?? maxCpus;
  if (maxCpus > MAX_CPUS) throw new ConfigError('smp', `maxcpus ${maxCpus} exceeds the maximum of ${MAX_CPUS}`);
  if (maxCpus < cpus) throw new ConfigError('smp', `maxcpus (${maxCpus}) must be at least cpus (${cpus})`);
  if (product !== maxCpus) {
    throw new ConfigError(
      'smp',
      `sockets*dies*clusters*cores*threads (${sockets}*${dies}*${clusters}*${cores}*${threads} = ${product}) must equal maxcpus (${maxCpus})`,
    );
  }
  return { cpus, topology: { maxCpus, sockets, dies, clusters, cores, threads } };
}

function parseName(text: string): string {
  const opts = new OptionList('name', text, 'guest');
  const name = opts.require('guest');
  opts.bool('debug-threads', false); // libvirt passes it; Node threads have no names to set.
  opts.finish();
  return name;
}

const CACHE_MODES: readonly DriveCache[] = ['writeback', 'writethrough', 'none', 'directsync', 'unsafe'];
const AIO_MODES: readonly DriveAio[] = ['native', 'io_uring', 'threads', 'off'];

function oneOf<T extends string>(flag: string, key: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(flag, `${key} '${value}' is not supported (supported: ${allowed.join(', ')})`);
  }
  return value as T;
}

/**
 * `-drive`. `direct` defaults to off, as in QEMU (not StratoVirt's on): O_DIRECT needs aligned buffers
 * Node does not promise and fails on tmpfs. `cache=none|directsync` imply direct; `aio` defaults to
 * native with direct and off (synchronous) without, as StratoVirt.
 */
export function parseDrive(text: string): DriveConfig {
  const opts = new OptionList('drive', text);
  const id = checkId('drive', 'drive', opts.require('id'));
  const file = opts.require('file');
  const readonly = opts.bool('readonly', false);
  const cache = oneOf('drive', 'cache', opts.get('cache') ?? 'writeback', CACHE_MODES);
  const cacheDirect = cache === 'none' || cache === 'directsync';
  const directGiven = opts.optionalBool('direct');
  if (directGiven === false && cacheDirect) {
    throw new ConfigError('drive', `drive '${id}': cache=${cache} means direct I/O, but direct=off was given`);
  }
  const direct = directGiven ?? cacheDirect;
  const aio = oneOf('drive', 'aio', opts.get('aio') ?? (direct ? 'native' : 'off'), AIO_MODES);
  if (aio === 'native' && !direct) throw new ConfigError('drive', `drive '${id}': aio=native needs direct=on`);
  const format = opts.get('format') ?? 'raw';
  if (format !== 'raw') throw new ConfigError('drive', `drive '${id}': format '${format}' is not supported (only raw)`);
  const iface = opts.get('if') ?? 'none';
  if (iface !== 'none') throw new ConfigError('drive', `drive '${id}': if=${iface} is not supported (only if=none with a -device)`);
  const serial = opts.get('serial');
  if (serial !== undefined) checkBlkSerial('drive', serial);
  opts.finish();
  return { id, file, readonly, direct, cache, aio, format: 'raw', interface: 'none', ...(serial !== undefined ? { serial } : {}) };
}

function checkBlkSerial(flag: string, serial: string): void {
  if (Buffer.byteLength(serial) > MAX_BLK_SERIAL) {
    throw new ConfigError(flag, `serial '${serial}' is longer than ${MAX_BLK_SERIAL} bytes`);
  }
}

/** `-netdev tap,...`: scripts and vhost are refused rather than ignored, since tsvirt runs neither. */
export function parseNetdev(text: string): NetdevConfig {
  const opts = new OptionList('netdev', text, 'type');
  const type = opts.get('type');
  if (type !== 'tap') throw new ConfigError('netdev', `type '${type ?? text}' is not supported (supported: tap)`);
  const id = checkId('netdev', 'netdev', opts.require('id'));
  const ifname = opts.get('ifname');
  if (ifname !== undefined && (ifname.length > MAX_IFNAME || /[\s/:]/.test(ifname))) {
    throw new ConfigError('netdev', `ifname '${ifname}' is not a valid interface name (at most ${MAX_IFNAME} characters, no spaces, '/' or ':')`);
  }
  for (const key of ['script', 'downscript']) {
    const v = opts.get(key);
    if (v !== undefined && v !== 'no') throw new ConfigError('netdev', `${key}='${v}' is not supported (only ${key}=no)`);
  }
  if (opts.bool('vhost', false)) throw new ConfigError('netdev', 'vhost=on is not supported');
  opts.finish('a tap netdev');
  return { type: 'tap', id, ...(ifname !== undefined ? { ifname } : {}) };
}

const DEVICE_DRIVERS = ['virtio-blk-pci', 'virtio-net-pci'] as const;

/** A `-device` before its backend is looked up. */
type PendingDevice =
  | (Omit<VirtioBlkPciConfig, 'drive'> & { driveId: string })
  | (Omit<VirtioNetPciConfig, 'netdev'> & { netdevId: string });

function parseDevice(text: string): PendingDevice {
  const opts = new OptionList('device', text, 'driver');
  const driver = opts.get('driver');
  if (driver === undefined || !(DEVICE_DRIVERS as readonly string[]).includes(driver)) {
    throw new ConfigError('device', `driver '${driver ?? text}' is not supported (supported: ${DEVICE_DRIVERS.join(', ')})`);
  }
  const idText = opts.get('id');
  const id = idText === undefined ? undefined : checkId('device', 'device', idText);
  const what = `${driver}${id !== undefined ? ` '${id}'` : ''}`;
  const bus = opts.get('bus') ?? 'pcie.0';
  if (bus !== 'pcie.0') throw new ConfigError('device', `${what}: bus '${bus}' does not exist (the only bus is pcie.0)`);
  const addrText = opts.get('addr');
  if (addrText === undefined) throw new ConfigError('device', `${what} needs addr=SLOT[.FUNCTION] (tsvirt does not pick PCI slots)`);
  const addr: PciAddress = { bus: 'pcie.0', ...parsePciAddr('device', addrText) };
  const multifunction = opts.bool('multifunction', false);
  const common = { ...(id !== undefined ? { id } : {}), addr, multifunction };
  let device: PendingDevice;
  if (driver === 'virtio-blk-pci') {
    const driveId = opts.require('drive', `for ${what}`);
    const serial = opts.get('serial');
    if (serial !== undefined) checkBlkSerial('device', serial);
    device = { driver, ...common, driveId, ...(serial !== undefined ? { serial } : {}) };
  } else {
    const netdevId = opts.require('netdev', `for ${what}`);
    const macText = opts.get('mac');
    device = { driver: 'virtio-net-pci', ...common, netdevId, ...(macText !== undefined ? { mac: parseMac('device', macText) } : {}) };
  }
  opts.finish(driver);
  return device;
}

/** Names a device in errors: `virtio-blk-pci 'disk0'`, or its driver and address when it has no id. */
function describeDevice(d: { driver: string; id?: string; addr: PciAddress }): string {
  return d.id !== undefined ? `${d.driver} '${d.id}'` : `${d.driver} at ${formatAddr(d.addr)}`;
}

function formatAddr(a: PciAddress): string {
  return `${a.bus} slot 0x${a.slot.toString(16)} function ${a.function}`;
}

/** Indexes items by id, refusing a repeated id. */
function byId<T extends { id: string }>(flag: string, what: string, items: T[]): Map<string, T> {
  const map = new Map<string, T>();
  for (const item of items) {
    if (map.has(item.id)) throw new ConfigError(flag, `${what} id '${item.id}' is used twice`);
    map.set(item.id, item);
  }
  return map;
}

/** Resolves each device's backend and checks ids, backend sharing and PCI placement. */
function resolveDevices(pending: PendingDevice[], drives: Map<string, DriveConfig>, netdevs: Map<string, NetdevConfig>): DeviceConfig[] {
  const ids = new Set<string>();
  const driveUser = new Map<string, string>();
  const netdevUser = new Map<string, string>();
  const slots = new Map<string, DeviceConfig>();
  const devices: DeviceConfig[] = [];
  for (const p of pending) {
    const what = describeDevice(p);
    if (p.id !== undefined) {
      if (ids.has(p.id)) throw new ConfigError('device', `device id '${p.id}' is used twice`);
      ids.add(p.id);
    }
    let device: DeviceConfig;
    if (p.driver === 'virtio-blk-pci') {
      const { driveId, ...rest } = p;
      const drive = drives.get(driveId);
      if (drive === undefined) throw new ConfigError('device', `${what} refers to unknown drive '${driveId}'`);
      const other = driveUser.get(driveId);
      if (other !== undefined) throw new ConfigError('device', `drive '${driveId}' is used by both ${other} and ${what}`);
      driveUser.set(driveId, what);
      const serial = rest.serial ?? drive.serial;
      device = { ...rest, drive, ...(serial !== undefined ? { serial } : {}) };
    } else {
      const { netdevId, ...rest } = p;
      const netdev = netdevs.get(netdevId);
      if (netdev === undefined) throw new ConfigError('device', `${what} refers to unknown netdev '${netdevId}'`);
      const other = netdevUser.get(netdevId);
      if (other !== undefined) throw new ConfigError('device', `netdev '${netdevId}' is used by both ${other} and ${what}`);
      netdevUser.set(netdevId, what);
      device = { ...rest, netdev };
    }
    const key = `${device.addr.slot}.${device.addr.function}`;
    const clash = slots.get(key);
    if (clash !== undefined) {
      throw new ConfigError('device', `${describeDevice(clash)} and ${what} are both at ${formatAddr(device.addr)}`);
    }
    slots.set(key, device);
    devices.push(device);
  }
  // A guest only looks past function 0 when function 0 says the slot is multi-function.
  for (const d of devices) {
    if (d.addr.function === 0) continue;
    const f0 = slots.get(`${d.addr.slot}.0`);
    if (f0 === undefined) {
      throw new ConfigError('device', `${describeDevice(d)} is at function ${d.addr.function} of slot 0x${d.addr.slot.toString(16)}, which has no function 0`);
    }
    if (!f0.multifunction) {
      throw new ConfigError('device', `${describeDevice(d)} shares slot 0x${d.addr.slot.toString(16)} with ${describeDevice(f0)}, which needs multifunction=on`);
    }
  }
  return devices;
}

/** `-mon [chardev=]ID[,id=ID][,mode=control]`: the chardev it names. Omitted mode means control. */
function parseMon(text: string): string {
  const opts = new OptionList('mon', text, 'chardev');
  const chardev = opts.require('chardev');
  const id = opts.get('id');
  if (id !== undefined) checkId('mon', 'monitor', id);
  const mode = opts.get('mode') ?? 'control';
  if (mode !== 'control') throw new ConfigError('mon', `mode '${mode}' is not supported (only mode=control, i.e. QMP)`);
  opts.bool('pretty', false); // accepted; replies are compact either way.
  opts.finish();
  return chardev;
}

/** Resolves `-serial`, `-qmp`, `-mon` and `-chardev` into the serial backend and the QMP sockets. */
function resolveChardevs(seen: Occurrences): { serial: ChardevSpec | null; qmp: SocketChardevSpec[] } {
  const chardevs = byId('chardev', 'chardev', (seen.get('chardev') ?? []).map(parseChardevArg));
  const users = new Map<string, string>();
  const use = (flag: string, id: string, user: string): ChardevSpec => {
    const spec = chardevs.get(id);
    if (spec === undefined) throw new ConfigError(flag, `unknown chardev '${id}'`);
    const other = users.get(id);
    if (other !== undefined) throw new ConfigError(flag, `chardev '${id}' is already used by ${other}`);
    users.set(id, user);
    return spec;
  };

  let serial: ChardevSpec | null = { kind: 'null' };
  const serialText = last(seen, 'serial') ?? (seen.has('nographic') ? 'stdio' : undefined);
  if (serialText !== undefined) {
    const arg: SerialArg = parseSerialArg(serialText);
    if (arg.kind === 'none') serial = null;
    else if (arg.kind === 'chardev') serial = use('serial', arg.id, '-serial');
    else serial = arg;
  }

  const qmp = (seen.get('qmp') ?? []).map(parseQmpArg);
  for (const text of seen.get('mon') ?? []) {
    const id = parseMon(text);
    const spec = use('mon', id, '-mon');
    if ((spec.kind !== 'unix' && spec.kind !== 'tcp') || !spec.server) {
      throw new ConfigError('mon', `chardev '${id}' (${describeChardev(spec)}) must be a server socket: socket,path=P,server,nowait`);
    }
    qmp.push(spec);
  }
  for (const id of chardevs.keys()) {
    if (!users.has(id)) throw new ConfigError('chardev', `chardev '${id}' is not used by -serial chardev:${id} or -mon chardev=${id}`);
  }
  return { serial, qmp };
}

/** Refuses two listeners on one socket address: the second bind would fail at run time anyway, less clearly. */
function checkListeners(serial: ChardevSpec | null, qmp: SocketChardevSpec[], incoming: IncomingUri | undefined): void {
  const owners = new Map<string, string>();
  const claim = (flag: string, key: string, what: string) => {
    const other = owners.get(key);
    if (other !== undefined) throw new ConfigError(flag, `${what} is also used by ${other}`);
    owners.set(key, `-${flag}`);
  };
  const listen = (flag: string, spec: ChardevSpec) => {
    if (spec.kind === 'unix' && spec.server) claim(flag, `unix:${spec.path}`, describeChardev(spec));
    if (spec.kind === 'tcp' && spec.server) claim(flag, `tcp:${spec.host}:${spec.port}`, describeChardev(spec));
  };
  if (serial !== null) listen('serial', serial);
  for (const spec of qmp) listen(spec.id !== undefined ? 'mon' : 'qmp', spec);
  if (incoming?.kind === 'unix') claim('incoming', `unix:${incoming.path}`, `unix socket ${incoming.path}`);
  if (incoming?.kind === 'tcp') {
    claim('incoming', `tcp:${incoming.host}:${incoming.port}`, describeChardev({ ...incoming, server: true, nowait: false }));
  }
}

// --- Entry point -----------------------------------------------------------------------------------

/**
 * Parses tsvirt's arguments (without the node and script paths) into a checked configuration, or a
 * request for help or the version. Throws ConfigError naming the flag at fault. Files are not opened.
 */
export function parseCommandLine(argv: string[]): CommandLine {
  const seen = tokenize(argv);
  if (seen.has('help')) return { action: 'help', text: helpText() };
  if (seen.has('version')) return { action: 'version' };

  const machineText = last(seen, 'machine');
  const machine = machineText === undefined ? { dumpGuestCore: true, memShare: false } : parseMachine(machineText);
  const accel = last(seen, 'accel');
  if (accel !== undefined) checkAccel(accel);

  const testSocket = lastPath(seen, 'mod-test');
  const kernel = lastPath(seen, 'kernel');
  if (kernel === undefined && testSocket === undefined) throw new ConfigError('kernel', 'a kernel is required: -kernel PATH');
  const initrd = lastPath(seen, 'initrd');
  if (initrd !== undefined && kernel === undefined) throw new ConfigError('initrd', 'needs -kernel');
  const append = last(seen, 'append') ?? '';
  if (Buffer.byteLength(append) + 1 > CMDLINE_MAX_SIZE) {
    throw new ConfigError('append', `kernel command line is longer than ${CMDLINE_MAX_SIZE - 1} bytes`);
  }

  const memText = last(seen, 'm');
  const memSize = memText === undefined ? DEFAULT_MEM_SIZE : parseMemory(memText);
  const smpText = last(seen, 'smp');
  const { cpus, topology } = smpText === undefined ? parseSmp('1') : parseSmp(smpText);

  const display = last(seen, 'display');
  if (display !== undefined && display !== 'none') throw new ConfigError('display', `display '${display}' is not supported (only none)`);

  const { serial, qmp } = resolveChardevs(seen);
  const incomingText = last(seen, 'incoming');
  const incoming = incomingText === undefined ? undefined : parseIncoming('incoming', incomingText);
  checkListeners(serial, qmp, incoming);

  const logText = last(seen, 'D');
  const logFile = logText === undefined ? undefined : logText === '' ? null : logText;
  const daemonize = seen.has('daemonize');
  if (daemonize) {
    if (serial?.kind === 'stdio') throw new ConfigError('daemonize', 'the serial port cannot use stdio when daemonized (-nographic implies -serial stdio)');
    if (logFile === null) throw new ConfigError('daemonize', 'cannot log to stderr when daemonized: give -D a file');
  }

  const drives = [...byId('drive', 'drive', (seen.get('drive') ?? []).map(parseDrive)).values()];
  const netdevs = [...byId('netdev', 'netdev', (seen.get('netdev') ?? []).map(parseNetdev)).values()];
  const devices = resolveDevices(
    (seen.get('device') ?? []).map(parseDevice),
    new Map(drives.map((d) => [d.id, d])),
    new Map(netdevs.map((n) => [n.id, n])),
  );

  const nameText = last(seen, 'name');
  const pidfile = lastPath(seen, 'pidfile');
  return {
    action: 'run',
    ...(nameText !== undefined ? { name: parseName(nameText) } : {}),
    machineType: 'q35',
    dumpGuestCore: machine.dumpGuestCore,
    memShare: machine.memShare,
    ...(kernel !== undefined ? { kernel } : {}),
    ...(initrd !== undefined ? { initrd } : {}),
    append,
    memSize,
    cpus,
    topology,
    serial,
    qmp,
    ...(logFile !== undefined ? { logFile } : {}),
    logToStderr: logFile === null,
    ...(pidfile !== undefined ? { pidfile } : {}),
    daemonize,
    startPaused: seen.has('S'),
    noReboot: seen.has('no-reboot'),
    noShutdown: seen.has('no-shutdown'),
    nographic: seen.has('nographic'),
    nodefaults: seen.has('nodefaults'),
    ...(incoming !== undefined ? { incoming } : {}),
    drives,
    netdevs,
    devices,
    ...(testSocket !== undefined ? { testSocket } : {}),
  };
}
