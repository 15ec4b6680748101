// The contract between a virtio device model (block, net) and the transport that presents it to the guest.

import type { Virtqueue } from './queue.js';

/** How a device model reaches the driver; the transport picks MSI-X vectors or ISR + INTx. */
export interface VirtioInterrupt {
  /** Queue `index` has used entries (call after `needsNotification()` said the driver wants one). */
  signalQueue(index: number): void;
  /** The device configuration changed (net status, capacity); bumps config_generation. */
  signalConfig(): void;
  /**
   * The driver broke the protocol (a VirtqueueError, usually): the transport sets
   * DEVICE_NEEDS_RESET, halts the queues and raises a configuration-change interrupt. The device
   * should stop touching its queues until reset.
   */
  deviceError(error: Error): void;
}

/**
 * A virtio device behind any transport. Host resources (guest memory, backends) are constructor
 * arguments; nothing here depends on PCI.
 */
export interface VirtioDevice {
  /** Virtio device id (1 net, 2 block). */
  readonly deviceType: number;
  /** Maximum size of each queue; the length is the number of queues. */
  readonly queueSizes: readonly number[];
  /** Feature bits offered, VIRTIO_F_VERSION_1 included. */
  readonly features: bigint;
  /** Bytes of device-specific configuration space. */
  readonly configSize: number;
  /** A driver read of the device configuration (offset within it). */
  readConfig(offset: number, data: Uint8Array): void;
  /** A driver write of the device configuration. */
  writeConfig(offset: number, data: Uint8Array): void;
  /**
   * The driver set DRIVER_OK: `queues` are live (those the driver enabled) and `features` is what
   * was negotiated. May throw a VirtqueueError, which the transport turns into NEEDS_RESET.
   */
  activate(queues: readonly Virtqueue[], interrupt: VirtioInterrupt, features: bigint): void;
  /** The driver notified queue `index` (an ioeventfd or a notify-region write). May throw VirtqueueError. */
  queueNotify(index: number): void;
  /** Back to the state before activation (the driver wrote 0 to device_status, or the machine reset). */
  reset(): void;
  /**
   * Requests started before the last `reset` that may still write guest memory (block reads run on
   * the threadpool straight into guest RAM). The transport keeps device_status non-zero until 0.
   */
  readonly inflightCount?: number;
  /** Resolves once `inflightCount` is 0. */
  drain?(): Promise<void>;
  /** The device's own migration section (queues and transport state are saved by the transport). */
  saveState(): unknown;
  /** Loads a section; the transport calls `activate` afterwards if the driver had. */
  restoreState(state: unknown): void;
}
