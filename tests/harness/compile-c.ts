// Compiles and runs a small C program at test time (for checks against installed headers); cached by content hash.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './paths.js';

/** Compiles `source` with the machine's gcc and returns what the program prints. */
export function runC(name: string, source: string): string {
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const dir = path.join(repoRoot, 'build', 'c');
  fs.mkdirSync(dir, { recursive: true });
  const exe = path.join(dir, `${name}-${hash}`);
  if (!fs.existsSync(exe)) {
    const src = `${exe}.c`;
    fs.writeFileSync(src, source);
    execFileSync('gcc', ['-O0', '-o', exe, src], { stdio: 'pipe' });
  }
  return execFileSync(exe, { encoding: 'utf8' });
}
