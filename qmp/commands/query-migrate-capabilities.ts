// query-migrate-capabilities: every migration capability with its state.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryMigrateCapabilities = defineCommand({
  name: 'query-migrate-capabilities',
  summary: 'Every migration capability and whether it is on',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-migrate-capabilities' },
    response: {
      return: [
        { capability: 'xbzrle', state: false },
        { capability: 'auto-converge', state: true },
      ],
    },
  },
  handler: (_args, ctx) => ctx.migration.capabilities().map(({ capability, state }) => ({ capability, state })),
});
