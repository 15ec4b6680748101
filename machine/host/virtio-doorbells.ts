// One KVM ioeventfd per virtio-pci queue doorbell, following the notify BAR wherever the guest maps it.

import type { IoeventfdBinding, MsiRouter } from './msi-router.js';

/** What the doorbells need from a virtio-pci function (VirtioPciDevice has it all). */
export interface DoorbellDevice {
  readonly queues: readonly unknown[];
  /** Offset of queue `index`'s doorbell within the notify BAR. */
  notifyOffset(index: number): number;
  /** The driver kicked queue `index`. */
  notify(index: number): void;
}

/** Linux (vp_notify) writes the queue index as a 16-bit value; QEMU registers the same way. */
const DOORBELL_WRITE_SIZE = 2;

/**
 * Registers, for each queue, an ioeventfd matching a 2-byte write of the queue index at
 * BAR + notifyOffset(i), so a kick costs the vCPU no exit to userspace; the callback runs
 * `device.notify(i)` on the main loop. Other writes to the doorbell (another size or value) still
 * reach the device through the MMIO bus. Call `barMoved` from the BarChangeHandler for the notify BAR.
 */
export class VirtioDoorbells {
  private readonly bells: IoeventfdBinding[];

  constructor(router: MsiRouter, private readonly device: DoorbellDevice) {
    this.bells = [];
    try {
      for (let i = 0; i < device.queues.length; i++) {
        this.bells.push(router.ioeventfdNotify(null, DOORBELL_WRITE_SIZE, i, () => device.notify(i)));
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The notify BAR now decodes at `base` (null: it stopped decoding). */
  barMoved(base: bigint | null): void {
    this.bells.forEach((b, i) => b.move(base === null ? null : base + BigInt(this.device.notifyOffset(i))));
  }

  /** Where queue `index`'s doorbell is registered, if anywhere. */
  address(index: number): bigint | null {
    return this.bells[index]?.address ?? null;
  }

  close(): void {
    for (const b of this.bells.splice(0)) b.close();
  }
}
