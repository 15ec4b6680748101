// Unit tests of the character-device flags: -chardev backends, every -serial spelling, -qmp and -mon.
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

describe('config: character devices', () => {
  describe('-serial', () => {
    const cases: [string, unknown][] = [
      ['stdio', { kind: 'stdio' }],
      ['pty', { kind: 'pty' }],
      ['null', { kind: 'null' }],
      ['file:/tmp/console.log', { kind: 'file', path: '/tmp/console.log' }],
      ['file,path=/tmp/console.log', { kind: 'file', path: '/tmp/console.log' }],
      ['unix:/tmp/s.sock', { kind: 'unix', path: '/tmp/s.sock', server: false, nowait: false }],
      ['unix:/tmp/s.sock,server,nowait', { kind: 'unix', path: '/tmp/s.sock', server: true, nowait: true }],
      ['unix:/tmp/s.sock,server=on,wait=off', { kind: 'unix', path: '/tmp/s.sock', server: true, nowait: true }],
      ['unix:/tmp/s.sock,server', { kind: 'unix', path: '/tmp/s.sock', server: true, nowait: false }],
      ['socket,path=/tmp/s.sock,server,nowait', { kind: 'unix', path: '/tmp/s.sock', server: true, nowait: true }],
      ['tcp:127.0.0.1:4444,server,nowait', { kind: 'tcp', host: '127.0.0.1', port: 4444, server: true, nowait: true }],
      ['tcp::4444,server,nowait', { kind: 'tcp', host: '0.0.0.0', port: 4444, server: true, nowait: true }],
      ['tcp:[::1]:4444,server', { kind: 'tcp', host: '::1', port: 4444, server: true, nowait: false }],
      ['tcp:logger.example:514', { kind: 'tcp', host: 'logger.example', port: 514, server: false, nowait: false }],
      ['file:/tmp/a,,b', { kind: 'file', path: '/tmp/a,b' }],
    ];
    for (const [text, spec] of cases) {
      it(`reads -serial ${text}`, () => {
        expect(withKernel('-serial', text).serial).to.deep.equal(spec);
      });
    }

    it('removes the port with -serial none', () => {
      expect(withKernel('-serial', 'none').serial).to.equal(null);
    });

    it('defaults to a null backend that discards output', () => {
      expect(withKernel().serial).to.deep.equal({ kind: 'null' });
    });

    it('uses a -chardev named by chardev:ID, wherever the -chardev appears', () => {
      expect(withKernel('-serial', 'chardev:con0', '-chardev', 'pty,id=con0').serial).to.deep.equal({ kind: 'pty', id: 'con0' });
      expect(withKernel('-chardev', 'socket,id=c,path=/tmp/c,server,nowait', '-serial', 'chardev:c').serial)
        .to.deep.equal({ kind: 'unix', id: 'c', path: '/tmp/c', server: true, nowait: true });
    });

    it('refuses a chardev:ID that names no -chardev', () => {
      expectConfigError(['-serial', 'chardev:nope'], 'serial', /unknown chardev 'nope'/);
    });

    it('refuses a second -serial: tsvirt has one port', () => {
      expectConfigError(['-serial', 'stdio', '-serial', 'pty'], 'serial', /given twice \('stdio' and 'pty'\); only one is supported/);
    });

    it('refuses unsupported backends, listing the supported spellings', () => {
      expectConfigError(['-serial', 'vc'], 'serial', /unsupported backend 'vc' \(supported: stdio, pty, null, none, file:PATH/);
      expectConfigError(['-serial', 'udp:1.2.3.4:5'], 'serial', /unsupported backend 'udp:1\.2\.3\.4:5'/);
    });

    it('refuses malformed socket and file spellings', () => {
      expectConfigError(['-serial', 'file:'], 'serial', /'file:' has no path/);
      expectConfigError(['-serial', 'file'], 'serial', /'path=' is required/);
      expectConfigError(['-serial', 'unix:'], 'serial', /has no path/);
      expectConfigError(['-serial', 'tcp::4444'], 'serial', /no host to connect to/);
      expectConfigError(['-serial', 'unix:/tmp/x,nowait'], 'serial', /'nowait' only applies to a server socket/);
      expectConfigError(['-serial', 'unix:/tmp/x,server,nowait,wait=on'], 'serial', /contradict/);
      expectConfigError(['-serial', 'unix:/tmp/x,server=maybe'], 'serial', /'server' must be on or off/);
      expectConfigError(['-serial', 'stdio,server'], 'serial', /unknown key 'server' for -serial stdio/);
      expectConfigError(['-serial', 'unix:/tmp/x,delay'], 'serial', /unknown key 'delay'.*supported: backend, server, nowait, wait/);
    });
  });

  describe('-chardev', () => {
    it('reads stdio, pty, null, file and unix and tcp sockets', () => {
      const mons = (text: string) => withKernel('-chardev', text, '-serial', 'chardev:c').serial;
      expect(mons('stdio,id=c')).to.deep.equal({ kind: 'stdio', id: 'c' });
      expect(mons('null,id=c')).to.deep.equal({ kind: 'null', id: 'c' });
      expect(mons('file,id=c,path=/tmp/f')).to.deep.equal({ kind: 'file', id: 'c', path: '/tmp/f' });
      expect(mons('socket,id=c,path=/tmp/s')).to.deep.equal({ kind: 'unix', id: 'c', path: '/tmp/s', server: false, nowait: false });
      expect(mons('socket,id=c,host=127.0.0.1,port=5555,server,nowait'))
        .to.deep.equal({ kind: 'tcp', id: 'c', host: '127.0.0.1', port: 5555, server: true, nowait: true });
      expect(mons('socket,id=c,port=5555,server')).to.deep.equal({ kind: 'tcp', id: 'c', host: '0.0.0.0', port: 5555, server: true, nowait: false });
      expect(mons('socket,id=c,host=[::1],port=5555,server')).to.include({ host: '::1' });
    });

    it('refuses a chardev without an id, backend, or with a bad id', () => {
      expectConfigError(['-chardev', 'stdio'], 'chardev', /'id=' is required/);
      expectConfigError(['-chardev', 'id=c'], 'chardev', /names no backend/);
      expectConfigError(['-chardev', 'stdio,id=1c'], 'chardev', /chardev id '1c' must start with a letter/);
    });

    it('refuses unsupported backends and URIs, listing the backends', () => {
      expectConfigError(['-chardev', 'spicevmc,id=c'], 'chardev', /unsupported backend 'spicevmc' \(supported: stdio, pty, null, file, socket\)/);
      expectConfigError(['-chardev', 'unix:/tmp/x,id=c'], 'chardev', /unsupported backend 'unix:\/tmp\/x'/);
    });

    it('refuses socket chardevs that are neither unix nor tcp, or both', () => {
      expectConfigError(['-chardev', 'socket,id=c'], 'chardev', /needs path= \(unix\) or port= \(tcp\)/);
      expectConfigError(['-chardev', 'socket,id=c,path=/p,port=1'], 'chardev', /either path= \(unix\) or host=,port= \(tcp\), not both/);
      expectConfigError(['-chardev', 'socket,id=c,port=1'], 'chardev', /client tcp socket needs host=/);
      expectConfigError(['-chardev', 'socket,id=c,host=h,port=x,server'], 'chardev', /port must be a whole number/);
    });

    it('refuses two chardevs with one id', () => {
      expectConfigError(['-chardev', 'pty,id=c', '-chardev', 'null,id=c', '-serial', 'chardev:c'], 'chardev', /chardev id 'c' is used twice/);
    });

    it('refuses a chardev nothing uses', () => {
      expectConfigError(['-chardev', 'pty,id=spare'], 'chardev', /chardev 'spare' is not used by -serial chardev:spare or -mon chardev=spare/);
    });

    it('refuses unknown keys, naming them', () => {
      expectConfigError(['-chardev', 'file,id=c,path=/f,append=on'], 'chardev', /unknown key 'append' for a file chardev/);
    });
  });

  describe('-qmp', () => {
    it('reads unix and tcp server sockets and repeats', () => {
      const c = withKernel('-qmp', 'unix:/tmp/q1,server,nowait', '-qmp', 'tcp:127.0.0.1:4445,server,nowait', '-qmp', 'unix:/tmp/q2,server=on,wait=off');
      expect(c.qmp).to.deep.equal([
        { kind: 'unix', path: '/tmp/q1', server: true, nowait: true },
        { kind: 'tcp', host: '127.0.0.1', port: 4445, server: true, nowait: true },
        { kind: 'unix', path: '/tmp/q2', server: true, nowait: true },
      ]);
    });

    it('keeps a server that waits for its client', () => {
      expect(withKernel('-qmp', 'unix:/tmp/q,server').qmp[0]).to.include({ server: true, nowait: false });
    });

    it('refuses a client socket', () => {
      expectConfigError(['-qmp', 'unix:/tmp/q'], 'qmp', /only server sockets are supported/);
      expectConfigError(['-qmp', 'tcp:localhost:4444'], 'qmp', /only server sockets are supported/);
    });

    it('refuses backends that are not sockets', () => {
      expectConfigError(['-qmp', 'stdio'], 'qmp', /'stdio' is not a socket/);
      expectConfigError(['-qmp', 'vc'], 'qmp', /unsupported backend 'vc'/);
    });

    it('refuses two listeners on one socket address', () => {
      expectConfigError(['-qmp', 'unix:/tmp/q,server,nowait', '-qmp', 'unix:/tmp/q,server,nowait'], 'qmp', /unix socket \/tmp\/q is also used by -qmp/);
      expectConfigError(['-serial', 'tcp:127.0.0.1:4444,server,nowait', '-qmp', 'tcp:127.0.0.1:4444,server,nowait'], 'qmp', /tcp 127\.0\.0\.1:4444 is also used by -serial/);
    });
  });

  describe('-mon', () => {
    it('turns a server socket chardev into a QMP socket', () => {
      const c = withKernel('-qmp', 'unix:/tmp/q,server,nowait', '-chardev', 'socket,id=mon0,path=/tmp/m,server,nowait', '-mon', 'chardev=mon0,id=monitor,mode=control');
      expect(c.qmp).to.deep.equal([
        { kind: 'unix', path: '/tmp/q', server: true, nowait: true },
        { kind: 'unix', id: 'mon0', path: '/tmp/m', server: true, nowait: true },
      ]);
    });

    it('reads the chardev as the implied key and control as the default mode', () => {
      const c = withKernel('-chardev', 'socket,id=m,port=4446,server,nowait', '-mon', 'm');
      expect(c.qmp).to.deep.equal([{ kind: 'tcp', id: 'm', host: '0.0.0.0', port: 4446, server: true, nowait: true }]);
    });

    it('refuses a monitor naming an unknown chardev', () => {
      expectConfigError(['-mon', 'chardev=ghost,mode=control'], 'mon', /unknown chardev 'ghost'/);
    });

    it('refuses a chardev used by both the serial port and a monitor', () => {
      expectConfigError(['-chardev', 'socket,id=c,path=/tmp/c,server,nowait', '-serial', 'chardev:c', '-mon', 'chardev=c,mode=control'], 'mon', /chardev 'c' is already used by -serial/);
    });

    it('refuses a chardev used by two monitors', () => {
      expectConfigError(['-chardev', 'socket,id=c,path=/tmp/c,server,nowait', '-mon', 'c', '-mon', 'c'], 'mon', /chardev 'c' is already used by -mon/);
    });

    it('refuses a mode other than control', () => {
      expectConfigError(['-chardev', 'socket,id=c,path=/tmp/c,server,nowait', '-mon', 'chardev=c,mode=readline'], 'mon', /mode 'readline' is not supported \(only mode=control/);
    });

    it('refuses a monitor on a chardev that is not a server socket', () => {
      expectConfigError(['-chardev', 'stdio,id=c', '-mon', 'c'], 'mon', /chardev 'c' \(stdio\) must be a server socket/);
      expectConfigError(['-chardev', 'socket,id=c,path=/tmp/c', '-mon', 'c'], 'mon', /must be a server socket/);
    });

    it('refuses unknown keys', () => {
      expectConfigError(['-chardev', 'socket,id=c,path=/tmp/c,server,nowait', '-mon', 'c,default'], 'mon', /unknown key 'default'/);
    });
  });
});
