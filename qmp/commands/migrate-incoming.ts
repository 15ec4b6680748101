// migrate-incoming: start listening for the migration a VM started with `-incoming defer` waits for.
import { defineCommand } from '../registry.js';
import { objectSchema } from '../schema.js';

export const migrateIncoming = defineCommand<{ uri: string }>({
  name: 'migrate-incoming',
  summary: 'Start receiving an incoming migration on uri (tcp:HOST:PORT, unix:PATH, file:PATH); only with -incoming defer',
  schema: objectSchema({ uri: { type: 'string' } }, ['uri']),
  example: {
    request: { execute: 'migrate-incoming', arguments: { uri: 'tcp:0.0.0.0:4446' } },
    response: { return: {} },
  },
  handler: async (args, ctx) => {
    await ctx.migration.migrateIncoming(args.uri);
  },
});
