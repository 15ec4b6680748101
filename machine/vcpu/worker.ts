// The vCPU thread: runs KVM_RUN in a loop and hands port and MMIO exits to the main thread through the mailbox (COM1's hot accesses excepted).

import { workerData } from 'node:worker_threads';
import koffi from 'koffi';
import { EXIT, KVM, SYSTEM_EVENT } from '../kvm/ioctls.js';
import { gettid, ioctlVal, mmapShared, view } from '../kvm/libc.js';
import { DATA_OFFSET, MSG, REQUEST, SLOT, type VcpuWorkerData } from './protocol.js';
import { SerialFastPathWorker } from './serial-fast-path-worker.js';

const EINTR = koffi.os.errno.EINTR as number;
const EAGAIN = koffi.os.errno.EAGAIN as number;

const { vcpuFd, mmapSize, mailbox, serial: serialChannel } = workerData as VcpuWorkerData;
const ctl = new Int32Array(mailbox, 0, DATA_OFFSET / 4);
const data = new Uint8Array(mailbox, DATA_OFFSET);
const runBytes = new Uint8Array(view(mmapShared(vcpuFd, mmapSize), mmapSize));
const run = new DataView(runBytes.buffer);
const KVM_RUN = KVM.RUN;
const serial = serialChannel ? new SerialFastPathWorker(serialChannel) : undefined;

let seq = 0;

/** Posts a message and blocks until the main thread has answered it. */
function post(kind: number): void {
  ctl[SLOT.KIND] = kind;
  seq = (seq + 1) | 0;
  Atomics.store(ctl, SLOT.MSG_SEQ, seq);
  Atomics.notify(ctl, SLOT.MSG_SEQ);
  while (Atomics.load(ctl, SLOT.ANSWER_SEQ) !== seq) Atomics.wait(ctl, SLOT.ANSWER_SEQ, Atomics.load(ctl, SLOT.ANSWER_SEQ));
}

function fail(reason: number, detail: number): void {
  ctl[SLOT.ARG] = reason;
  ctl[SLOT.ARG2] = detail;
  post(MSG.FAILED);
}

ctl[SLOT.ARG] = gettid();
post(MSG.READY);

// An I/O or MMIO exit is only complete (RIP advanced, IN data in RAX) after the next KVM_RUN; pausing must do that first.
let pendingCompletion = false;

for (;;) {
  // Read before REQUEST: a resume() (REQUEST = RUN, then WAKE_GEN + 1) after this point always changes WAKE_GEN.
  const gen = Atomics.load(ctl, SLOT.WAKE_GEN);
  const request = Atomics.load(ctl, SLOT.REQUEST);
  if (request === REQUEST.STOP) break;
  if (request === REQUEST.PAUSE) {
    if (pendingCompletion) {
      runBytes[1] = 1; // immediate_exit: KVM completes the access and returns EINTR without running guest code
      ioctlVal(vcpuFd, KVM_RUN, 0);
      pendingCompletion = false;
    }
    post(MSG.PAUSED);
    // Park until the main thread resumes (or stops) this vCPU. Waiting for REQUEST to leave PAUSE would lose a resume
    // followed at once by a new pause: that pause would never be answered with PAUSED.
    while (Atomics.load(ctl, SLOT.WAKE_GEN) === gen) Atomics.wait(ctl, SLOT.WAKE_GEN, gen);
    continue;
  }
  const r = ioctlVal(vcpuFd, KVM_RUN, 0);
  pendingCompletion = false;
  if (r < 0) {
    if (-r === EINTR || -r === EAGAIN) continue;
    fail(0, -r);
    continue;
  }
  const reason = run.getUint32(8, true);
  switch (reason) {
    case EXIT.IO: {
      const dir = runBytes[32];
      const size = runBytes[33];
      const port = run.getUint16(34, true);
      const count = run.getUint32(36, true);
      const off = run.getUint32(40, true); // data_offset is a u64 but lies inside the kvm_run mapping; no BigInt per exit
      // COM1's THR writes and LSR reads, while the main thread allows it: answered here, completed by the next KVM_RUN.
      if (serial !== undefined && serial.io(dir, port, size, count, runBytes, off)) {
        pendingCompletion = true;
        break;
      }
      const bytes = size * count;
      ctl[SLOT.ADDR_LO] = port;
      ctl[SLOT.SIZE] = size;
      ctl[SLOT.COUNT] = count;
      if (dir === 1) {
        data.set(runBytes.subarray(off, off + bytes));
        post(MSG.IO_OUT);
      } else {
        post(MSG.IO_IN);
        runBytes.set(data.subarray(0, bytes), off);
      }
      pendingCompletion = true;
      break;
    }
    case EXIT.MMIO: {
      const addr = run.getBigUint64(32, true);
      const len = run.getUint32(48, true);
      ctl[SLOT.ADDR_LO] = Number(addr & 0xffffffffn) | 0;
      ctl[SLOT.ADDR_HI] = Number(addr >> 32n) | 0;
      ctl[SLOT.SIZE] = len;
      ctl[SLOT.COUNT] = 1;
      if (runBytes[52]) {
        data.set(runBytes.subarray(40, 40 + len));
        post(MSG.MMIO_WRITE);
      } else {
        post(MSG.MMIO_READ);
        runBytes.set(data.subarray(0, len), 40);
      }
      pendingCompletion = true;
      break;
    }
    case EXIT.INTR:
      break;
    case EXIT.SHUTDOWN:
      post(MSG.RESET);
      break;
    case EXIT.SYSTEM_EVENT: {
      const type = run.getUint32(32, true);
      post(type === SYSTEM_EVENT.RESET ? MSG.RESET : MSG.SHUTDOWN);
      break;
    }
    case EXIT.INTERNAL_ERROR:
      fail(EXIT.INTERNAL_ERROR, run.getUint32(32, true));
      break;
    case EXIT.FAIL_ENTRY:
      fail(EXIT.FAIL_ENTRY, Number(run.getBigUint64(32, true) & 0x7fffffffn));
      break;
    default:
      fail(reason, 0);
  }
}
post(MSG.STOPPED);
