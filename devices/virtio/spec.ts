// Virtio 1.x constants every device and the transport share: device status bits, transport feature bits, device types.

/** Device status bits (virtio 1.2 §2.1). */
export const VIRTIO_STATUS_ACKNOWLEDGE = 0x01;
export const VIRTIO_STATUS_DRIVER = 0x02;
export const VIRTIO_STATUS_DRIVER_OK = 0x04;
export const VIRTIO_STATUS_FEATURES_OK = 0x08;
export const VIRTIO_STATUS_DEVICE_NEEDS_RESET = 0x40;
export const VIRTIO_STATUS_FAILED = 0x80;

/** Feature bits defined by the ring and transport (§6), as bit numbers. */
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

/** Device types (§5) and their modern PCI device ids (0x1040 + type). */
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;

/** `1n << bit` for a feature bit number. */
export function feature(bit: number): bigint {
  return 1n << BigInt(bit);
}

/** Whether `features` has `bit` set. */
export function hasFeature(features: bigint, bit: number): boolean {
  return (features & feature(bit)) !== 0n;
}
