// query-version: the QEMU version tsvirt is compatible with, and tsvirt's own package version.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryVersion = defineCommand({
  name: 'query-version',
  summary: 'QEMU-compatible version triple (7.2.0) and package "tsvirt-<version>"',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-version' },
    response: { return: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'tsvirt-0.1.0' } },
  },
  handler: (_args, ctx) => ctx.version,
});
