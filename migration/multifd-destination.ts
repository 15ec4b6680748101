// The destination's multifd data channels: accepts the connections the CONFIG announced and reads their pages into guest RAM.

import type * as net from 'node:net';
import { TsvirtError } from '../machine/errors.js';
import { withDirectReads } from './channel.js';
import type { MultifdDescription, VmDescription } from './description.js';
import type { StreamMessage } from './format.js';
import { StreamReader, type RamSink } from './reader.js';

/** How long the source has, after ACCEPT, to open every channel it announced. */
const CHANNELS_TIMEOUT_MS = 10000;

export interface MultifdReceiverHooks {
  /** Bytes read on a channel (for query-migrate). */
  onBytes(n: number): void;
  /** Every channel has received its final CHANNEL_SYNC: all RAM is in. */
  onComplete(): void;
  /** A channel reached a CHANNEL_SYNC: `synced` may have grown. */
  onSync(): void;
  /** A channel failed (bad preamble, corrupt data, cut early, or channels missing): the migration fails. */
  onFail(e: unknown): void;
}

/** The data channels of one incoming migration. */
export class MultifdReceiver {
  private readonly sockets: net.Socket[] = [];
  private readonly seen = new Set<number>();
  /** The last pass each channel has synced, by channel index. */
  private readonly syncs: number[];
  private finished = 0;
  private failed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly plan: MultifdDescription,
    private readonly config: VmDescription,
    private readonly sink: RamSink,
    private readonly hooks: MultifdReceiverHooks,
  ) {
    this.syncs = new Array<number>(plan.channels).fill(0);
    this.timer = setTimeout(() => {
      if (this.seen.size < plan.channels) this.fail(new TsvirtError('ERR_MIGRATION_PEER', `multifd: ${this.seen.size} of ${plan.channels} channels opened within ${CHANNELS_TIMEOUT_MS / 1000} s`));
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

  /** Takes an accepted connection as one of the channels; its preamble says which. */
  adopt(accepted: net.Socket): void {
    if (this.failed) {
      accepted.destroy();
      return;
    }
    let index = -1;
    let ended = false;
    const onMessage = (m: StreamMessage): void => {
      if (m.type === 'channel') {
        const where = `multifd channel ${m.index}`;
        if (m.session !== this.plan.session) throw new TsvirtError('ERR_MIGRATION_PEER', `${where}: belongs to another migration (session ${m.session})`);
        if (m.count !== this.plan.channels) throw new TsvirtError('ERR_MIGRATION_PEER', `${where}: says there are ${m.count} channels, the CONFIG ${this.plan.channels}`);
        if (this.seen.has(m.index)) throw new TsvirtError('ERR_MIGRATION_PEER', `${where}: opened twice`);
        this.seen.add(m.index);
        index = m.index;
        if (this.seen.size === this.plan.channels) clearTimeout(this.timer);
        return;
      }
      if (m.type === 'channel-sync') {
        this.syncs[index] = m.pass;
        if (m.final) {
          ended = true;
          if (++this.finished === this.plan.channels) this.hooks.onComplete();
        } else {
          this.hooks.onSync();
        }
        return;
      }
      if (m.type === 'error') throw new TsvirtError('ERR_MIGRATION_PEER', `source reported on multifd channel ${index}: ${m.message}`);
    };
    const reader = new StreamReader({ direction: 'channel', config: this.config, ram: this.sink, onMessage });
    const socket = withDirectReads(
      accepted,
      () => {
        try {
          return reader.readBuffer();
        } catch (e) {
          this.fail(e);
          return new Uint8Array(65536);
        }
      },
      (n) => {
        if (this.failed) return;
        this.hooks.onBytes(n);
        try {
          reader.commit(n);
        } catch (e) {
          this.fail(e);
        }
      },
    );
    this.sockets.push(socket);
    const cut = (why: string) => {
      if (ended || this.failed) return;
      try {
        reader.finish();
      } catch (e) {
        this.fail(e);
        return;
      }
      this.fail(new TsvirtError('ERR_MIGRATION_PEER', `multifd channel ${index}: ${why} before its final sync`));
    };
    socket.on('end', () => cut('the source closed it'));
    socket.on('close', () => cut('the connection closed'));
    socket.on('error', (e) => cut(`connection error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
  }

  private fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.destroy();
    this.hooks.onFail(e);
  }

  /** Closes every channel (after a failure, or once the migration is over). */
  destroy(): void {
    clearTimeout(this.timer);
    for (const s of this.sockets) s.destroy();
  }
}
