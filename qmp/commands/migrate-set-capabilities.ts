// migrate-set-capabilities: switch migration capabilities on or off.
import { MIGRATION_CAPABILITIES, type MigrationCapabilityState } from '../migration-api.js';
import { defineCommand } from '../registry.js';
import { objectSchema } from '../schema.js';

export const migrateSetCapabilities = defineCommand<{ capabilities: MigrationCapabilityState[] }>({
  name: 'migrate-set-capabilities',
  summary: 'Switch migration capabilities (xbzrle, auto-converge, events, multifd, ...) on or off',
  schema: objectSchema(
    {
      capabilities: {
        type: 'array',
        items: objectSchema(
          { capability: { type: 'string', enum: [...MIGRATION_CAPABILITIES] }, state: { type: 'boolean' } },
          ['capability', 'state'],
        ),
      },
    },
    ['capabilities'],
  ),
  example: {
    request: {
      execute: 'migrate-set-capabilities',
      arguments: { capabilities: [{ capability: 'auto-converge', state: true }] },
    },
    response: { return: {} },
  },
  handler: async (args, ctx) => {
    await ctx.migration.setCapabilities(args.capabilities);
  },
});
