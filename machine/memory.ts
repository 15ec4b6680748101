// Allocates guest RAM: one memfd per q35 range (at most 1 GiB), mapped shared and registered as a KVM slot.

import { GuestMemory } from '../devices/guest-memory.js';
import { ramRanges, type RamRange } from './layout.js';
import { addressOf, closeFd, memfdCreate, mmapShared, munmap, view, type NativePointer } from './kvm/libc.js';
import type { VmFd } from './kvm/vm.js';
import { MEM_LOG_DIRTY_PAGES } from './kvm/ioctls.js';

/** One RAM range and the host resources behind it; the memfd is kept so a later issue can hand it to another process. */
export interface RamBacking {
  readonly range: RamRange;
  readonly slot: number;
  readonly fd: number;
  readonly pointer: NativePointer;
  readonly hostAddress: bigint;
  readonly bytes: Uint8Array;
}

/** Guest RAM with its backings. */
export interface Ram {
  readonly memory: GuestMemory;
  readonly backings: readonly RamBacking[];
}

/** Creates, maps and registers all RAM of a `memSize`-byte q35 guest. */
export function allocateRam(vm: VmFd, memSize: number): Ram {
  const backings: RamBacking[] = [];
  try {
    ramRanges(memSize).forEach((range, slot) => {
      const fd = memfdCreate(`tsvirt-ram${slot}`, range.size);
      const pointer = mmapShared(fd, range.size);
      const hostAddress = addressOf(pointer);
      const bytes = new Uint8Array(view(pointer, range.size));
      backings.push({ range, slot, fd, pointer, hostAddress, bytes });
      vm.setUserMemoryRegion(slot, 0, range.gpa, range.size, hostAddress);
    });
  } catch (e) {
    freeRam(backings);
    throw e;
  }
  const memory = new GuestMemory(backings.map((b) => ({ gpa: b.range.gpa, size: b.range.size, bytes: b.bytes })));
  return { memory, backings };
}

/** Turns KVM's dirty-page logging on or off for every slot. */
export function setDirtyLogging(vm: VmFd, ram: Ram, on: boolean): void {
  for (const b of ram.backings) vm.setUserMemoryRegion(b.slot, on ? MEM_LOG_DIRTY_PAGES : 0, b.range.gpa, b.range.size, b.hostAddress);
}

export function freeRam(backings: readonly RamBacking[]): void {
  for (const b of backings) {
    munmap(b.pointer, b.range.size);
    closeFd(b.fd);
  }
}
