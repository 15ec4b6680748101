// query-migrate: migration status and statistics, kebab-cased on the wire.
import { toWire } from '../protocol.js';
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryMigrate = defineCommand({
  name: 'query-migrate',
  summary: 'Migration status and RAM statistics; {"status": "none"} before any migration',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'query-migrate' }, response: { return: { status: 'none' } } },
  handler: (_args, ctx) => toWire(ctx.migration.info()),
});
