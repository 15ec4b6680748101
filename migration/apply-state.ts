// Loads the state sections of a stream into a VM: shared by live migration's destination and snapshot restore.

import { TsvirtError } from '../machine/errors.js';
import type { StreamMessage } from './format.js';
import type { MigratableVm } from './vm-port.js';

/**
 * Applies a VCPU_STATE, IRQCHIP, PIT, CLOCK or DEVICE_STATE message; returns false for any other message.
 * `advanceClock` lets kvmclock move on by the time the state spent in flight (live migration), or keeps the saved
 * time (a snapshot restored hours later must not jump its guest forward by hours).
 */
export function applyStateMessage(vm: MigratableVm, m: StreamMessage, advanceClock: boolean): boolean {
  switch (m.type) {
    case 'vcpu':
      vm.restoreVcpu(m.index, m.blobs);
      return true;
    case 'irqchip':
      vm.restoreIrqchip(m.blobs);
      return true;
    case 'pit':
      vm.restorePit(m.blobs);
      return true;
    case 'clock':
      vm.restoreClock(m.blobs, advanceClock);
      return true;
    case 'device':
      if (m.encoding !== 'json') throw new TsvirtError('ERR_MIGRATION_DEVICE', `device ${m.id}: binary state is not supported`);
      vm.restoreDevice({ id: m.id, version: m.version, state: m.state });
      return true;
    default:
      return false;
  }
}
