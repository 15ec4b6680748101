// The shared-memory mailbox between a vCPU worker and the main thread: slot indices and message kinds.

import type { SerialFastPathChannel } from './serial-fast-path-worker.js';

/** Int32 slots at the start of the mailbox SharedArrayBuffer. */
export const SLOT = {
  /** main -> worker: what the vCPU should do (REQUEST). */
  REQUEST: 0,
  /** worker -> main: incremented for each message posted. */
  MSG_SEQ: 1,
  /** main -> worker: set to MSG_SEQ once the message is answered. */
  ANSWER_SEQ: 2,
  /** The message kind (MSG). */
  KIND: 3,
  /** Port number, or MMIO address low 32 bits. */
  ADDR_LO: 4,
  /** MMIO address high 32 bits. */
  ADDR_HI: 5,
  /** Access size in bytes. */
  SIZE: 6,
  /** Repetitions of a string I/O instruction (rep ins/outs). */
  COUNT: 7,
  /** Extra argument: thread id for READY, error codes for failures. */
  ARG: 8,
  ARG2: 9,
  /** main -> worker: incremented by every resume() and stop(), so a parked worker sees each one even if a new PAUSE follows at once. */
  WAKE_GEN: 10,
} as const;

/** Byte offset of the data area (I/O and MMIO payloads) in the mailbox. */
export const DATA_OFFSET = 64;
/** A string I/O exit carries at most one page of data. */
export const DATA_SIZE = 4096;
export const MAILBOX_BYTES = DATA_OFFSET + DATA_SIZE;

/** Values of SLOT.REQUEST. */
export const REQUEST = { RUN: 0, PAUSE: 1, STOP: 2 } as const;

/** Values of SLOT.KIND. */
export const MSG = {
  READY: 1,
  PAUSED: 2,
  STOPPED: 3,
  IO_IN: 4,
  IO_OUT: 5,
  MMIO_READ: 6,
  MMIO_WRITE: 7,
  /** The guest asked for power-off (KVM system event). */
  SHUTDOWN: 8,
  /** The guest asked for a reset (KVM system event) or triple-faulted. */
  RESET: 9,
  /** KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_FAIL_ENTRY, an unknown exit or a KVM_RUN error. */
  FAILED: 10,
} as const;

/** What a vCPU worker is told at start. */
export interface VcpuWorkerData {
  readonly vcpuFd: number;
  readonly index: number;
  readonly mmapSize: number;
  readonly mailbox: SharedArrayBuffer;
  /** Present when the worker may answer COM1's THR writes and LSR reads itself (serial-fast-path-worker.ts). */
  readonly serial?: SerialFastPathChannel;
}
