// A tap network interface as a non-blocking fd: frames carry the 12-byte virtio_net_hdr, reads go straight into a caller's view.

import { HostError, TsvirtError } from '../errors.js';
import { O_CLOEXEC, O_RDWR, closeFd, errnoName, ioctlPtr, openPath, strerror } from '../kvm/libc.js';
import { pollFd, repoll, type PollHandle } from './eventfd.js';
import { EAGAIN, EINTR, IOV_MAX, O_NONBLOCK, readFd, writevFd } from './libc-extra.js';

// <linux/if_tun.h>
const TUNSETIFF = 0x400454ca;
const TUNSETVNETHDRSZ = 0x400454d8;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
/** struct ifreq: ifr_name[IFNAMSIZ] then the flags (a short) in the union. */
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;
const IFR_FLAGS = 16;

/** sizeof(struct virtio_net_hdr_v1): what every frame read or written starts with. */
export const TAP_VNET_HDR_SIZE = 12;
/** A read buffer this big holds any frame a tap without offloads delivers (64 KiB + header). */
export const TAP_MAX_READ = 65536 + TAP_VNET_HDR_SIZE;

/**
 * The tap could not be opened or used; the message names it as the command line did. `reason` is
 * the message without that prefix, for callers that name the option themselves.
 */
export class TapError extends TsvirtError {
  readonly ifname: string;
  readonly reason: string;
  readonly errno: number;
  constructor(ifname: string, reason: string, errno = 0) {
    super('ERR_TAP', `-netdev tap,ifname=${ifname}: ${reason}`);
    this.ifname = ifname;
    this.reason = reason;
    this.errno = errno;
  }
}

/**
 * One queue of a tap interface, opened IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with a 12-byte header,
 * non-blocking. Readiness callbacks run on the main loop (libuv polls the fd; one handle per fd).
 */
export class Tap {
  private poll: PollHandle | undefined;
  private readableCb: (() => void) | undefined;
  private writableCb: (() => void) | undefined;
  private wantRead = false;
  private wantWrite = false;
  private closed = false;

  private constructor(readonly fd: number, readonly ifname: string) {}

  /**
   * Attaches to tap `ifname`, creating it (for the life of the fd) when it does not exist. Fails
   * with TapError: no /dev/net/tun, EPERM (no CAP_NET_ADMIN, or a persistent tap owned by someone
   * else), EBUSY (another process holds this single-queue tap), EINVAL (a tun, not a tap).
   */
  static open(ifname: string): Tap {
    const nameBytes = new TextEncoder().encode(ifname);
    if (nameBytes.length === 0 || nameBytes.length >= IFNAMSIZ) {
      throw new TapError(ifname, `interface name must be 1 to ${IFNAMSIZ - 1} bytes`);
    }
    let fd: number;
    try {
      fd = openPath('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC);
    } catch (e) {
      const errno = e instanceof HostError ? e.errno : 0;
      throw new TapError(ifname, `cannot open /dev/net/tun: ${errno ? strerror(errno) : (e as Error).message}`, errno);
    }
    try {
      const ifr = new Uint8Array(IFREQ_SIZE);
      ifr.set(nameBytes);
      new DataView(ifr.buffer).setUint16(IFR_FLAGS, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, true);
      let r = ioctlPtr(fd, TUNSETIFF, ifr);
      if (r < 0) throw new TapError(ifname, `cannot open tap: ${strerror(-r)}`, -r);
      const size = new Int32Array([TAP_VNET_HDR_SIZE]);
      r = ioctlPtr(fd, TUNSETVNETHDRSZ, new Uint8Array(size.buffer));
      if (r < 0) throw new TapError(ifname, `cannot set the vnet header size: ${strerror(-r)}`, -r);
      const end = ifr.indexOf(0);
      const actual = new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end));
      return new Tap(fd, actual);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /**
   * Reads one frame (virtio_net_hdr first) into `into`, which may be a view of guest memory.
   * Returns its length, or 0 when no frame is waiting. A frame longer than `into` is truncated
   * by the kernel, so pass at least TAP_MAX_READ bytes.
   */
  read(into: Uint8Array): number {
    for (;;) {
      const r = readFd(this.fd, into);
      if (r >= 0) return r;
      if (r === -EAGAIN) return 0;
      if (r !== -EINTR) throw this.error('read', -r);
    }
  }

  /**
   * Sends one frame given as pieces (the first starting with the 12-byte virtio_net_hdr) with a
   * single writev(2) over the pieces themselves (no concatenation). Returns false when the tap
   * would block (EAGAIN): `onWritable` then fires once it can take frames again.
   */
  writev(parts: readonly Uint8Array[]): boolean {
    if (parts.length > IOV_MAX) throw new TapError(this.ifname, `a frame in ${parts.length} pieces exceeds IOV_MAX`);
    for (;;) {
      const r = writevFd(this.fd, parts);
      if (r >= 0) return true;
      if (r === -EAGAIN) {
        this.wantWrite = true;
        this.updatePoll();
        return false;
      }
      if (r !== -EINTR) throw this.error('write', -r);
    }
  }

  /** Calls `cb` on the main loop whenever a frame is waiting, while reading is resumed (the default once set). */
  onReadable(cb: (() => void) | undefined): void {
    this.readableCb = cb;
    this.wantRead = cb !== undefined;
    this.updatePoll();
  }

  /** Stops readiness callbacks (the consumer has nowhere to put frames); frames queue in the kernel. */
  pauseReading(): void {
    this.wantRead = false;
    this.updatePoll();
  }

  resumeReading(): void {
    this.wantRead = this.readableCb !== undefined;
    this.updatePoll();
  }

  /** Calls `cb` once after a `writev` returned false, when the tap accepts frames again. */
  onWritable(cb: (() => void) | undefined): void {
    this.writableCb = cb;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll?.close();
    this.poll = undefined;
    closeFd(this.fd);
  }

  private error(call: string, errno: number): TapError {
    return new TapError(this.ifname, `${call} failed: ${errnoName(errno)} (${strerror(errno)})`, errno);
  }

  private updatePoll(): void {
    if (this.closed) return;
    const events = { readable: this.wantRead, writable: this.wantWrite && this.writableCb !== undefined };
    if (!events.readable && !events.writable) {
      this.poll?.stop();
      return;
    }
    const cb = (status: number, ev: { readable: boolean; writable: boolean }) => this.ready(status, ev);
    if (!this.poll) {
      this.poll = pollFd(this.fd, events, cb);
      this.poll.unref();
    } else {
      repoll(this.poll, events, cb);
    }
  }

  private ready(status: number, ev: { readable: boolean; writable: boolean }): void {
    if (this.closed) return;
    if (ev.writable || status < 0) {
      if (this.wantWrite) {
        this.wantWrite = false;
        this.updatePoll();
        this.writableCb?.();
      }
    }
    if ((ev.readable || status < 0) && this.wantRead) this.readableCb?.();
  }
}
