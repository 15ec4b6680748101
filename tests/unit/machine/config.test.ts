// Unit tests of the command-line parser: the flag tokenizer, machine/boot/memory/CPU/process flags and a full StratoVirt line.
import { expect } from 'chai';
import { parseCommandLine, type VmConfig } from '../../../machine/config.js';
import { ConfigError } from '../../../machine/errors.js';
import { GiB, KiB, MiB } from '../../../machine/layout.js';

/** Parses a line that must describe a VM to run. */
function run(argv: string[]): VmConfig {
  const parsed = parseCommandLine(argv);
  if (parsed.action !== 'run') throw new Error(`expected a run config, got ${parsed.action}`);
  return parsed;
}

/** Parses `-kernel k` plus `argv`. */
function withKernel(...argv: string[]): VmConfig {
  return run(['-kernel', 'k', ...argv]);
}

/** Asserts that parsing throws a ConfigError for `flag` whose message matches `pattern`. */
function expectConfigError(argv: string[], flag: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    parseCommandLine(argv);
  } catch (e) {
    caught = e;
  }
  expect(caught, `no error for ${argv.join(' ')}`).to.be.instanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.flag).to.equal(flag);
  expect(err.code).to.equal('ERR_CONFIG');
  expect(err.message.startsWith(`-${flag}: `), err.message).to.equal(true);
  expect(err.message).to.match(pattern);
}

describe('config: command line', () => {
  describe('tokenizer', () => {
    it('reads single-dash long flags and accepts two dashes too', () => {
      const c = run(['-machine', 'q35', '--kernel', 'vmlinux', '-m', '512M', '--smp', '2']);
      expect(c.kernel).to.equal('vmlinux');
      expect(c.memSize).to.equal(512 * MiB);
      expect(c.cpus).to.equal(2);
    });

    it('gives a value flag the next word even when it starts with a dash', () => {
      expect(withKernel('-append', '-v quiet').append).to.equal('-v quiet');
    });

    it('refuses an unknown flag, naming it', () => {
      expectConfigError(['-kernel', 'k', '-foo'], 'foo', /unknown option/);
      expectConfigError(['-kernel', 'k', '--bogus', 'x'], 'bogus', /unknown option/);
    });

    it('refuses a value flag at the end of the line, naming it and its syntax', () => {
      expectConfigError(['-kernel'], 'kernel', /needs a value: -kernel PATH/);
      expectConfigError(['-kernel', 'k', '-m'], 'm', /needs a value/);
      expectConfigError(['-kernel', 'k', '-drive'], 'drive', /needs a value/);
    });

    it('refuses a word after a switch, naming the switch', () => {
      expectConfigError(['-kernel', 'k', '-S', 'yes'], 'S', /takes no value, but 'yes' follows it/);
    });

    it('refuses a bare disk image the way QEMU would read it, pointing at -drive', () => {
      expectConfigError(['disk.img', '-kernel', 'k'], 'drive', /bare disk image \('disk\.img'\).*-drive id=ID,file=disk\.img/);
    });

    it('lets the last of a repeated single-valued flag win, as QEMU does', () => {
      const c = run(['-kernel', 'a', '-kernel', 'b', '-m', '512', '-m', '1G', '-smp', '1', '-smp', '4', '-name', 'x', '-name', 'y']);
      expect(c.kernel).to.equal('b');
      expect(c.memSize).to.equal(GiB);
      expect(c.cpus).to.equal(4);
      expect(c.name).to.equal('y');
    });

    it('refuses -incoming given twice, since one destination cannot wait on two sources', () => {
      expectConfigError(['-kernel', 'k', '-incoming', 'defer', '-incoming', 'tcp:h:1'], 'incoming', /given twice.*only one/);
    });
  });

  describe('help and version', () => {
    it('asks for help with -h, -help and --help, listing every flag', () => {
      for (const flag of ['-h', '-help', '--help']) {
        const parsed = parseCommandLine([flag]);
        expect(parsed.action).to.equal('help');
        if (parsed.action !== 'help') return;
        for (const name of ['-machine', '-kernel', '-initrd', '-append', '-m ', '-smp', '-chardev', '-serial', '-qmp', '-mon',
          '-name', '-D ', '-pidfile', '-daemonize', '-S', '-no-reboot', '-no-shutdown', '-display', '-nographic',
          '-nodefaults', '-incoming', '-drive', '-netdev', '-device', '-mod-test', '-version', '-accel', '-enable-kvm']) {
          expect(parsed.text).to.include(name);
        }
      }
    });

    it('asks for the version with -version and --version', () => {
      expect(parseCommandLine(['-version'])).to.deep.equal({ action: 'version' });
      expect(parseCommandLine(['--version'])).to.deep.equal({ action: 'version' });
    });

    it('answers help without requiring a kernel or checking other values', () => {
      expect(parseCommandLine(['-m', 'abc', '-h']).action).to.equal('help');
    });
  });

  describe('defaults', () => {
    it('gives a bare kernel line q35, 256 MiB, one vCPU, a null serial and nothing else', () => {
      const c = withKernel();
      expect(c).to.deep.equal({
        action: 'run',
        machineType: 'q35',
        dumpGuestCore: true,
        memShare: false,
        kernel: 'k',
        append: '',
        memSize: 256 * MiB,
        cpus: 1,
        topology: { maxCpus: 1, sockets: 1, dies: 1, clusters: 1, cores: 1, threads: 1 },
        serial: { kind: 'null' },
        qmp: [],
        logToStderr: false,
        daemonize: false,
        startPaused: false,
        noReboot: false,
        noShutdown: false,
        nographic: false,
        nodefaults: false,
        drives: [],
        netdevs: [],
        devices: [],
      });
    });
  });

  describe('-machine and -accel', () => {
    it('accepts q35 bare and as type=q35 with accel, dump-guest-core and mem-share', () => {
      expect(withKernel('-machine', 'q35').machineType).to.equal('q35');
      const c = withKernel('-machine', 'type=q35,accel=kvm,dump-guest-core=off,mem-share=on');
      expect(c.dumpGuestCore).to.equal(false);
      expect(c.memShare).to.equal(true);
      expect(withKernel('-M', 'q35,mem-share=yes').memShare).to.equal(true);
    });

    it('refuses other machine types, naming the supported one', () => {
      expectConfigError(['-kernel', 'k', '-machine', 'microvm'], 'machine', /machine type 'microvm' is not supported \(supported: q35\)/);
      expectConfigError(['-kernel', 'k', '-machine', 'type=pc'], 'machine', /'pc' is not supported/);
    });

    it('refuses accelerators other than kvm and unknown machine keys', () => {
      expectConfigError(['-kernel', 'k', '-machine', 'q35,accel=tcg'], 'machine', /accel 'tcg' is not supported \(only kvm\)/);
      expectConfigError(['-kernel', 'k', '-machine', 'q35,usb=on'], 'machine', /unknown key 'usb'/);
      expectConfigError(['-kernel', 'k', '-machine', 'q35,mem-share=maybe'], 'machine', /'mem-share' must be on or off/);
    });

    it('accepts -accel kvm and -enable-kvm, and refuses -accel tcg', () => {
      expect(withKernel('-accel', 'kvm', '-enable-kvm').machineType).to.equal('q35');
      expectConfigError(['-kernel', 'k', '-accel', 'tcg'], 'accel', /accelerator 'tcg' is not supported \(only kvm\)/);
    });
  });

  describe('-kernel, -initrd, -append, -mod-test', () => {
    it('requires a kernel', () => {
      expectConfigError([], 'kernel', /a kernel is required: -kernel PATH/);
      expectConfigError(['-kernel', ''], 'kernel', /non-empty path/);
    });

    it('starts test mode without a kernel when -mod-test names a socket', () => {
      const c = run(['-mod-test', '/tmp/test.sock']);
      expect(c.testSocket).to.equal('/tmp/test.sock');
      expect(c.kernel).to.equal(undefined);
    });

    it('keeps the initrd and the command line', () => {
      const c = withKernel('-initrd', 'initrd.img', '-append', 'console=ttyS0 root=/dev/vda');
      expect(c.initrd).to.equal('initrd.img');
      expect(c.append).to.equal('console=ttyS0 root=/dev/vda');
    });

    it('refuses an initrd without a kernel', () => {
      expectConfigError(['-mod-test', 's', '-initrd', 'i'], 'initrd', /needs -kernel/);
    });

    it('refuses a command line that does not fit the guest buffer', () => {
      expectConfigError(['-kernel', 'k', '-append', 'x'.repeat(0x10000)], 'append', /longer than 65535 bytes/);
      expect(withKernel('-append', 'x'.repeat(0xffff)).append).to.have.length(0xffff);
    });
  });

  describe('-m', () => {
    const cases: [string, number][] = [
      ['1024', 1024 * MiB],
      ['512M', 512 * MiB],
      ['512m', 512 * MiB],
      ['2G', 2 * GiB],
      ['2g', 2 * GiB],
      ['1024MiB', 1024 * MiB],
      ['2GB', 2 * GiB],
      ['size=2G', 2 * GiB],
      ['4096K', 4 * MiB],
      ['1T', 1024 * GiB],
      ['1.5G', 1.5 * GiB],
      ['16777216B', 16 * MiB],
    ];
    for (const [text, bytes] of cases) {
      it(`reads -m ${text} as ${bytes} bytes`, () => {
        expect(withKernel('-m', text).memSize).to.equal(bytes);
      });
    }

    it('refuses a zero size', () => {
      expectConfigError(['-kernel', 'k', '-m', '0'], 'm', /memory size must be greater than 0/);
      expectConfigError(['-kernel', 'k', '-m', '0G'], 'm', /memory size must be greater than 0/);
    });

    it('refuses less than 2 MiB', () => {
      expectConfigError(['-kernel', 'k', '-m', '1'], 'm', /too small \(minimum 2M\)/);
      expectConfigError(['-kernel', 'k', '-m', '1020K'], 'm', /too small/);
    });

    it('refuses a size that is not a whole number of 4 KiB pages', () => {
      expectConfigError(['-kernel', 'k', '-m', `${2 * 1024 + 2}K`], 'm', /not a multiple of 4 KiB/);
      expectConfigError(['-kernel', 'k', '-m', '3000001B'], 'm', /not a multiple of 4 KiB/);
    });

    it('refuses garbage, naming it', () => {
      expectConfigError(['-kernel', 'k', '-m', 'abc'], 'm', /invalid size 'abc'/);
      expectConfigError(['-kernel', 'k', '-m', '12Q'], 'm', /invalid size '12Q'/);
      expectConfigError(['-kernel', 'k', '-m', '-5'], 'm', /invalid size '-5'/);
      expectConfigError(['-kernel', 'k', '-m', ''], 'm', /needs a non-empty value/);
    });

    it('refuses more than 1 TiB, reminding that a bare number is MiB', () => {
      expectConfigError(['-kernel', 'k', '-m', '2T'], 'm', /too large \(maximum 1T\)/);
      expectConfigError(['-kernel', 'k', '-m', '805306368'], 'm', /too large.*bare number is in MiB/);
    });

    it('refuses unknown keys such as maxmem', () => {
      expectConfigError(['-kernel', 'k', '-m', '1G,maxmem=4G'], 'm', /unknown key 'maxmem'/);
    });

    it('accepts exactly 2 MiB and 4 KiB multiples', () => {
      expect(withKernel('-m', '2M').memSize).to.equal(2 * MiB);
      expect(withKernel('-m', '2052K').memSize).to.equal(2052 * KiB);
    });
  });

  describe('-smp', () => {
    it('reads a bare count and cpus=N as that many sockets', () => {
      for (const text of ['4', 'cpus=4']) {
        const c = withKernel('-smp', text);
        expect(c.cpus).to.equal(4);
        expect(c.topology).to.deep.equal({ maxCpus: 4, sockets: 4, dies: 1, clusters: 1, cores: 1, threads: 1 });
      }
    });

    it('reads a full topology with room for hot-plug', () => {
      const c = withKernel('-smp', '2,maxcpus=8,sockets=2,dies=1,clusters=1,cores=2,threads=2');
      expect(c.cpus).to.equal(2);
      expect(c.topology).to.deep.equal({ maxCpus: 8, sockets: 2, dies: 1, clusters: 1, cores: 2, threads: 2 });
    });

    it('fills the missing member of a partial topology, as QEMU does', () => {
      expect(withKernel('-smp', '8,cores=4').topology).to.include({ sockets: 2, cores: 4, threads: 1 });
      expect(withKernel('-smp', '8,sockets=2').topology).to.include({ sockets: 2, cores: 4, threads: 1 });
      expect(withKernel('-smp', '8,sockets=2,cores=2').topology).to.include({ threads: 2 });
    });

    it('computes cpus from the topology when only the topology is given', () => {
      const c = withKernel('-smp', 'sockets=2,cores=2,threads=2');
      expect(c.cpus).to.equal(8);
      expect(c.topology.maxCpus).to.equal(8);
      expect(withKernel('-smp', 'maxcpus=4').cpus).to.equal(4);
    });

    it('refuses zero CPUs', () => {
      expectConfigError(['-kernel', 'k', '-smp', '0'], 'smp', /CPU count must be at least 1/);
      expectConfigError(['-kernel', 'k', '-smp', 'cpus=0'], 'smp', /CPU count must be at least 1/);
      expectConfigError(['-kernel', 'k', '-smp', '2,cores=0'], 'smp', /cores must be at least 1/);
    });

    it('refuses more than 255 CPUs', () => {
      expectConfigError(['-kernel', 'k', '-smp', '256'], 'smp', /CPU count 256 exceeds the maximum of 255/);
      expectConfigError(['-kernel', 'k', '-smp', '2,maxcpus=300'], 'smp', /maxcpus 300 exceeds the maximum of 255/);
      expectConfigError(['-kernel', 'k', '-smp', 'sockets=16,cores=16'], 'smp', /maxcpus 256 exceeds the maximum of 255/);
      expect(withKernel('-smp', '255').cpus).to.equal(255);
    });

    it('refuses maxcpus below cpus', () => {
      expectConfigError(['-kernel', 'k', '-smp', '4,maxcpus=2'], 'smp', /maxcpus \(2\) must be at least cpus \(4\)/);
    });

    it('refuses a topology whose product is not maxcpus', () => {
      expectConfigError(['-kernel', 'k', '-smp', '4,sockets=1,cores=2,threads=1'], 'smp', /\(1\*1\*1\*2\*1 = 2\) must equal maxcpus \(4\)/);
      expectConfigError(['-kernel', 'k', '-smp', '5,cores=2'], 'smp', /must equal maxcpus \(5\)/);
    });

    it('refuses garbage and unknown keys', () => {
      expectConfigError(['-kernel', 'k', '-smp', 'two'], 'smp', /cpus must be a whole number, not 'two'/);
      expectConfigError(['-kernel', 'k', '-smp', '2,books=2'], 'smp', /unknown key 'books'/);
      expectConfigError(['-kernel', 'k', '-smp', '2,cpus=3'], 'smp', /key 'cpus' is given twice/);
    });
  });

  describe('-name and process flags', () => {
    it('reads -name NAME and -name guest=NAME,debug-threads=on', () => {
      expect(withKernel('-name', 'vm1').name).to.equal('vm1');
      expect(withKernel('-name', 'guest=vm2,debug-threads=on').name).to.equal('vm2');
      expectConfigError(['-kernel', 'k', '-name', 'guest=a,process=b'], 'name', /unknown key 'process'/);
    });

    it('logs to stderr with a bare -D and to a file with -D PATH', () => {
      const plain = withKernel('-D', '-S');
      expect(plain.logFile).to.equal(null);
      expect(plain.logToStderr).to.equal(true);
      expect(plain.startPaused).to.equal(true);
      expect(withKernel('-D').logFile).to.equal(null);
      const file = withKernel('-D', '/tmp/vm.log');
      expect(file.logFile).to.equal('/tmp/vm.log');
      expect(file.logToStderr).to.equal(false);
      expect(withKernel().logFile).to.equal(undefined);
    });

    it('stores -pidfile, -daemonize, -S, -no-reboot, -no-shutdown and -nodefaults', () => {
      const c = withKernel('-pidfile', '/run/vm.pid', '-daemonize', '-S', '-no-reboot', '-no-shutdown', '-nodefaults', '-D', '/tmp/l');
      expect(c).to.include({ pidfile: '/run/vm.pid', daemonize: true, startPaused: true, noReboot: true, noShutdown: true, nodefaults: true });
    });

    it('refuses a daemon whose serial port or log would use the terminal', () => {
      expectConfigError(['-kernel', 'k', '-daemonize', '-serial', 'stdio'], 'daemonize', /serial port cannot use stdio/);
      expectConfigError(['-kernel', 'k', '-daemonize', '-nographic'], 'daemonize', /serial port cannot use stdio/);
      expectConfigError(['-kernel', 'k', '-daemonize', '-D'], 'daemonize', /cannot log to stderr/);
    });

    it('accepts -display none and -nographic, which implies -serial stdio', () => {
      const c = withKernel('-display', 'none', '-nographic');
      expect(c.nographic).to.equal(true);
      expect(c.serial).to.deep.equal({ kind: 'stdio' });
      expect(withKernel('-nographic', '-serial', 'pty').serial).to.deep.equal({ kind: 'pty' });
      expectConfigError(['-kernel', 'k', '-display', 'gtk'], 'display', /display 'gtk' is not supported \(only none\)/);
    });
  });

  describe('-incoming', () => {
    it('reads tcp with a name, IPv4, bracketed IPv6 or empty host', () => {
      expect(withKernel('-incoming', 'tcp:dest.example:4446').incoming).to.deep.equal({ kind: 'tcp', host: 'dest.example', port: 4446 });
      expect(withKernel('-incoming', 'tcp:192.168.0.1:4446').incoming).to.deep.equal({ kind: 'tcp', host: '192.168.0.1', port: 4446 });
      expect(withKernel('-incoming', 'tcp:[::1]:4446').incoming).to.deep.equal({ kind: 'tcp', host: '::1', port: 4446 });
      expect(withKernel('-incoming', 'tcp::4446').incoming).to.deep.equal({ kind: 'tcp', host: '0.0.0.0', port: 4446 });
    });

    it('reads unix, file and defer', () => {
      expect(withKernel('-incoming', 'unix:/tmp/mig.sock').incoming).to.deep.equal({ kind: 'unix', path: '/tmp/mig.sock' });
      expect(withKernel('-incoming', 'file:/tmp/template').incoming).to.deep.equal({ kind: 'file', path: '/tmp/template' });
      expect(withKernel('-incoming', 'defer').incoming).to.deep.equal({ kind: 'defer' });
    });

    it('refuses bad URIs, naming -incoming', () => {
      expectConfigError(['-kernel', 'k', '-incoming', 'exec:cat x'], 'incoming', /unsupported URI 'exec:cat x'.*tcp:HOST:PORT/);
      expectConfigError(['-kernel', 'k', '-incoming', 'tcp:host'], 'incoming', /has no port|not HOST:PORT/);
      expectConfigError(['-kernel', 'k', '-incoming', 'tcp:host:99999'], 'incoming', /port must be between 1 and 65535/);
      expectConfigError(['-kernel', 'k', '-incoming', 'tcp:host:0'], 'incoming', /port must be between 1 and 65535/);
      expectConfigError(['-kernel', 'k', '-incoming', 'tcp:::1:4446'], 'incoming', /IPv6 address '::1' must be in brackets/);
      expectConfigError(['-kernel', 'k', '-incoming', 'tcp:[nothost]:4446'], 'incoming', /not an IPv6 address/);
      expectConfigError(['-kernel', 'k', '-incoming', 'tcp:300.1.1.1:4446'], 'incoming', /invalid host '300\.1\.1\.1'/);
      expectConfigError(['-kernel', 'k', '-incoming', 'unix:'], 'incoming', /has no path/);
      expectConfigError(['-kernel', 'k', '-incoming', 'somewhere'], 'incoming', /unsupported URI/);
    });

    it('refuses an incoming socket that QMP already listens on', () => {
      expectConfigError(['-kernel', 'k', '-qmp', 'unix:/tmp/a,server,nowait', '-incoming', 'unix:/tmp/a'], 'incoming', /unix socket \/tmp\/a is also used by -qmp/);
    });
  });

  describe('a StratoVirt migration-guide line', () => {
    it('parses the destination command line of docs/migration.md', () => {
      const c = run([
        '-machine', 'q35',
        '-kernel', './vmlinux.bin',
        '-append', 'console=ttyS0 pci=off reboot=k quiet panic=1 root=/dev/vda',
        '-drive', 'file=./rootfs,id=rootfs,readonly=off,direct=off',
        '-device', 'virtio-blk-pci,drive=rootfs,id=rootfs,bus=pcie.0,addr=0',
        '-qmp', 'unix:/tmp/stratovirt-src.socket,server,nowait',
        '-serial', 'stdio',
        '-m', '1024',
        '-smp', '2',
        '-incoming', 'tcp:192.168.0.1:4446',
      ]);
      const drive = { id: 'rootfs', file: './rootfs', readonly: false, direct: false, cache: 'writeback', aio: 'off', format: 'raw', interface: 'none' };
      expect(c).to.deep.equal({
        action: 'run',
        machineType: 'q35',
        dumpGuestCore: true,
        memShare: false,
        kernel: './vmlinux.bin',
        append: 'console=ttyS0 pci=off reboot=k quiet panic=1 root=/dev/vda',
        memSize: 1024 * MiB,
        cpus: 2,
        topology: { maxCpus: 2, sockets: 2, dies: 1, clusters: 1, cores: 1, threads: 1 },
        serial: { kind: 'stdio' },
        qmp: [{ kind: 'unix', path: '/tmp/stratovirt-src.socket', server: true, nowait: true }],
        logToStderr: false,
        daemonize: false,
        startPaused: false,
        noReboot: false,
        noShutdown: false,
        nographic: false,
        nodefaults: false,
        incoming: { kind: 'tcp', host: '192.168.0.1', port: 4446 },
        drives: [drive],
        netdevs: [],
        devices: [{
          driver: 'virtio-blk-pci',
          id: 'rootfs',
          addr: { bus: 'pcie.0', slot: 0, function: 0 },
          multifunction: false,
          drive,
        }],
      });
      expect(c.devices[0].driver === 'virtio-blk-pci' && c.devices[0].drive).to.equal(c.drives[0]);
    });
  });
});
