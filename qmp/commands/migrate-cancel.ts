// migrate_cancel: cancel the running migration (no-op when none runs).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const migrateCancel = defineCommand({
  name: 'migrate_cancel',
  summary: 'Cancel the outgoing migration; succeeds when none runs',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'migrate_cancel' }, response: { return: {} } },
  handler: async (_args, ctx) => {
    await ctx.migration.cancel();
  },
});
