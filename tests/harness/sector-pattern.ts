// The test guest's disk pattern (tests/guest/README.md): 64-bit word i of sector s = (seed * 0x100000001) XOR (s*64 + i).

const MASK = (1n << 64n) - 1n;

/** Fills `count` sectors starting at `first` with the pattern for `seed`. */
export function sectorPattern(seed: number, first: number, count: number): Buffer {
  const b = Buffer.alloc(count * 512);
  const base = (BigInt(seed) * 0x100000001n) & MASK;
  for (let s = 0; s < count; s++) {
    for (let i = 0; i < 64; i++) b.writeBigUInt64LE(base ^ BigInt((first + s) * 64 + i), s * 512 + i * 8);
  }
  return b;
}
