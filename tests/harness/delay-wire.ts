// Starts wire-delay.c, the process that carries frames between two veth ends with a fixed one-way delay (this kernel has no netem).

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './paths.js';

const source = path.join(repoRoot, 'tests', 'harness', 'wire-delay.c');

/** Parses a tc-style time (`1ms`, `500us`, `0.5ms`, `1s`; a bare number is microseconds, as tc reads it) into microseconds. */
export function parseDelayUs(delay: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|sec|ms|msec|us|usec)?$/.exec(delay.trim());
  if (!m) throw new Error(`delay ${JSON.stringify(delay)} is not a time such as 1ms or 500us`);
  const scale = { s: 1e6, sec: 1e6, ms: 1e3, msec: 1e3, us: 1, usec: 1 }[m[2] ?? 'us']!;
  return Math.round(Number(m[1]) * scale);
}

/** The wire-delay executable, compiled with gcc on first use and cached in build/c by source hash. */
function wireDelayExe(): string {
  const text = fs.readFileSync(source);
  const exe = path.join(repoRoot, 'build', 'c', `wire-delay-${createHash('sha256').update(text).digest('hex').slice(0, 12)}`);
  if (!fs.existsSync(exe)) {
    fs.mkdirSync(path.dirname(exe), { recursive: true });
    // Compiled under a private name and renamed, so two test processes never run a half-written file.
    const tmp = `${exe}.${process.pid}`;
    execFileSync('gcc', ['-O2', '-Wall', '-o', tmp, source], { stdio: 'pipe' });
    fs.renameSync(tmp, exe);
  }
  return exe;
}

/**
 * A running wire between interfaces `ifA` and `ifB` of namespace `ns`: each frame arriving on one leaves on the other
 * `delayUs` after the kernel received it. It is running when the constructor returns; it ends on `stop()`, when `ns`
 * is deleted, or when this test process exits.
 */
export class DelayWire {
  readonly pid: number;

  constructor(ns: string, ifA: string, ifB: string, delayUs: number) {
    const out = execFileSync('ip', ['netns', 'exec', ns, wireDelayExe(), ifA, ifB, String(delayUs), String(process.pid)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.pid = Number(out.trim());
    if (!Number.isInteger(this.pid) || this.pid <= 0) throw new Error(`wire-delay printed ${JSON.stringify(out)}, not its pid`);
  }

  /** Ends the wire (a no-op when it has already gone). */
  stop(): void {
    try {
      // The wire is not our child (it detached), so make sure the pid is still it before signalling.
      if (fs.readFileSync(`/proc/${this.pid}/cmdline`, 'latin1').includes('wire-delay')) process.kill(this.pid, 'SIGTERM');
    } catch {
      // Already gone (its namespace was deleted first).
    }
  }
}
