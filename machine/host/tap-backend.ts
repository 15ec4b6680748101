// Adapts a Tap to virtio-net's NetBackend: adds/strips the virtio_net_hdr and pauses reading while the guest has no rx buffers.

import type { NetBackend } from '../../devices/virtio/net.js';
import { TAP_MAX_READ, TAP_VNET_HDR_SIZE, type Tap } from './tap.js';

/**
 * The device model offers no offloads, so every header it would send is all zeros and every header
 * the tap delivers carries nothing the guest negotiated: send prepends one shared zero header as
 * the first iovec (the frame pieces are guest-memory views, written in the same writev); receive
 * reads into one reusable buffer and hands the device the frame after the header, which the device
 * copies into the guest's rx buffers (it owns num_buffers). That is the only copy on each path.
 */
export class TapNetBackend implements NetBackend {
  private static readonly ZERO_HDR = new Uint8Array(TAP_VNET_HDR_SIZE);
  private readonly buf = new Uint8Array(TAP_MAX_READ);
  /** A frame read from the tap that the device could not take yet (bytes in `buf`). */
  private pending = 0;
  private deliver: ((frame: Uint8Array) => boolean) | undefined;
  /** Frames read and handed to the device, and frames the tap refused to take. */
  received = 0;
  sent = 0;

  constructor(readonly tap: Tap, private readonly log: (message: string) => void = () => {}) {}

  send(frame: Uint8Array[]): boolean {
    const ok = this.tap.writev([TapNetBackend.ZERO_HDR, ...frame]);
    if (ok) this.sent++;
    return ok;
  }

  onWritable(cb: () => void): void {
    this.tap.onWritable(cb);
  }

  /**
   * Starts moving frames from the tap to `deliver` (VirtioNet.receive). When it returns false the
   * frame is kept and reading stops until `resumeReceive` (wire it to VirtioNet.onRxBuffersAvailable).
   */
  startReceive(deliver: (frame: Uint8Array) => boolean): void {
    this.deliver = deliver;
    this.tap.onReadable(() => this.pump());
  }

  resumeReceive(): void {
    if (!this.deliver) return;
    this.tap.resumeReading();
    this.pump();
  }

  stopReceive(): void {
    this.deliver = undefined;
    this.tap.onReadable(undefined);
  }

  /** Hands frames over until the tap is empty or the device is full (bounded per call to stay fair to the loop). */
  private pump(): void {
    const deliver = this.deliver;
    if (!deliver) return;
    for (let budget = 256; budget > 0; budget--) {
      if (this.pending === 0) {
        let n: number;
        try {
          n = this.tap.read(this.buf);
        } catch (e) {
          this.log((e as Error).message);
          this.tap.pauseReading();
          return;
        }
        if (n === 0) return;
        if (n < TAP_VNET_HDR_SIZE) continue;
        this.pending = n;
      }
      if (!deliver(this.buf.subarray(TAP_VNET_HDR_SIZE, this.pending))) {
        this.tap.pauseReading();
        return;
      }
      this.pending = 0;
      this.received++;
    }
  }
}
