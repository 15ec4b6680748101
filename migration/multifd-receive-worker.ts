// One multifd data channel on the destination, in its own thread: blocking reads straight into guest memory, in parallel with the other channels.
//
// The main thread would otherwise read every channel itself, and on this kind of host what limits pass 1 is the
// kernel's first touch of fresh guest memory during the copy (about 0.5 GB/s per thread here), plus inflating zlib
// batches: both now run on as many threads as there are channels. The worker maps the guest's memfds itself (a
// mapping is per process, so it sees the same pages) and unmaps them before it ends. It imports the libc wrappers
// of machine/ directly: the socket and the memfds are plain file descriptors here.

import { parentPort, workerData } from 'node:worker_threads';
import { mmapShared, munmap, view } from '../machine/kvm/libc.js';
import { EAGAIN, EINTR, readFd, waitReadable } from '../machine/host/libc-extra.js';
import type { VmDescription } from './description.js';
import type { StreamMessage } from './format.js';
import { StreamReader } from './reader.js';
import { WrittenPages } from './written-pages.js';

/** What the main thread gives a channel worker. */
export interface ReceiveWorkerData {
  /** The accepted connection (non-blocking; the main thread never reads it). */
  readonly socketFd: number;
  /** The guest's memfds and sizes, in CONFIG range order. */
  readonly regions: readonly { fd: number; size: number }[];
  readonly config: VmDescription;
  /** The session and channel count the CONFIG announced: a preamble that disagrees is refused before any page. */
  readonly session: string;
  readonly channels: number;
  /** Float64 slots: [0] bytes read, [1] normal pages, [2] zero pages; [3] set to 1 by the main thread to stop. */
  readonly shared: SharedArrayBuffer;
}

/** What a channel worker reports. */
export type ReceiveWorkerMessage =
  | { type: 'preamble'; index: number }
  | { type: 'sync'; pass: number; final: boolean }
  /** `closed`: the connection ended, was reset or was stopped (nobody to tell); otherwise the data was refused. */
  | { type: 'failed'; message: string; closed: boolean };

const PAGE_SHIFT = 12;

/** The connection itself failed (as opposed to what came over it). */
class ChannelClosed extends Error {}

function run(data: ReceiveWorkerData, post: (m: ReceiveWorkerMessage) => void): void {
  const counters = new Float64Array(data.shared);
  const maps: { ptr: ReturnType<typeof mmapShared>; size: number }[] = [];
  try {
    for (const r of data.regions) maps.push({ ptr: mmapShared(r.fd, r.size), size: r.size });
    const ram = maps.map((m) => new Uint8Array(view(m.ptr, m.size)));
    // Pages this channel wrote (no other channel writes them: blocks are striped).
    const written = new WrittenPages(data.regions.map((r) => r.size));
    const onMessage = (m: StreamMessage): void => {
      if (m.type === 'channel') {
        if (m.session !== data.session) throw new Error(`channel ${m.index} belongs to another migration (session ${m.session})`);
        if (m.count !== data.channels) throw new Error(`channel ${m.index} says there are ${m.count} channels, the CONFIG ${data.channels}`);
        post({ type: 'preamble', index: m.index });
      } else if (m.type === 'channel-sync') {
        post({ type: 'sync', pass: m.pass, final: m.final });
      } else if (m.type === 'error') {
        throw new Error(`source reported: ${m.message}`);
      }
    };
    const reader = new StreamReader({
      direction: 'channel',
      config: data.config,
      onMessage,
      ram: {
        target: (region, offset, length) => {
          written.mark(region, offset, length);
          counters[1] += length >>> PAGE_SHIFT;
          return ram[region].subarray(offset, offset + length);
        },
        zero: (region, offset, length) => {
          counters[2] += length >>> PAGE_SHIFT;
          written.clearWritten(region, offset, length, ram[region]);
        },
      },
    });
    while (!reader.done) {
      if (counters[3] !== 0) throw new ChannelClosed('stopped');
      const buf = reader.readBuffer();
      const n = readFd(data.socketFd, buf);
      if (n > 0) {
        counters[0] += n;
        reader.commit(n);
      } else if (n === 0) {
        reader.commit(0);
        reader.finish();
        throw new ChannelClosed('the source closed the channel before its final sync');
      } else if (n === -EAGAIN || n === -EINTR) {
        reader.commit(0);
        waitReadable(data.socketFd, 200);
      } else {
        throw new ChannelClosed(`read failed: errno ${-n}`);
      }
    }
  } finally {
    for (const m of maps) munmap(m.ptr, m.size);
  }
}

if (parentPort) {
  const port = parentPort;
  try {
    run(workerData as ReceiveWorkerData, (m) => port.postMessage(m));
  } catch (e) {
    port.postMessage({ type: 'failed', message: (e as Error).message, closed: e instanceof ChannelClosed } satisfies ReceiveWorkerMessage);
  }
}
