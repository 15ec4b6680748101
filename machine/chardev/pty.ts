// The pty backend: a pseudo-terminal whose slave path is printed, as QEMU's "char device redirected to" line.

import koffi from 'koffi';
import * as fs from 'node:fs';
import * as tty from 'node:tty';
import type { CharBackend } from './backend.js';
import { InputQueue } from './backend.js';
import { HostError } from '../errors.js';

const libc = koffi.load('libc.so.6');
const posixOpenpt = libc.func('int posix_openpt(int flags)');
const grantpt = libc.func('int grantpt(int fd)');
const unlockpt = libc.func('int unlockpt(int fd)');
const ptsname = libc.func('const char *ptsname(int fd)');
const O_RDWR = 2;
const O_NOCTTY = 0o400;

export class PtyBackend implements CharBackend {
  readonly description: string;
  readonly path: string;
  private readonly fd: number;
  private readonly stream: tty.ReadStream;
  private readonly input: InputQueue;

  constructor() {
    const fd = posixOpenpt(O_RDWR | O_NOCTTY) as number;
    if (fd < 0 || (grantpt(fd) as number) < 0 || (unlockpt(fd) as number) < 0) {
      throw new HostError('posix_openpt', koffi.errno(), 'cannot create a pseudo-terminal');
    }
    this.fd = fd;
    this.path = ptsname(fd) as string;
    this.description = `pty ${this.path}`;
    this.stream = new tty.ReadStream(fd);
    this.stream.setRawMode(true);
    this.input = new InputQueue((held) => (held ? this.stream.pause() : this.stream.resume()));
    this.stream.on('data', (d: Buffer) => this.input.push(d));
    // EIO means no slave is open: normal before a client attaches, so it is ignored.
    this.stream.on('error', () => {});
  }

  write(bytes: Uint8Array): void {
    try {
      fs.writeSync(this.fd, bytes);
    } catch {
      // No reader on the slave side: drop, as a serial line does.
    }
  }

  setInputSink(sink: (bytes: Uint8Array) => number): void {
    this.input.setSink(sink);
  }

  resumeInput(): void {
    this.input.drain();
  }

  close(): void {
    this.stream.destroy();
  }
}
