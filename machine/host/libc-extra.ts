// The libc calls the host adapters need beyond machine/kvm/libc.ts: eventfd, read/write/writev, poll, shutdown, setns, statx.

import koffi from 'koffi';
import { HostError } from '../errors.js';
import { addressOf, errno, errnoName, strerror } from '../kvm/libc.js';

const libc = koffi.load('libc.so.6');

const c = {
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  read: libc.func('intptr_t read(int fd, void *buf, size_t count)'),
  write: libc.func('intptr_t write(int fd, const void *buf, size_t count)'),
  writev: libc.func('intptr_t writev(int fd, const void *iov, int iovcnt)'),
  setns: libc.func('int setns(int fd, int nstype)'),
  statx: libc.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  shutdown: libc.func('int shutdown(int fd, int how)'),
};

export const O_NONBLOCK = 0o4000;
export const EFD_NONBLOCK = O_NONBLOCK;
export const EFD_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
export const EAGAIN = 11;
export const EINTR = 4;
/** Linux's limit on iovecs per readv/writev call. */
export const IOV_MAX = 1024;
const IOVEC_SIZE = 16;

/** A HostError for the errno the last call left, naming the call and what it was for. */
export function hostError(call: string, detail = '', e = errno()): HostError {
  return new HostError(call, e, `${errnoName(e)} (${strerror(e)})`, detail);
}

/** eventfd(2); throws HostError. */
export function eventfd(initval: number, flags: number): number {
  const fd = c.eventfd(initval, flags) as number;
  if (fd < 0) throw hostError('eventfd');
  return fd;
}

/** read(2) into `into`; returns the byte count or -errno, never throws (EAGAIN is a normal answer here). */
export function readFd(fd: number, into: Uint8Array): number {
  const n = Number(c.read(fd, into, into.byteLength));
  return n < 0 ? -errno() : n;
}

/** write(2) of `from`; returns the byte count or -errno. */
export function writeFd(fd: number, from: Uint8Array): number {
  const n = Number(c.write(fd, from, from.byteLength));
  return n < 0 ? -errno() : n;
}

/**
 * writev(2) of `parts` (at most IOV_MAX) without copying them: the iovec array holds the parts'
 * own addresses (koffi.address of each view, which includes its byteOffset). The parts stay
 * referenced by the caller for the duration of this synchronous call. Returns bytes or -errno.
 */
export function writevFd(fd: number, parts: readonly Uint8Array[]): number {
  const iov = new BigUint64Array(parts.length * 2);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    iov[2 * i] = p.byteLength === 0 ? 0n : addressOf(p);
    iov[2 * i + 1] = BigInt(p.byteLength);
  }
  const n = Number(c.writev(fd, new Uint8Array(iov.buffer, 0, parts.length * IOVEC_SIZE), parts.length));
  return n < 0 ? -errno() : n;
}

const POLLIN = 1;
const POLLFD_SIZE = 8;

/**
 * Blocks the calling thread (a worker's: never the event loop) until `fd` is readable, hung up or in error, or
 * `timeoutMs` passes. Returns true when something is there to read (or to fail on).
 */
export function waitReadable(fd: number, timeoutMs: number): boolean {
  const pfd = new Uint8Array(POLLFD_SIZE);
  const dv = new DataView(pfd.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, POLLIN, true);
  return (c.poll(pfd, 1, timeoutMs) as number) > 0;
}

/** shutdown(2) both directions: a thread blocked on the socket wakes up and sees it end. Errors are ignored. */
export function shutdownSocket(fd: number): void {
  c.shutdown(fd, 2);
}

/** setns(2) for the calling thread; throws HostError. */
export function setns(fd: number, nstype: number): void {
  if ((c.setns(fd, nstype) as number) < 0) throw hostError('setns');
}

const AT_FDCWD = -100;
const STATX_DIOALIGN = 0x2000;
const STATX_SIZE = 256;
const STX_MASK = 0;
const STX_DIO_MEM_ALIGN = 152;
const STX_DIO_OFFSET_ALIGN = 156;

/**
 * The O_DIRECT alignment a file needs (statx STATX_DIOALIGN, Linux 6.1+): buffer address and
 * file offset/length alignment, or undefined when the kernel or filesystem does not say. Both 0
 * means the file does not support O_DIRECT.
 */
export function directIoAlignment(path: string): { memory: number; offset: number } | undefined {
  const buf = new Uint8Array(STATX_SIZE);
  if ((c.statx(AT_FDCWD, path, 0, STATX_DIOALIGN, buf) as number) < 0) return undefined;
  const dv = new DataView(buf.buffer);
  if ((dv.getUint32(STX_MASK, true) & STATX_DIOALIGN) === 0) return undefined;
  return { memory: dv.getUint32(STX_DIO_MEM_ALIGN, true), offset: dv.getUint32(STX_DIO_OFFSET_ALIGN, true) };
}
