// Byte-range helpers over a chain's guest buffers: carve out a sub-range, copy out of or into guest memory.

import type { GuestMemory } from '../guest-memory.js';
import type { GuestBuffer } from './queue.js';

/** The buffers covering bytes [start, start + len) of the concatenation of `buffers` (clipped at its end). */
export function carve(buffers: readonly GuestBuffer[], start: number, len = Infinity): GuestBuffer[] {
  const out: GuestBuffer[] = [];
  let skip = start;
  let left = len;
  for (const b of buffers) {
    if (left <= 0) break;
    if (skip >= b.len) {
      skip -= b.len;
      continue;
    }
    const n = Math.min(b.len - skip, left);
    out.push({ gpa: b.gpa + skip, len: n });
    left -= n;
    skip = 0;
  }
  return out;
}

/** Total length of `buffers`. */
export function totalLength(buffers: readonly GuestBuffer[]): number {
  return buffers.reduce((n, b) => n + b.len, 0);
}

/** Copies up to `len` bytes out of guest memory (for headers the device must read once and keep). */
export function copyFromGuest(memory: GuestMemory, buffers: readonly GuestBuffer[], len: number): Uint8Array {
  const out = new Uint8Array(Math.min(len, totalLength(buffers)));
  let at = 0;
  for (const b of carve(buffers, 0, out.length)) {
    out.set(memory.slice(b.gpa, b.len), at);
    at += b.len;
  }
  return out;
}

/** Copies `bytes` into the buffers (through GuestMemory, so the pages are marked dirty); returns bytes written. */
export function copyToGuest(memory: GuestMemory, buffers: readonly GuestBuffer[], bytes: Uint8Array): number {
  let at = 0;
  for (const b of carve(buffers, 0, bytes.length)) {
    memory.write(b.gpa, bytes.subarray(at, at + b.len));
    at += b.len;
  }
  return at;
}
