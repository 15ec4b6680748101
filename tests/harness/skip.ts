// Skipping with a reason the summary reporter prints (KVM tests skip only where /dev/kvm is missing).

import * as fs from 'node:fs';

declare global {
  // eslint-disable-next-line no-var
  var __tsvirtSkipReasons: Map<string, string> | undefined;
}

/** Skips the current test (or hook's suite) and records why. */
export function skipBecause(ctx: Mocha.Context, reason: string): never {
  globalThis.__tsvirtSkipReasons ??= new Map();
  const t = ctx.currentTest ?? ctx.test;
  const mark = (test: Mocha.Runnable) => globalThis.__tsvirtSkipReasons!.set(test.fullTitle(), reason);
  if (t) mark(t);
  // From a before() hook the whole suite is skipped: record the reason for each of its tests.
  const markSuite = (s: Mocha.Suite): void => { s.tests.forEach(mark); s.suites.forEach(markSuite); };
  if (t?.parent) markSuite(t.parent);
  ctx.skip();
}

/** Why KVM tests cannot run here, or undefined when /dev/kvm is usable. */
export function kvmUnavailableReason(): string | undefined {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
    return undefined;
  } catch {
    return '/dev/kvm is missing or not accessible';
  }
}

/** A mocha `before` hook body that skips the suite when KVM is unavailable. */
export function requireKvm(this: Mocha.Context): void {
  const why = kvmUnavailableReason();
  if (why) skipBecause(this, why);
}
