// Typed errors shared by every part of tsvirt: each carries a stable code and the QMP error class it maps to.

/** QMP error classes, as QEMU spells them on the wire. */
export type QmpErrorClass =
  | 'GenericError'
  | 'CommandNotFound'
  | 'DeviceNotFound'
  | 'DeviceNotActive'
  | 'KVMMissingCap';

/** Base of every tsvirt error: `code` is stable for callers to match on, `qmpClass` is what QMP reports. */
export class TsvirtError extends Error {
  readonly code: string;
  readonly qmpClass: QmpErrorClass;
  constructor(code: string, message: string, qmpClass: QmpErrorClass = 'GenericError') {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.qmpClass = qmpClass;
  }
}

/** A command-line flag or its value is wrong; `flag` names it (without the dash). */
export class ConfigError extends TsvirtError {
  readonly flag: string;
  constructor(flag: string, message: string) {
    super('ERR_CONFIG', `-${flag}: ${message}`);
    this.flag = flag;
  }
}

/** A kernel, initrd or other boot image cannot be loaded. */
export class BootError extends TsvirtError {
  constructor(message: string) {
    super('ERR_BOOT', message);
  }
}

/** A KVM ioctl failed; names the ioctl and the errno. */
export class KvmError extends TsvirtError {
  readonly ioctl: string;
  readonly errno: number;
  constructor(ioctl: string, errno: number, errnoName: string) {
    super('ERR_KVM', `${ioctl} failed: ${errnoName} (errno ${errno})`, 'KVMMissingCap');
    this.ioctl = ioctl;
    this.errno = errno;
  }
}

/** A host system call outside KVM failed (open, mmap, memfd_create ...). */
export class HostError extends TsvirtError {
  readonly syscall: string;
  readonly errno: number;
  constructor(syscall: string, errno: number, errnoName: string, detail = '') {
    super('ERR_HOST', `${syscall}${detail ? ' ' + detail : ''} failed: ${errnoName} (errno ${errno})`);
    this.syscall = syscall;
    this.errno = errno;
  }
}

/** The guest or the machine is in a state where the request cannot be served. */
export class StateError extends TsvirtError {
  constructor(message: string) {
    super('ERR_STATE', message);
  }
}
