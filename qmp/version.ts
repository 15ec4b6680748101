// The version tsvirt reports over QMP: QEMU-compatible numbers plus tsvirt's own package version.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { QmpVersion } from './protocol.js';

/**
 * The QEMU release whose QMP tsvirt mirrors: 7.2.0. Command and event shapes, error texts and defaults were checked
 * against QEMU 7.2 (the reference installed on our machines), and clients that gate features on the version
 * (libvirt, python qemu.qmp) see a modern QEMU.
 */
export const QEMU_COMPAT_VERSION = Object.freeze({ major: 7, minor: 2, micro: 0 });

let cachedPackageVersion: string | undefined;

/** tsvirt's version from the nearest package.json named "tsvirt" above this file (works from source and dist/). */
export function tsvirtPackageVersion(): string {
  if (cachedPackageVersion !== undefined) return cachedPackageVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'tsvirt' && typeof pkg.version === 'string') return (cachedPackageVersion = pkg.version);
    } catch {
      // no package.json here; keep walking up
    }
    const parent = dirname(dir);
    if (parent === dir) return (cachedPackageVersion = '0.0.0');
    dir = parent;
  }
}

/** The `version` member of the greeting and the `query-version` result. */
export function qmpVersion(packageVersion = tsvirtPackageVersion()): QmpVersion {
  const { major, minor, micro } = QEMU_COMPAT_VERSION;
  return { qemu: { micro, minor, major }, package: `tsvirt-${packageVersion}` };
}
