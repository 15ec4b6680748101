// Builds (once) the project's bare-metal test guest with the machine's gcc and ld, and finds the Debian kernel.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, testGuestBuildScript, testGuestElf } from './paths.js';

let built = false;

/** Path of the test guest ELF, building it if needed (build.sh caches). */
export function testGuest(): string {
  if (!built) {
    execFileSync(testGuestBuildScript, { stdio: 'pipe' });
    built = true;
  }
  return testGuestElf;
}

/** Debian's decompressed vmlinux, when `make kernel` has fetched it. */
export function debianVmlinux(): string | undefined {
  const p = path.join(repoRoot, 'build', 'debian', 'vmlinux');
  return fs.existsSync(p) ? p : undefined;
}

export function debianBzImage(): string | undefined {
  const p = path.join(repoRoot, 'build', 'debian', 'bzImage');
  return fs.existsSync(p) ? p : undefined;
}
