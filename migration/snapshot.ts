// Snapshots: `migrate` to file:PATH saves the VM (stopped for the save) and `-incoming file:PATH` restores it.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { TsvirtError } from '../machine/errors.js';
import { applyStateMessage } from './apply-state.js';
import { compareVms } from './compat.js';
import { MigrationCompatError } from './errors.js';
import { planRamBatches } from './ram.js';
import { StreamReader } from './reader.js';
import type { MigrationStats } from './stats.js';
import type { MigrationStatus } from './status.js';
import type { MigratableVm } from './vm-port.js';
import { StreamWriter } from './writer.js';

/**
 * A snapshot file is a migration stream (header, CONFIG, RAM, state, END, RUN) followed by this trailer magic and
 * the SHA-256 of everything before it, so any corruption, page data included, is refused before the guest starts.
 */
const TRAILER_MAGIC = Buffer.from('TSVSNAP1');
const TRAILER_SIZE = TRAILER_MAGIC.length + 32;
const READ_CHUNK = 8 * 1024 * 1024;

/** A snapshot file that cannot be restored. */
export class SnapshotError extends TsvirtError {
  constructor(path: string, why: string) {
    super('ERR_SNAPSHOT', `snapshot ${path}: ${why}`);
  }
}

export interface SnapshotContext {
  readonly vm: MigratableVm;
  readonly status: MigrationStatus;
  readonly stats: MigrationStats;
  log(message: string): void;
}

/** Saves the VM to `path`: pauses it, writes the stream and digest to a temporary file, renames it into place. */
export async function runSave(ctx: SnapshotContext, path: string): Promise<void> {
  const { vm, status, stats } = ctx;
  const wasRunning = vm.isRunning();
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    status.transition('active');
    vm.setRunState('finish-migrate');
    await vm.pauseVcpus();
    vm.quiesceDevices();
    await vm.drainDevices();
    stats.setupDoneAt = performance.now();
    fd = fs.openSync(tmp, 'w', 0o600);
    const hash = createHash('sha256');
    const write = (chunks: Uint8Array[]) => {
      for (const c of chunks) {
        hash.update(c);
        fs.writeSync(fd!, c);
        stats.transferredBytes += c.length;
      }
    };
    const w = new StreamWriter();
    write([...w.header(vm.cpuVendor()), ...w.config(vm.description())]);
    vm.ram.forEach((region, r) => {
      for (const batch of planRamBatches(region.bytes, vm.populatedPages(r))) {
        stats.normalPages += batch.normalPages;
        stats.zeroPages += batch.zeroPages;
        write(w.ramPages(r, region.bytes, batch.runs));
      }
    });
    write(w.passEnd(1, true));
    for (let i = 0; i < vm.vcpuCount; i++) write(w.vcpu(i, vm.saveVcpu(i)));
    write([...w.irqchip(vm.saveIrqchip()), ...w.pit(vm.savePit())]);
    for (const d of vm.saveDevices()) write(w.deviceJson(d.id, d.version, d.state));
    write([...w.clock(vm.saveClock()), ...w.end(), ...w.run()]);
    fs.writeSync(fd, TRAILER_MAGIC);
    fs.writeSync(fd, hash.digest());
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, path);
    stats.finishedAt = performance.now();
    status.transition('completed');
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    stats.finishedAt = performance.now();
    status.fail(`saving to ${path}: ${(e as Error).message}`);
    throw e;
  } finally {
    // A snapshot is a copy, not a move: the VM carries on as it was.
    vm.unquiesceDevices();
    if (wasRunning) vm.resumeVcpus();
    vm.setRunState(wasRunning ? 'running' : 'paused');
  }
}

/** Checks the trailer; returns the stream size and the digest the stream must have. */
function readTrailer(path: string, fd: number, size: number): { streamSize: number; digest: Buffer } {
  if (size < TRAILER_SIZE) throw new SnapshotError(path, `is truncated (${size} bytes)`);
  const trailer = Buffer.alloc(TRAILER_SIZE);
  fs.readSync(fd, trailer, 0, TRAILER_SIZE, size - TRAILER_SIZE);
  if (!trailer.subarray(0, TRAILER_MAGIC.length).equals(TRAILER_MAGIC)) {
    throw new SnapshotError(path, 'has no snapshot trailer: it is truncated or not a tsvirt snapshot');
  }
  return { streamSize: size - TRAILER_SIZE, digest: trailer.subarray(TRAILER_MAGIC.length) };
}

/** Hashes the stream from `pos` to `end` into `hash` (the rest of a stream whose parsing failed). */
function hashRest(path: string, fd: number, hash: ReturnType<typeof createHash>, pos: number, end: number): void {
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  while (pos < end) {
    const n = fs.readSync(fd, buf, 0, Math.min(READ_CHUNK, end - pos), pos);
    if (n <= 0) throw new SnapshotError(path, 'could not be read to the end');
    hash.update(buf.subarray(0, n));
    pos += n;
  }
}

/**
 * Restores a snapshot into this (not yet running) VM. Everything is checked (digest, format version, configuration)
 * before the guest runs; the file is read straight into guest memory.
 */
export async function runRestore(ctx: SnapshotContext & { startPaused: boolean }, path: string): Promise<void> {
  const { vm, status, stats } = ctx;
  stats.startedAt = performance.now();
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new SnapshotError(path, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message);
  }
  try {
    // One pass: the file is hashed as it is read into guest memory, and the digest is checked before the guest runs. A
    // damaged file may fail to parse first; the rest is then hashed so a corruption is still reported as one.
    const { streamSize, digest } = readTrailer(path, fd, fs.fstatSync(fd).size);
    const hash = createHash('sha256');
    let header: { arch: string; vendor: string } | undefined;
    let ran = false;
    const reader = new StreamReader({
      direction: 'stream',
      ram: {
        target: (region, offset, length) => {
          stats.normalPages += length >>> 12;
          return vm.ram[region].bytes.subarray(offset, offset + length);
        },
        // The restoring VM's memory is fresh from memfd_create (it never ran) and a snapshot carries each page once:
        // zero pages are already zero, and writing zeros would only allocate them.
        zero: (_region, _offset, length) => {
          stats.zeroPages += length >>> 12;
        },
      },
      onMessage: (m) => {
        if (applyStateMessage(vm, m, false)) return;
        if (m.type === 'header') {
          header = m.header;
          status.transition('setup');
        } else if (m.type === 'config') {
          const mismatches = compareVms({ ...header!, description: m.description }, { arch: 'x86_64', vendor: vm.cpuVendor(), description: vm.description() });
          if (mismatches.length) throw new MigrationCompatError(mismatches);
          status.transition('active');
        } else if (m.type === 'run') {
          ran = true;
        }
      },
    });
    const corrupted = () => new SnapshotError(path, 'is corrupted (its SHA-256 does not match)');
    for (let pos = 0; pos < streamSize; ) {
      const into = reader.readBuffer();
      const want = Math.min(into.length, streamSize - pos);
      const n = fs.readSync(fd, into, 0, want, pos);
      if (n <= 0) throw new SnapshotError(path, 'could not be read to the end');
      hash.update(into.subarray(0, n));
      stats.transferredBytes += n;
      pos += n;
      try {
        reader.commit(n);
      } catch (e) {
        hashRest(path, fd, hash, pos, streamSize);
        if (!hash.digest().equals(digest)) throw corrupted();
        throw e;
      }
    }
    if (!hash.digest().equals(digest)) throw corrupted();
    reader.finish();
    if (!ran) throw new SnapshotError(path, 'ends before the guest state is complete');
    vm.afterIncoming();
    if (!ctx.startPaused) vm.resumeVcpus();
    vm.setRunState(ctx.startPaused ? 'paused' : 'running');
    stats.finishedAt = performance.now();
    status.transition('completed');
  } catch (e) {
    if (status.can('failed')) status.fail((e as Error).message);
    throw e;
  } finally {
    fs.closeSync(fd);
  }
}
