// The main thread's side of one vCPU: starts its worker, answers its exits, pauses, resumes and kicks it.

import { Worker } from 'node:worker_threads';
import { mmapShared, SIGUSR2, tgkill, view } from '../kvm/libc.js';
import type { VcpuFd } from '../kvm/vcpu.js';
import { DATA_OFFSET, MAILBOX_BYTES, MSG, REQUEST, SLOT, type VcpuWorkerData } from './protocol.js';
import type { SerialFastPath } from './serial-fast-path.js';
import type { FastPathCounts, SerialRingReader } from './serial-ring.js';

// Without a listener, SIGUSR2 (the kick) would terminate the process.
process.on('SIGUSR2', () => {});

/** What the machine does with a vCPU's exits; called on the main thread. */
export interface VcpuExitHandler {
  pioRead(port: number, data: Uint8Array): void;
  pioWrite(port: number, data: Uint8Array): void;
  mmioRead(addr: number, data: Uint8Array): void;
  mmioWrite(addr: number, data: Uint8Array): void;
  /** The guest asked to power off. */
  shutdown(vcpu: number): void;
  /** The guest asked to reset, or triple-faulted. */
  reset(vcpu: number): void;
  /** KVM could not run the vCPU; `reason` is the exit reason (0 for an ioctl error), `detail` its sub-code or errno. */
  failed(vcpu: number, reason: number, detail: number): void;
}

type Waiter = () => void;

/** Exits of one vCPU since it started: those posted to the main thread, and those its worker answered itself. */
export interface VcpuExitCounts {
  readonly pio: number;
  readonly mmio: number;
  /** COM1 fast path (zeros without one). */
  readonly serial: FastPathCounts;
}

/** One vCPU's worker thread, seen from the main thread. */
export class VcpuHandle {
  private readonly mailbox = new SharedArrayBuffer(MAILBOX_BYTES);
  private readonly ctl = new Int32Array(this.mailbox, 0, DATA_OFFSET / 4);
  private readonly data = new Uint8Array(this.mailbox, DATA_OFFSET);
  private readonly runBytes: Uint8Array;
  private worker?: Worker;
  private lastSeq = 0;
  private pauseWaiters: Waiter[] = [];
  private stopWaiters: Waiter[] = [];
  private paused = true;
  private stopped = false;
  private serialReader?: SerialRingReader;
  private pioExits = 0;
  private mmioExits = 0;
  /** Host thread id of the worker (for query-cpus-fast and for kicking). */
  threadId = 0;

  constructor(
    readonly fd: VcpuFd,
    readonly index: number,
    private readonly mmapSize: number,
    private readonly exits: VcpuExitHandler,
    /** COM1's fast path, when the worker may answer THR writes and LSR reads itself. */
    private readonly serial?: SerialFastPath,
  ) {
    this.runBytes = new Uint8Array(view(mmapShared(fd.fd, mmapSize), mmapSize));
    // Workers start parked: the machine resumes them once every vCPU is set up.
    this.ctl[SLOT.REQUEST] = REQUEST.PAUSE;
  }

  /** Starts the worker; resolves once it is parked and its thread id is known. */
  async start(): Promise<void> {
    const fastPath = this.serial?.attach();
    this.serialReader = fastPath?.reader;
    const workerData: VcpuWorkerData = { vcpuFd: this.fd.fd, index: this.index, mmapSize: this.mmapSize, mailbox: this.mailbox, serial: fastPath?.channel };
    const parked = new Promise<void>((resolve) => this.pauseWaiters.push(resolve));
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData, name: `vcpu${this.index}` });
    this.worker.on('error', () => this.exits.failed(this.index, -1, 0));
    this.worker.on('exit', () => {
      this.stopped = true;
      this.closeSerial();
      for (const w of this.stopWaiters.splice(0)) w();
      for (const w of this.pauseWaiters.splice(0)) w();
    });
    void this.serve();
    if (this.serial && this.serialReader) void this.watchSerialRing(this.serial, this.serialReader);
    await parked;
  }

  /** Exits since start, slow and fast (the fast-path counters are the worker's, read without stopping it). */
  exitCounts(): VcpuExitCounts {
    const serial = this.serialReader?.counts() ?? { thrWrites: 0, lsrReads: 0, ringFull: 0 };
    return { pio: this.pioExits, mmio: this.mmioExits, serial };
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Asks the vCPU to leave KVM_RUN and park; resolves when it has (its state is then readable and writable). */
  pause(): Promise<void> {
    if (this.stopped || (this.paused && Atomics.load(this.ctl, SLOT.REQUEST) === REQUEST.PAUSE)) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.pauseWaiters.push(resolve));
    Atomics.store(this.ctl, SLOT.REQUEST, REQUEST.PAUSE);
    this.kick();
    return done;
  }

  /** Lets a parked vCPU run again. */
  resume(): void {
    // A pause in flight wins: resuming under it would leave its caller waiting for a PAUSED that never comes.
    if (this.stopped || this.pauseWaiters.length > 0) return;
    this.runBytes[1] = 0; // clear immediate_exit set by the kick
    this.paused = false;
    Atomics.store(this.ctl, SLOT.REQUEST, REQUEST.RUN);
    this.wake();
  }

  /** Wakes a parked worker: it leaves the park, reads REQUEST again and, if that is PAUSE again, re-posts PAUSED. */
  private wake(): void {
    Atomics.add(this.ctl, SLOT.WAKE_GEN, 1);
    Atomics.notify(this.ctl, SLOT.WAKE_GEN);
  }

  /** Ends the worker thread. */
  stop(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.stopWaiters.push(resolve));
    Atomics.store(this.ctl, SLOT.REQUEST, REQUEST.STOP);
    this.wake();
    this.kick();
    return done;
  }

  /** Makes KVM_RUN return: immediate_exit covers a worker about to enter it, the signal one already inside. */
  private kick(): void {
    this.runBytes[1] = 1;
    if (this.threadId) tgkill(this.threadId, SIGUSR2);
  }

  /** Answers the worker's messages until it stops. */
  private async serve(): Promise<void> {
    while (!this.stopped) {
      const w = Atomics.waitAsync(this.ctl, SLOT.MSG_SEQ, this.lastSeq);
      if (w.async) await w.value;
      const seq = Atomics.load(this.ctl, SLOT.MSG_SEQ);
      if (seq === this.lastSeq) continue;
      this.lastSeq = seq;
      try {
        // Bytes the worker put in the serial ring before this exit reach the UART before the exit is handled (also
        // before a PAUSED resolves pause(), so device state saved after a pause has every byte).
        this.serial?.drain();
        this.handle(this.ctl[SLOT.KIND]);
      } finally {
        Atomics.store(this.ctl, SLOT.ANSWER_SEQ, seq);
        Atomics.notify(this.ctl, SLOT.ANSWER_SEQ);
      }
    }
  }

  private handle(kind: number): void {
    const ctl = this.ctl;
    switch (kind) {
      case MSG.IO_OUT:
      case MSG.IO_IN: {
        const port = ctl[SLOT.ADDR_LO];
        const size = ctl[SLOT.SIZE];
        const count = ctl[SLOT.COUNT];
        this.pioExits++;
        for (let i = 0; i < count; i++) {
          const chunk = this.data.subarray(i * size, (i + 1) * size);
          if (kind === MSG.IO_OUT) this.exits.pioWrite(port, chunk);
          else this.exits.pioRead(port, chunk);
        }
        return;
      }
      case MSG.MMIO_READ:
      case MSG.MMIO_WRITE: {
        const addr = (ctl[SLOT.ADDR_HI] >>> 0) * 0x1_0000_0000 + (ctl[SLOT.ADDR_LO] >>> 0);
        const chunk = this.data.subarray(0, ctl[SLOT.SIZE]);
        this.mmioExits++;
        if (kind === MSG.MMIO_WRITE) this.exits.mmioWrite(addr, chunk);
        else this.exits.mmioRead(addr, chunk);
        return;
      }
      case MSG.READY:
        this.threadId = ctl[SLOT.ARG];
        return;
      case MSG.PAUSED:
        this.paused = true;
        for (const w of this.pauseWaiters.splice(0)) w();
        return;
      case MSG.STOPPED:
        this.stopped = true;
        this.closeSerial();
        return;
      case MSG.SHUTDOWN:
      case MSG.RESET:
      case MSG.FAILED:
        // The vCPU parks after this message; the machine decides what happens next.
        Atomics.store(ctl, SLOT.REQUEST, REQUEST.PAUSE);
        if (kind === MSG.SHUTDOWN) this.exits.shutdown(this.index);
        else if (kind === MSG.RESET) this.exits.reset(this.index);
        else this.exits.failed(this.index, ctl[SLOT.ARG], ctl[SLOT.ARG2]);
        return;
    }
  }

  /** Feeds the serial ring to the UART whenever the worker reports it non-empty, until the worker is gone. */
  private async watchSerialRing(serial: SerialFastPath, reader: SerialRingReader): Promise<void> {
    const { ctl, index } = reader.wakeSlot;
    let seen = Atomics.load(ctl, index);
    while (!this.stopped) {
      const w = Atomics.waitAsync(ctl, index, seen);
      if (w.async) await w.value;
      seen = Atomics.load(ctl, index);
      serial.drain();
    }
  }

  /** The worker is gone: take its last bytes and stop waiting for more. */
  private closeSerial(): void {
    if (!this.serial || !this.serialReader) return;
    this.serial.drain();
    this.serial.detach(this.serialReader);
    this.serialReader.interrupt();
  }
}
