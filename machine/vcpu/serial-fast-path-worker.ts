// The vCPU worker's side of the COM1 fast path: answers THR writes and LSR reads from shared memory, with no main-thread round trip.

import { FAST_PATH_ALLOWED, SerialRingWriter } from './serial-ring.js';

/** What a worker is given to take the fast path (part of VcpuWorkerData). */
export interface SerialFastPathChannel {
  /** The UART's base port (COM1: 0x3F8): THR is at +0, LSR at +5. */
  readonly port: number;
  /** The publication block (serial-ring.ts PUB), shared by all vCPUs. */
  readonly publication: SharedArrayBuffer;
  /** This vCPU's ring. */
  readonly ring: SharedArrayBuffer;
}

const THR = 0;
const LSR = 5;
const KVM_EXIT_IO_OUT = 1;

/** Decides, per port exit, whether the worker answers it itself. Allocation-free. */
export class SerialFastPathWorker {
  private readonly thr: number;
  private readonly lsr: number;
  private readonly writer: SerialRingWriter;

  constructor(channel: SerialFastPathChannel) {
    this.thr = channel.port + THR;
    this.lsr = channel.port + LSR;
    this.writer = new SerialRingWriter(channel.publication, channel.ring);
  }

  /**
   * Handles a KVM_EXIT_IO whose data is at `run[off..]` if it is a byte-wide THR write or LSR read the main thread
   * allows here; returns false to post it. (DLAB = 0 is part of what main publishes, so port +0 is THR.)
   */
  io(direction: number, port: number, size: number, count: number, run: Uint8Array, off: number): boolean {
    if (size !== 1) return false;
    if (direction === KVM_EXIT_IO_OUT) return port === this.thr && this.writer.write(run, off, count);
    if (port !== this.lsr || count !== 1) return false;
    const state = this.writer.state();
    if ((state & FAST_PATH_ALLOWED) === 0) return false;
    run[off] = state & 0xff;
    this.writer.countRead();
    return true;
  }
}
