// Wire shapes shared by the CPU query commands.
import type { CpuTopologyId } from '../vm-api.js';

/** QEMU's CpuInstanceProperties for x86: socket, core and thread within the core. */
export function cpuProps(t: CpuTopologyId): { 'core-id': number; 'thread-id': number; 'socket-id': number } {
  return { 'core-id': t.coreId, 'thread-id': t.threadId, 'socket-id': t.socketId };
}
