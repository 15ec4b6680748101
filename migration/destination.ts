// The incoming side of a live migration: listen, check the configuration, take RAM and state, run only when told.

import type * as net from 'node:net';
import { TsvirtError } from '../machine/errors.js';
import { describeAddress, listen, socketFd, withDirectReads, type MigrationAddress } from './channel.js';
import { compareVms } from './compat.js';
import { MigrationCompatError } from './errors.js';
import type { StreamMessage } from './format.js';
import { StreamReader, type RamSink } from './reader.js';
import type { MigrationStats } from './stats.js';
import type { MigrationStatus } from './status.js';
import type { MigratableVm } from './vm-port.js';
import { ReplyWriter } from './writer.js';
import { applyStateMessage } from './apply-state.js';
import { receiveFds } from '../machine/host/fd-passing.js';
import { MultifdReceiver } from './multifd-destination.js';
import { WrittenPages } from './written-pages.js';

const PAGE_SHIFT = 12;
/** Connections kept, before the CONFIG says how many channels come, beyond the first (multifd allows 255). */
const MAX_EARLY_CONNECTIONS = 255;
/** Sections held after the final pass beyond the CONFIG's vCPUs and devices (chips, clock, serial and the like). */
const HELD_SLACK = 32;

export interface DestinationContext {
  readonly vm: MigratableVm;
  readonly status: MigrationStatus;
  readonly stats: MigrationStats;
  /** Leave the guest paused after the migration (the destination was started with -S). */
  readonly startPaused: boolean;
  log(message: string): void;
}

/**
 * Waits for one incoming migration on `address` and completes it. Resolves once the guest runs here; rejects (the
 * guest never having run here) when the stream is refused, corrupt or cut.
 */
export async function runDestination(ctx: DestinationContext, address: MigrationAddress, listening?: net.Server): Promise<void> {
  const { vm, status, stats } = ctx;
  const server = listening ?? (await listen(address));
  ctx.log(`waiting for an incoming migration on ${describeAddress(address)}`);
  const accepted = await new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  // The listener stays open until the CONFIG says whether multifd channels follow on the same address.
  const early: net.Socket[] = [];
  let onChannel: ((s: net.Socket) => void) | undefined;
  server.on('connection', (s: net.Socket) => {
    if (onChannel) onChannel(s);
    else if (early.length < MAX_EARLY_CONNECTIONS) early.push(s);
    else s.destroy();
  });
  const stopListening = () => {
    if (server.listening) server.close();
    for (const s of early.splice(0)) s.destroy();
  };
  stats.startedAt = performance.now();

  const replies = new ReplyWriter();
  const written = new WrittenPages(vm.ram.map((r) => r.size));
  let socket: net.Socket | undefined;
  let header: { arch: string; vendor: string } | undefined;
  let done = false;
  let multifd: MultifdReceiver | undefined;
  /** Sections after the final pass wait here until every multifd channel has delivered its last pages. */
  let held: StreamMessage[] | undefined;
  /** A pass whose RAM_PASS_END arrived but whose PASS_ACK waits for the multifd channels. */
  let unacked = 0;

  const ramSink: RamSink = {
    target: (region, offset, length) => {
      const r = vm.ram[region];
      written.mark(region, offset, length);
      stats.normalPages += length >>> PAGE_SHIFT;
      return r.bytes.subarray(offset, offset + length);
    },
    zero: (region, offset, length) => {
      stats.zeroPages += length >>> PAGE_SHIFT;
      written.clearWritten(region, offset, length, vm.ram[region].bytes);
    },
  };

  return new Promise<void>((resolve, reject) => {
    const fail = (e: unknown) => {
      if (done) return;
      done = true;
      stopListening();
      multifd?.destroy();
      const message = (e as Error).message;
      if (status.can('failed')) status.fail(message);
      try {
        if (!(e instanceof TsvirtError && e.code === 'ERR_MIGRATION_PEER')) socket?.write(Buffer.concat(replies.error(message)));
      } catch {
        // Connection already gone.
      }
      socket?.end();
      reject(e);
    };

    const onMessage = (m: StreamMessage): void => {
      if (held && m.type !== 'error') {
        // A source that keeps a channel open must not be able to make us buffer without end.
        const cfg = reader.description;
        if (held.length >= (cfg?.vcpus ?? 0) + (cfg?.devices.length ?? 0) + HELD_SLACK) {
          throw new TsvirtError('ERR_MIGRATION_CHANNEL', `${held.length} sections after the final pass while multifd channels are still open`);
        }
        held.push(m);
        return;
      }
      if (m.type === 'pass-end' && m.final && multifd && !multifd.complete) held = [];
      if (applyStateMessage(vm, m, true)) return;
      switch (m.type) {
        case 'header':
          header = m.header;
          status.transition('setup');
          return;
        case 'config': {
          const mismatches = compareVms({ ...header!, description: m.description }, { arch: 'x86_64', vendor: vm.cpuVendor(), description: vm.description() });
          if (mismatches.length) throw new MigrationCompatError(mismatches);
          if (m.description.multifd && m.description.memoryHandover) throw new TsvirtError('ERR_MIGRATION_LOCAL', 'CONFIG asks for multifd channels and a memory hand-over at once');
          if (m.description.multifd) {
            const plan = m.description.multifd;
            multifd = new MultifdReceiver(plan, m.description, vm.memoryFds().map((fd, r) => ({ fd, size: vm.ram[r].size })), {
              onCounts: (bytes, normal, zero) => {
                stats.transferredBytes += bytes;
                stats.normalPages += normal;
                stats.zeroPages += zero;
              },
              onComplete: () => {
                stopListening();
                releaseHeld();
              },
              onSync: () => ackPass(),
              onFail: fail,
            });
            onChannel = (s) => multifd!.adopt(s);
            for (const s of early.splice(0)) multifd.adopt(s);
            ctx.log(`multifd: expecting ${plan.channels} channels, compression ${plan.compression}`);
          } else {
            stopListening();
          }
          if (m.description.memoryHandover) {
            if (address.kind !== 'unix') throw new TsvirtError('ERR_MIGRATION_LOCAL', 'memory hand-over needs a unix: socket');
            // The memfds come as ancillary data, which Node's reads would drop: stop reading the stream, take them
            // with recvmsg, then read on. The source sends nothing else until it has our ACCEPT.
            socket!.pause();
            socket!.write(Buffer.concat(replies.accept()));
            stats.setupDoneAt = performance.now();
            status.transition('active');
            adoptHandedOverMemory();
            return;
          }
          socket!.write(Buffer.concat(replies.accept()));
          stats.setupDoneAt = performance.now();
          status.transition('active');
          return;
        }
        case 'pass-end':
          stats.dirtySyncCount = m.dirtySyncs;
          stats.passes++;
          if (multifd && !m.final) {
            unacked = m.pass;
            ackPass();
          }
          return;
        case 'end':
          socket!.write(Buffer.concat(replies.ready(reader.summary)));
          return;
        case 'run':
          // The point of no return was the source's RUN: from here the guest runs here.
          vm.afterIncoming();
          if (!ctx.startPaused) vm.resumeVcpus();
          vm.setRunState(ctx.startPaused ? 'paused' : 'running');
          socket!.write(Buffer.concat(replies.running()));
          stats.finishedAt = performance.now();
          status.transition('completed');
          done = true;
          socket!.end();
          // Every channel has ended by now; this only closes connections that were never channels.
          multifd?.destroy();
          resolve();
          return;
        case 'error':
          throw new TsvirtError('ERR_MIGRATION_PEER', `source reported: ${m.message}`);
        default:
          return;
      }
    };

    /** Tells the source a pass is complete here once every channel has delivered it (multifd). */
    const ackPass = () => {
      if (!unacked || done || multifd!.synced < unacked) return;
      socket!.write(Buffer.concat(replies.passAck(unacked)));
      unacked = 0;
    };

    /** Replays what arrived after the final pass once all RAM is in (multifd). */
    const releaseHeld = () => {
      const queue = held;
      held = undefined;
      if (!queue) return;
      try {
        for (const m of queue) {
          if (done) return;
          onMessage(m);
        }
      } catch (e) {
        fail(e);
      }
    };

    /** Waits (polling the socket, up to 10 s) for the source's memfds, then maps them in place of our own RAM. */
    const adoptHandedOverMemory = () => {
      const fd = socketFd(socket!)!;
      const deadline = Date.now() + 10000;
      const poll = () => {
        if (done) return;
        try {
          const got = receiveFds(fd, vm.ram.length);
          if (!got) {
            if (Date.now() > deadline) throw new TsvirtError('ERR_MIGRATION_LOCAL', 'the source did not hand its memory over within 10 s');
            setTimeout(poll, 1);
            return;
          }
          vm.adoptMemory(got.fds);
          socket!.resume();
        } catch (e) {
          fail(e);
        }
      };
      poll();
    };

    const reader = new StreamReader({ direction: 'stream', onMessage, ram: ramSink });

    socket = withDirectReads(
      accepted,
      () => {
        try {
          return reader.readBuffer();
        } catch (e) {
          fail(e);
          return new Uint8Array(65536);
        }
      },
      (n) => {
        if (done) return;
        stats.transferredBytes += n;
        try {
          reader.commit(n);
        } catch (e) {
          fail(e);
        }
      },
    );
    socket.on('end', () => {
      if (done) return;
      try {
        reader.finish();
        fail(new TsvirtError('ERR_MIGRATION_PEER', 'the source closed the connection before RUN'));
      } catch (e) {
        fail(e);
      }
    });
    socket.on('error', (e) => fail(new TsvirtError('ERR_MIGRATION_PEER', `connection error: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    socket.on('close', () => fail(new TsvirtError('ERR_MIGRATION_PEER', 'the connection closed before RUN')));
  });
}
