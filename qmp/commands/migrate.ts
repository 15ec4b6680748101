// migrate: start an outgoing migration to `uri` (handed to the migration implementation).
import type { MigrateRequest } from '../migration-api.js';
import { defineCommand } from '../registry.js';
import { objectSchema } from '../schema.js';

export const migrate = defineCommand<MigrateRequest>({
  name: 'migrate',
  summary: 'Start migrating to uri ("tcp:HOST:PORT" or "unix:PATH"); returns once started, progress via query-migrate',
  schema: objectSchema(
    {
      uri: { type: 'string' },
      blk: { type: 'boolean' },
      inc: { type: 'boolean' },
      detach: { type: 'boolean' },
      resume: { type: 'boolean' },
    },
    ['uri'],
  ),
  example: {
    request: { execute: 'migrate', arguments: { uri: 'tcp:192.168.0.2:4446' } },
    response: { return: {} },
  },
  handler: async (args, ctx) => {
    await ctx.migration.migrate(args);
  },
});
