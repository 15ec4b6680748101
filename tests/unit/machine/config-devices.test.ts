// Unit tests of -drive, -netdev and -device: values, defaults, cross-references and PCI placement.
import { expect } from 'chai';
import { parseCommandLine, type VmConfig } from '../../../machine/config.js';
import { ConfigError } from '../../../machine/errors.js';

/** Parses `-kernel k` plus `argv` into a run config. */
function withKernel(...argv: string[]): VmConfig {
  const parsed = parseCommandLine(['-kernel', 'k', ...argv]);
  if (parsed.action !== 'run') throw new Error(`expected a run config, got ${parsed.action}`);
  return parsed;
}

/** Asserts that `-kernel k` plus `argv` throws a ConfigError for `flag` whose message matches `pattern`. */
function expectConfigError(argv: string[], flag: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    parseCommandLine(['-kernel', 'k', ...argv]);
  } catch (e) {
    caught = e;
  }
  expect(caught, `no error for ${argv.join(' ')}`).to.be.instanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.flag).to.equal(flag);
  expect(err.message.startsWith(`-${flag}: `), err.message).to.equal(true);
  expect(err.message).to.match(pattern);
}

/** A drive `d0` on file `img`, with extra keys. */
const drive = (extra = '') => ['-drive', `id=d0,file=img${extra}`];
/** A tap netdev `n0`. */
const tap = ['-netdev', 'tap,id=n0,ifname=tap0'];

describe('config: drives, netdevs and devices', () => {
  describe('-drive', () => {
    it('reads id and file with QEMU defaults: writable, buffered, synchronous, raw', () => {
      expect(withKernel(...drive()).drives).to.deep.equal([
        { id: 'd0', file: 'img', readonly: false, direct: false, cache: 'writeback', aio: 'off', format: 'raw', interface: 'none' },
      ]);
    });

    it('reads readonly and direct in every boolean spelling', () => {
      for (const [text, value] of [['on', true], ['off', false], ['true', true], ['false', false], ['yes', true], ['no', false]] as const) {
        const d = withKernel(...drive(`,readonly=${text},direct=${text}`)).drives[0];
        expect(d.readonly).to.equal(value);
        expect(d.direct).to.equal(value);
      }
      expect(withKernel(...drive(',readonly')).drives[0].readonly).to.equal(true);
    });

    it('makes aio native for direct drives, and takes aio and cache as given', () => {
      expect(withKernel(...drive(',direct=on')).drives[0].aio).to.equal('native');
      expect(withKernel(...drive(',direct=on,aio=io_uring')).drives[0].aio).to.equal('io_uring');
      expect(withKernel(...drive(',aio=threads,cache=writethrough')).drives[0]).to.include({ aio: 'threads', cache: 'writethrough', direct: false });
      expect(withKernel(...drive(',cache=none')).drives[0]).to.include({ cache: 'none', direct: true, aio: 'native' });
    });

    it('keeps format=raw, if=none and a serial', () => {
      expect(withKernel(...drive(',format=raw,if=none,serial=ABC123')).drives[0]).to.include({ format: 'raw', interface: 'none', serial: 'ABC123' });
    });

    it('reads a file name with a doubled comma as one comma', () => {
      expect(withKernel('-drive', 'id=d0,file=a,,b.img').drives[0].file).to.equal('a,b.img');
    });

    it('refuses a drive without id or file', () => {
      expectConfigError(['-drive', 'file=img'], 'drive', /'id=' is required/);
      expectConfigError(['-drive', 'id=d0'], 'drive', /'file=' is required/);
      expectConfigError(['-drive', 'id=d0,file='], 'drive', /'file' needs a value/);
    });

    it('refuses bad values, naming the key', () => {
      expectConfigError(drive(',readonly=maybe'), 'drive', /'readonly' must be on or off/);
      expectConfigError(drive(',format=qcow2'), 'drive', /format 'qcow2' is not supported \(only raw\)/);
      expectConfigError(drive(',if=virtio'), 'drive', /if=virtio is not supported/);
      expectConfigError(drive(',aio=posix'), 'drive', /aio 'posix' is not supported \(supported: native, io_uring, threads, off\)/);
      expectConfigError(drive(',cache=fast'), 'drive', /cache 'fast' is not supported/);
      expectConfigError(drive(',aio=native'), 'drive', /aio=native needs direct=on/);
      expectConfigError(drive(',cache=none,direct=off'), 'drive', /cache=none means direct I\/O, but direct=off/);
      expectConfigError(drive(',serial=123456789012345678901'), 'drive', /longer than 20 bytes/);
      expectConfigError(['-drive', 'id=9d,file=img'], 'drive', /drive id '9d' must start with a letter/);
    });

    it('refuses unknown keys, listing the supported ones', () => {
      expectConfigError(drive(',throttling.iops-total=200'), 'drive', /unknown key 'throttling\.iops-total' \(supported: id, file, readonly/);
    });

    it('refuses a repeated key and an empty option', () => {
      expectConfigError(['-drive', 'id=d0,file=a,file=b'], 'drive', /key 'file' is given twice/);
      expectConfigError(['-drive', 'id=d0,file=a,'], 'drive', /empty option/);
    });

    it('refuses two drives with one id', () => {
      expectConfigError(['-drive', 'id=d0,file=a', '-drive', 'id=d0,file=b'], 'drive', /drive id 'd0' is used twice/);
    });

    it('keeps a drive no device uses, for a later QMP hot-plug', () => {
      expect(withKernel(...drive()).devices).to.deep.equal([]);
    });
  });

  describe('-netdev', () => {
    it('reads a tap with its interface name and the no-script, no-vhost options', () => {
      expect(withKernel('-netdev', 'tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off').netdevs).to.deep.equal([
        { type: 'tap', id: 'n0', ifname: 'tap0' },
      ]);
      expect(withKernel('-netdev', 'tap,id=n1').netdevs).to.deep.equal([{ type: 'tap', id: 'n1' }]);
    });

    it('refuses other netdev types, listing tap', () => {
      expectConfigError(['-netdev', 'user,id=n0'], 'netdev', /type 'user' is not supported \(supported: tap\)/);
      expectConfigError(['-netdev', 'id=n0'], 'netdev', /type 'id=n0' is not supported/);
    });

    it('refuses scripts, vhost and bad interface names', () => {
      expectConfigError(['-netdev', 'tap,id=n0,script=/etc/qemu-ifup'], 'netdev', /script='\/etc\/qemu-ifup' is not supported \(only script=no\)/);
      expectConfigError(['-netdev', 'tap,id=n0,downscript=yes'], 'netdev', /downscript='yes' is not supported/);
      expectConfigError(['-netdev', 'tap,id=n0,vhost=on'], 'netdev', /vhost=on is not supported/);
      expectConfigError(['-netdev', 'tap,id=n0,ifname=a-very-long-tap-name'], 'netdev', /ifname 'a-very-long-tap-name' is not a valid interface name/);
    });

    it('refuses a missing id, unknown keys, and two netdevs with one id', () => {
      expectConfigError(['-netdev', 'tap,ifname=tap0'], 'netdev', /'id=' is required/);
      expectConfigError(['-netdev', 'tap,id=n0,queues=2'], 'netdev', /unknown key 'queues' for a tap netdev/);
      expectConfigError(['-netdev', 'tap,id=n0', '-netdev', 'tap,id=n0'], 'netdev', /netdev id 'n0' is used twice/);
    });
  });

  describe('-device virtio-blk-pci', () => {
    it('attaches the drive it names at the address it gives', () => {
      const c = withKernel(...drive(), '-device', 'virtio-blk-pci,drive=d0,id=disk0,bus=pcie.0,addr=0x2,serial=S1');
      expect(c.devices).to.have.length(1);
      const d = c.devices[0];
      expect(d.driver).to.equal('virtio-blk-pci');
      if (d.driver !== 'virtio-blk-pci') return;
      expect(d.drive).to.equal(c.drives[0]);
      expect(d).to.include({ id: 'disk0', multifunction: false, serial: 'S1' });
      expect(d.addr).to.deep.equal({ bus: 'pcie.0', slot: 2, function: 0 });
    });

    it('reads every address spelling', () => {
      const cases: [string, number, number][] = [['2', 2, 0], ['0x2', 2, 0], ['0x2.0', 2, 0], ['0x3.0x0', 3, 0], ['0x1f', 31, 0], ['1f.0', 31, 0], ['0', 0, 0], ['0x03.0x0', 3, 0]];
      for (const [text, slot, fn] of cases) {
        const d = withKernel(...drive(), '-device', `virtio-blk-pci,drive=d0,addr=${text}`).devices[0];
        expect(d.addr, text).to.deep.equal({ bus: 'pcie.0', slot, function: fn });
      }
    });

    it("uses the drive's serial when the device gives none", () => {
      const d = withKernel(...drive(',serial=FROMDRIVE'), '-device', 'virtio-blk-pci,drive=d0,addr=2').devices[0];
      expect(d.driver === 'virtio-blk-pci' && d.serial).to.equal('FROMDRIVE');
    });

    it('refuses a device whose drive does not exist', () => {
      expectConfigError(['-device', 'virtio-blk-pci,drive=Y,id=X,addr=2'], 'device', /virtio-blk-pci 'X' refers to unknown drive 'Y'/);
    });

    it('refuses a drive used by two devices, naming both', () => {
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,id=a,addr=2', '-device', 'virtio-blk-pci,drive=d0,id=b,addr=3'], 'device',
        /drive 'd0' is used by both virtio-blk-pci 'a' and virtio-blk-pci 'b'/);
    });

    it('refuses a device without drive or addr', () => {
      expectConfigError(['-device', 'virtio-blk-pci,id=x,addr=2'], 'device', /'drive=' is required for virtio-blk-pci 'x'/);
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0'], 'device', /needs addr=SLOT\[\.FUNCTION\]/);
    });

    it('refuses out-of-range, ambiguous and malformed addresses', () => {
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=0x20'], 'device', /PCI slot 0x20 is out of range \(0-31\)/);
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=0x2.8'], 'device', /PCI function 8 is out of range \(0-7\)/);
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=10'], 'device', /PCI slot '10' is ambiguous.*0xa or 0x10/);
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=two'], 'device', /invalid PCI slot 'two'/);
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=1.2.3'], 'device', /addr '1\.2\.3' must be SLOT\[\.FUNCTION\]/);
    });

    it('refuses a bus other than pcie.0', () => {
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,bus=pcie.1,addr=2'], 'device', /bus 'pcie\.1' does not exist \(the only bus is pcie\.0\)/);
    });

    it('refuses a serial longer than 20 bytes and unknown keys', () => {
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=2,serial=123456789012345678901'], 'device', /longer than 20 bytes/);
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=2,bootindex=1'], 'device', /unknown key 'bootindex' for virtio-blk-pci/);
      expectConfigError([...drive(), '-device', 'virtio-blk-pci,drive=d0,addr=2,netdev=n0'], 'device', /unknown key 'netdev'/);
    });
  });

  describe('-device virtio-net-pci', () => {
    it('attaches the netdev it names with a normalised MAC', () => {
      const c = withKernel(...tap, '-device', 'virtio-net-pci,netdev=n0,id=net0,mac=52:54:00:AB:cd:01,bus=pcie.0,addr=0x3.0');
      const d = c.devices[0];
      expect(d.driver).to.equal('virtio-net-pci');
      if (d.driver !== 'virtio-net-pci') return;
      expect(d.netdev).to.equal(c.netdevs[0]);
      expect(d).to.include({ id: 'net0', mac: '52:54:00:ab:cd:01' });
      expect(d.addr).to.deep.equal({ bus: 'pcie.0', slot: 3, function: 0 });
    });

    it('leaves the MAC to the runtime when none is given', () => {
      const d = withKernel(...tap, '-device', 'virtio-net-pci,netdev=n0,addr=3').devices[0];
      expect(d.driver === 'virtio-net-pci' && d.mac).to.equal(undefined);
    });

    it('refuses malformed and multicast MACs', () => {
      expectConfigError([...tap, '-device', 'virtio-net-pci,netdev=n0,addr=3,mac=52:54:00:12:34'], 'device', /invalid MAC address '52:54:00:12:34'/);
      expectConfigError([...tap, '-device', 'virtio-net-pci,netdev=n0,addr=3,mac=52-54-00-12-34-56'], 'device', /invalid MAC address/);
      expectConfigError([...tap, '-device', 'virtio-net-pci,netdev=n0,addr=3,mac=01:00:5e:00:00:01'], 'device', /is a multicast address/);
    });

    it('refuses an unknown netdev and a netdev used twice', () => {
      expectConfigError(['-device', 'virtio-net-pci,netdev=ghost,id=nic,addr=3'], 'device', /virtio-net-pci 'nic' refers to unknown netdev 'ghost'/);
      expectConfigError([...tap, '-device', 'virtio-net-pci,netdev=n0,addr=3', '-device', 'virtio-net-pci,netdev=n0,addr=4'], 'device',
        /netdev 'n0' is used by both virtio-net-pci at pcie\.0 slot 0x3 function 0 and virtio-net-pci at pcie\.0 slot 0x4/);
    });
  });

  describe('devices together', () => {
    it('places a blk and a net device in two functions of a multi-function slot', () => {
      const c = withKernel(...drive(), ...tap,
        '-device', 'virtio-blk-pci,drive=d0,id=disk,addr=0x4.0,multifunction=on',
        '-device', 'virtio-net-pci,netdev=n0,id=nic,addr=0x4.1');
      expect(c.devices.map((d) => d.addr.function)).to.deep.equal([0, 1]);
      expect(c.devices[0].multifunction).to.equal(true);
    });

    it('refuses two devices at one address, naming both', () => {
      expectConfigError([...drive(), ...tap, '-device', 'virtio-blk-pci,drive=d0,id=disk,addr=2', '-device', 'virtio-net-pci,netdev=n0,id=nic,addr=0x2.0'], 'device',
        /virtio-blk-pci 'disk' and virtio-net-pci 'nic' are both at pcie\.0 slot 0x2 function 0/);
    });

    it('refuses a second function without a multi-function function 0', () => {
      expectConfigError([...drive(), ...tap, '-device', 'virtio-blk-pci,drive=d0,id=disk,addr=4', '-device', 'virtio-net-pci,netdev=n0,id=nic,addr=4.1'], 'device',
        /virtio-net-pci 'nic' shares slot 0x4 with virtio-blk-pci 'disk', which needs multifunction=on/);
      expectConfigError([...tap, '-device', 'virtio-net-pci,netdev=n0,id=nic,addr=5.2'], 'device', /slot 0x5, which has no function 0/);
    });

    it('refuses two devices with one id', () => {
      expectConfigError([...drive(), ...tap, '-device', 'virtio-blk-pci,drive=d0,id=x,addr=2', '-device', 'virtio-net-pci,netdev=n0,id=x,addr=3'], 'device', /device id 'x' is used twice/);
    });

    it('refuses an unknown driver, listing the supported ones', () => {
      expectConfigError(['-device', 'e1000,netdev=n0'], 'device', /driver 'e1000' is not supported \(supported: virtio-blk-pci, virtio-net-pci\)/);
      expectConfigError(['-device', 'virtio-blk-device,drive=d0'], 'device', /driver 'virtio-blk-device' is not supported/);
    });

    it('accepts driver= spelled out, as QEMU does', () => {
      expect(withKernel(...drive(), '-device', 'driver=virtio-blk-pci,drive=d0,addr=2').devices).to.have.length(1);
    });
  });
});
