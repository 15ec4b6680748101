// Writes into guest RAM that may cross region (KVM slot) boundaries, as kernel segments and initrds can.

import type { GuestMemory } from '../../devices/guest-memory.js';

/** Calls `visit` for each piece of [gpa, gpa+len) lying in one region; returns false at the first byte outside RAM. */
function eachPiece(mem: GuestMemory, gpa: number, len: number, visit?: (gpa: number, offset: number, len: number) => void): boolean {
  let cursor = gpa;
  const end = gpa + len;
  while (cursor < end) {
    const region = mem.regions.find((r) => cursor >= r.gpa && cursor < r.gpa + r.size);
    if (!region) return false;
    const pieceLen = Math.min(end, region.gpa + region.size) - cursor;
    visit?.(cursor, cursor - gpa, pieceLen);
    cursor += pieceLen;
  }
  return true;
}

/** True when every byte of [gpa, gpa+len) is guest RAM. */
export function isRam(mem: GuestMemory, gpa: number, len: number): boolean {
  if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0) return false;
  return eachPiece(mem, gpa, len);
}

/** Copies `data` to `gpa`, splitting it across regions; the caller has checked `isRam`. */
export function copyToRam(mem: GuestMemory, gpa: number, data: Uint8Array): void {
  eachPiece(mem, gpa, data.length, (at, offset, len) => mem.write(at, data.subarray(offset, offset + len)));
}

/** Zeroes [gpa, gpa+len), splitting it across regions; the caller has checked `isRam`. */
export function zeroRam(mem: GuestMemory, gpa: number, len: number): void {
  eachPiece(mem, gpa, len, (at, _offset, pieceLen) => mem.writableSlice(at, pieceLen).fill(0));
}
