// The libc calls tsvirt makes through koffi, each turning a failure into a typed error that names the call.

import koffi from 'koffi';
import { HostError } from '../errors.js';

const libc = koffi.load('libc.so.6');

/** A native address as koffi hands it back (an opaque pointer value). */
export type NativePointer = unknown;

const c = {
  open: libc.func('int open(const char *path, int flags, int mode)'),
  close: libc.func('int close(int fd)'),
  // ioctl is variadic in C; on x86-64 a fixed prototype passes integer and pointer arguments the same way.
  ioctlPtr: libc.func('int ioctl(int fd, unsigned long request, void *arg)'),
  ioctlVal: libc.func('int ioctl(int fd, unsigned long request, unsigned long arg)'),
  mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  munmap: libc.func('int munmap(void *addr, size_t len)'),
  memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: libc.func('int ftruncate(int fd, int64_t len)'),
  madvise: libc.func('int madvise(void *addr, size_t len, int advice)'),
  lseek: libc.func('int64_t lseek(int fd, int64_t offset, int whence)'),
  gettid: libc.func('int gettid()'),
  getpid: libc.func('int getpid()'),
  tgkill: libc.func('int tgkill(int tgid, int tid, int sig)'),
  strerror: libc.func('const char *strerror(int errnum)'),
};

export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_FIXED = 0x10;
export const MAP_FAILED = 0xffffffffffffffffn;
export const MFD_CLOEXEC = 1;
export const SIGUSR2 = 12;

/** The current thread's errno. */
export function errno(): number {
  return koffi.errno();
}

/** The symbolic name of an errno value (EINTR, ENOENT ...), or its number. */
export function errnoName(e: number): string {
  for (const [name, value] of Object.entries(koffi.os.errno)) if (value === e) return name;
  return `errno ${e}`;
}

export function strerror(e: number): string {
  return c.strerror(e) as string;
}

function fail(call: string, detail = ''): never {
  const e = errno();
  throw new HostError(call, e, `${errnoName(e)} (${strerror(e)})`, detail);
}

export function openPath(path: string, flags: number): number {
  const fd = c.open(path, flags, 0) as number;
  if (fd < 0) fail('open', path);
  return fd;
}

export function closeFd(fd: number): void {
  c.close(fd);
}

/** Raw ioctl with a buffer (or null) argument; returns the result or -errno, never throws. */
export function ioctlPtr(fd: number, request: number, arg: Uint8Array | NativePointer | null): number {
  const r = c.ioctlPtr(fd, request, arg) as number;
  return r < 0 ? -errno() : r;
}

/** Raw ioctl with an integer argument; returns the result or -errno, never throws. */
export function ioctlVal(fd: number, request: number, arg: number | bigint): number {
  const r = c.ioctlVal(fd, request, arg) as number;
  return r < 0 ? -errno() : r;
}

/** Maps `len` bytes of `fd` shared and read-write; returns the native address. */
export function mmapShared(fd: number, len: number, offset = 0): NativePointer {
  const p = c.mmap(null, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (koffi.address(p) === MAP_FAILED) fail('mmap', `of ${len} bytes`);
  return p;
}

/**
 * Maps `len` bytes of `fd` shared and read-write over the existing mapping at `p` (MAP_FIXED): the address stays, so
 * every view of it and any KVM memory slot over it stay valid (KVM drops the old pages through its MMU notifier).
 */
export function mmapSharedAt(p: NativePointer, fd: number, len: number): void {
  const q = c.mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (koffi.address(q) !== koffi.address(p)) fail('mmap', `MAP_FIXED of ${len} bytes`);
}

export function munmap(p: NativePointer, len: number): void {
  c.munmap(p, len);
}

export function madvise(p: NativePointer, len: number, advice: number): void {
  if ((c.madvise(p, len, advice) as number) < 0) fail('madvise');
}

/** An ArrayBuffer over native memory, without a copy. */
export function view(p: NativePointer, len: number): ArrayBuffer {
  return koffi.view(p, len) as ArrayBuffer;
}

/** The numeric address of a native pointer or of a Buffer/typed array's storage. */
export function addressOf(p: NativePointer | Uint8Array): bigint {
  return koffi.address(p) as bigint;
}

export function memfdCreate(name: string, size: number): number {
  const fd = c.memfdCreate(name, MFD_CLOEXEC) as number;
  if (fd < 0) fail('memfd_create', name);
  if ((c.ftruncate(fd, size) as number) < 0) {
    const e = errno();
    c.close(fd);
    throw new HostError('ftruncate', e, errnoName(e), `${name} to ${size} bytes`);
  }
  return fd;
}

export function gettid(): number {
  return c.gettid() as number;
}

export function getpid(): number {
  return c.getpid() as number;
}

/** Sends `sig` to one thread of this process; used to kick a vCPU out of KVM_RUN. */
export function tgkill(tid: number, sig: number): void {
  c.tgkill(c.getpid(), tid, sig);
}

const SEEK_DATA = 3;
const SEEK_HOLE = 4;

/** The [start, end) byte ranges of `fd` (size `size`) that hold data; holes (never-written pages) are left out. */
export function dataExtents(fd: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  let pos = 0;
  while (pos < size) {
    const data = Number(c.lseek(fd, pos, SEEK_DATA));
    if (data < 0) break; // ENXIO: no data after pos
    const hole = Number(c.lseek(fd, data, SEEK_HOLE));
    const end = hole < 0 ? size : Math.min(hole, size);
    out.push([data, end]);
    pos = end;
  }
  return out;
}
