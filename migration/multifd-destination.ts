// The destination's multifd data channels: accepts the connections the CONFIG announced, one reader thread each.

import type * as net from 'node:net';
import { TsvirtError } from '../machine/errors.js';
import { Worker } from 'node:worker_threads';
import { shutdownSocket } from '../machine/host/libc-extra.js';
import { socketFd } from './channel.js';
import type { MultifdDescription, VmDescription } from './description.js';
import type { ReceiveWorkerData, ReceiveWorkerMessage } from './multifd-receive-worker.js';

/** How long the source has, after ACCEPT, to open every channel it announced. */
const CHANNELS_TIMEOUT_MS = 10000;

export interface MultifdReceiverHooks {
  /** Bytes read and pages stored by a channel since its last report (for query-migrate). */
  onCounts(bytes: number, normalPages: number, zeroPages: number): void;
  /** Every channel has received its final CHANNEL_SYNC: all RAM is in. */
  onComplete(): void;
  /** A channel reached a CHANNEL_SYNC: `synced` may have grown. */
  onSync(): void;
  /** A channel failed (bad preamble, corrupt data, cut early, or channels missing): the migration fails. */
  onFail(e: unknown): void;
}

/** The data channels of one incoming migration. */
export class MultifdReceiver {
  private readonly workers: { worker: Worker; accepted: net.Socket; counters: Float64Array; index: number; ended: boolean }[] = [];
  private readonly seen = new Set<number>();
  /** The last pass each channel has synced, by channel index. */
  private readonly syncs: number[];
  private finished = 0;
  private failed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly plan: MultifdDescription,
    private readonly config: VmDescription,
    /** The guest's memfds and sizes in CONFIG range order (each worker maps them). */
    private readonly regions: readonly { fd: number; size: number }[],
    private readonly hooks: MultifdReceiverHooks,
  ) {
    this.syncs = new Array<number>(plan.channels).fill(0);
    this.timer = setTimeout(() => {
      if (this.seen.size < plan.channels) this.fail(new TsvirtError('ERR_MIGRATION_CHANNEL', `multifd: ${this.seen.size} of ${plan.channels} channels opened within ${CHANNELS_TIMEOUT_MS / 1000} s`));
    }, CHANNELS_TIMEOUT_MS);
  }

  /** True once every channel has delivered its last pages. */
  get complete(): boolean {
    return this.finished === this.plan.channels;
  }

  /** The last pass every channel has fully delivered (its pages are in guest memory). */
  get synced(): number {
    return Math.min(...this.syncs);
  }

  /**
   * Takes an accepted connection as one of the channels: a worker thread reads it straight into guest memory (see
   * multifd-receive-worker.ts); its preamble says which channel it is.
   */
  adopt(accepted: net.Socket): void {
    // Only as many connections as the CONFIG announced get a reader (a thread with guest memory mapped); any more
    // are closed at once.
    if (this.failed || this.workers.length >= this.plan.channels) {
      accepted.destroy();
      return;
    }
    const fd = socketFd(accepted);
    if (fd === undefined) {
      accepted.destroy();
      this.fail(new TsvirtError('ERR_MIGRATION_CHANNEL', 'multifd: an accepted channel has no file descriptor'));
      return;
    }
    const shared = new SharedArrayBuffer(4 * 8);
    const counters = new Float64Array(shared);
    const data: ReceiveWorkerData = { socketFd: fd, regions: this.regions, config: this.config, session: this.plan.session, channels: this.plan.channels, shared };
    const worker = new Worker(new URL('./multifd-receive-worker.js', import.meta.url), { workerData: data, name: 'multifd-recv' });
    const channel = { worker, accepted, counters, reported: [0, 0, 0], index: -1, ended: false };
    this.workers.push(channel);
    const account = () => {
      const [bytes, normal, zero] = [counters[0], counters[1], counters[2]];
      this.hooks.onCounts(bytes - channel.reported[0], normal - channel.reported[1], zero - channel.reported[2]);
      channel.reported = [bytes, normal, zero];
    };
    worker.on('message', (m: ReceiveWorkerMessage) => {
      if (this.failed) return;
      if (m.type === 'preamble') {
        if (this.seen.has(m.index)) return this.fail(new TsvirtError('ERR_MIGRATION_CHANNEL', `multifd channel ${m.index}: opened twice`));
        this.seen.add(m.index);
        channel.index = m.index;
        if (this.seen.size === this.plan.channels) clearTimeout(this.timer);
        return;
      }
      if (m.type === 'sync') {
        account();
        this.syncs[channel.index] = m.pass;
        if (m.final) {
          channel.ended = true;
          if (++this.finished === this.plan.channels) this.hooks.onComplete();
        } else {
          this.hooks.onSync();
        }
        return;
      }
      // What the source sent was refused: tell it why (fail() replies ERROR for anything but a closed connection).
      const which = channel.index < 0 ? 'a multifd channel' : `multifd channel ${channel.index}`;
      this.fail(new TsvirtError(m.closed ? 'ERR_MIGRATION_PEER' : 'ERR_MIGRATION_CHANNEL', `${which}: ${m.message}`));
    });
    worker.on('error', (e: Error) => this.fail(new TsvirtError('ERR_MIGRATION_CHANNEL', `multifd channel ${channel.index}: ${e.message}`)));
    worker.on('exit', () => {
      account();
      // The worker no longer touches the descriptor: only now may the socket (and its fd number) go.
      accepted.destroy();
      if (!channel.ended && !this.failed) this.fail(new TsvirtError('ERR_MIGRATION_CHANNEL', `multifd channel ${channel.index}: its reader ended before the final sync`));
    });
  }

  private fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.destroy();
    this.hooks.onFail(e);
  }

  /** Stops every channel (after a failure, or once the migration is over): the workers wake up, end, and close their sockets. */
  destroy(): void {
    clearTimeout(this.timer);
    for (const c of this.workers) {
      c.counters[3] = 1;
      const fd = socketFd(c.accepted);
      if (fd !== undefined) shutdownSocket(fd);
    }
  }
}
