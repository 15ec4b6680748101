// The one place an ioctl's failure becomes a KvmError naming the ioctl and the errno.

import { KvmError } from '../errors.js';
import { errnoName, ioctlPtr, ioctlVal, type NativePointer } from './libc.js';
import { KVM, type IoctlName } from './ioctls.js';

/** Calls `KVM_<name>` with a buffer argument; throws KvmError on failure. */
export function kvmIoctl(fd: number, name: IoctlName, arg: Uint8Array | NativePointer | null = null): number {
  const r = ioctlPtr(fd, KVM[name], arg);
  if (r < 0) throw new KvmError(`KVM_${name}`, -r, errnoName(-r));
  return r;
}

/** Calls `KVM_<name>` with an integer argument; throws KvmError on failure. */
export function kvmIoctlVal(fd: number, name: IoctlName, arg: number | bigint = 0): number {
  const r = ioctlVal(fd, KVM[name], arg);
  if (r < 0) throw new KvmError(`KVM_${name}`, -r, errnoName(-r));
  return r;
}
