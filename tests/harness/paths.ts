// Where things are: the repository root, the built tsvirt entry point, the test guest.

import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is compiled to dist/tests/harness/). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const tsvirtMain = path.join(repoRoot, 'dist', 'machine', 'main.js');
export const testGuestElf = path.join(repoRoot, 'build', 'guest', 'tsvirt-test-guest.elf');
export const testGuestBuildScript = path.join(repoRoot, 'tests', 'guest', 'build.sh');
