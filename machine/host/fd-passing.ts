// Passing file descriptors over a unix socket (SCM_RIGHTS) with sendmsg/recvmsg through koffi; Node's sockets cannot.

import koffi from 'koffi';
import { hostError } from './libc-extra.js';
import { addressOf } from '../kvm/libc.js';

const libc = koffi.load('libc.so.6');
const sendmsg = libc.func('intptr_t sendmsg(int fd, void *msg, int flags)');
const recvmsg = libc.func('intptr_t recvmsg(int fd, void *msg, int flags)');

const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CMSG_CLOEXEC = 0x40000000;
/** struct msghdr on x86-64: name, namelen, iov, iovlen, control, controllen, flags. */
const MSGHDR_SIZE = 56;
const CMSG_HEADER = 16;
/** The most descriptors one message carries (one per RAM region of at most 1 GiB: far above any guest tsvirt builds). */
export const MAX_PASSED_FDS = 253;

function msghdr(payload: Uint8Array, control: Uint8Array): { hdr: Uint8Array; iov: Uint8Array } {
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, addressOf(payload), true);
  iv.setBigUint64(8, BigInt(payload.length), true);
  const hdr = new Uint8Array(MSGHDR_SIZE);
  const h = new DataView(hdr.buffer);
  h.setBigUint64(16, addressOf(iov), true);
  h.setBigUint64(24, 1n, true);
  h.setBigUint64(32, addressOf(control), true);
  h.setBigUint64(40, BigInt(control.length), true);
  return { hdr, iov };
}

/** Sends `fds` with a one-byte marker on the connected unix socket `sock`. */
export function sendFds(sock: number, fds: readonly number[], marker = 0x46): void {
  if (fds.length === 0 || fds.length > MAX_PASSED_FDS) throw new RangeError(`cannot pass ${fds.length} descriptors`);
  const payload = Uint8Array.of(marker);
  const control = new Uint8Array(CMSG_HEADER + Math.ceil((fds.length * 4) / 8) * 8);
  const c = new DataView(control.buffer);
  c.setBigUint64(0, BigInt(CMSG_HEADER + fds.length * 4), true);
  c.setInt32(8, SOL_SOCKET, true);
  c.setInt32(12, SCM_RIGHTS, true);
  fds.forEach((fd, i) => c.setInt32(CMSG_HEADER + i * 4, fd, true));
  const { hdr, iov } = msghdr(payload, control);
  const r = Number(sendmsg(sock, hdr, 0));
  void iov;
  if (r !== 1) throw hostError('sendmsg', 'with SCM_RIGHTS');
}

/**
 * Receives one marker byte and the descriptors sent with it. Returns undefined when nothing is there yet (EAGAIN);
 * throws when the peer sent something else.
 */
export function receiveFds(sock: number, expected: number): { marker: number; fds: number[] } | undefined {
  const payload = new Uint8Array(1);
  const control = new Uint8Array(CMSG_HEADER + Math.ceil((MAX_PASSED_FDS * 4) / 8) * 8);
  const { hdr, iov } = msghdr(payload, control);
  const r = Number(recvmsg(sock, hdr, MSG_CMSG_CLOEXEC));
  void iov;
  if (r < 0) {
    const e = koffi.errno();
    if (e === koffi.os.errno.EAGAIN) return undefined;
    throw hostError('recvmsg', '', e);
  }
  if (r === 0) throw new Error('the peer closed the connection instead of passing memory');
  const h = new DataView(hdr.buffer);
  const controllen = Number(h.getBigUint64(40, true));
  const c = new DataView(control.buffer);
  if (controllen < CMSG_HEADER || c.getInt32(8, true) !== SOL_SOCKET || c.getInt32(12, true) !== SCM_RIGHTS) {
    throw new Error('no descriptors arrived with the memory hand-over');
  }
  const n = (Number(c.getBigUint64(0, true)) - CMSG_HEADER) / 4;
  const fds = Array.from({ length: n }, (_, i) => c.getInt32(CMSG_HEADER + i * 4, true));
  if (n !== expected) throw new Error(`memory hand-over passed ${n} descriptors, expected ${expected}`);
  return { marker: payload[0], fds };
}
