// eventfds (the doorbells KVM rings for ioeventfd and listens on for irqfd) and a watcher that runs a callback on the main loop.

import koffi from 'koffi';
import { closeFd } from '../kvm/libc.js';
import { EAGAIN, EFD_CLOEXEC, EFD_NONBLOCK, eventfd, hostError, readFd, writeFd } from './libc-extra.js';

/** A non-blocking, close-on-exec eventfd. */
export class EventFd {
  private readonly counter = new BigUint64Array(1);
  private readonly bytes = new Uint8Array(this.counter.buffer);
  private closed = false;

  private constructor(readonly fd: number) {}

  /** eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC). */
  static create(): EventFd {
    return new EventFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  }

  /** Adds 1 to the counter, waking whoever polls (or KVM, for an irqfd). */
  signal(): void {
    this.counter[0] = 1n;
    const r = writeFd(this.fd, this.bytes);
    // EAGAIN only when the counter is at its 2^64-2 ceiling: the reader is already due to wake.
    if (r < 0 && -r !== EAGAIN) throw hostError('write', 'to eventfd', -r);
  }

  /** Reads and resets the counter; 0 when nothing was signalled since the last drain. */
  drain(): bigint {
    const r = readFd(this.fd, this.bytes);
    if (r === -EAGAIN) return 0n;
    if (r < 0) throw hostError('read', 'from eventfd', -r);
    return this.counter[0];
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
  }
}

/** koffi.node.poll's handle (its callback receives (status, events), unlike index.d.ts says). */
export type PollHandle = ReturnType<typeof koffi.node.poll>;
/** What a poll callback learns: libuv's status (0 or a negative UV error) and the ready events. */
export interface PollEvents {
  readonly readable: boolean;
  readonly writable: boolean;
  readonly disconnect: boolean;
}
type PollCallback = (status: number, events: PollEvents) => void;

/** Starts libuv polling of `fd` for the given events; the callback runs on the main event loop. */
export function pollFd(fd: number, events: { readable?: boolean; writable?: boolean }, cb: PollCallback): PollHandle {
  const start = koffi.node.poll as unknown as (fd: number, opts: object, cb: PollCallback) => PollHandle | null;
  const handle = start(fd, events, cb);
  if (!handle) throw new Error(`cannot poll fd ${fd}`);
  return handle;
}

/** Changes which events an existing poll handle waits for (libuv allows one handle per fd). */
export function repoll(handle: PollHandle, events: { readable?: boolean; writable?: boolean }, cb: PollCallback): void {
  (handle.start as unknown as (opts: object, cb: PollCallback) => void)(events, cb);
}

/**
 * Calls `onSignal(count)` on the main loop each time `eventfd` is signalled (the counter is drained
 * first, so a burst of signals gives one call). Does not keep the process alive unless `ref`.
 */
export class EventfdWatcher {
  private handle: PollHandle | undefined;

  constructor(readonly eventfd: EventFd, onSignal: (count: bigint) => void, opts: { ref?: boolean } = {}) {
    this.handle = pollFd(eventfd.fd, { readable: true }, (status) => {
      if (status < 0) return;
      const n = eventfd.drain();
      if (n > 0n) onSignal(n);
    });
    if (!opts.ref) this.handle.unref();
  }

  /** Stops watching (the eventfd stays open; the caller owns it). Must come before closing the fd. */
  close(): void {
    this.handle?.close();
    this.handle = undefined;
  }
}
