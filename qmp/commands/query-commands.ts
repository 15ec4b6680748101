// query-commands: every registered command, derived from the registry.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryCommands = defineCommand({
  name: 'query-commands',
  summary: 'List every command this server accepts',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-commands' },
    response: { return: [{ name: 'qmp_capabilities' }, { name: 'query-version' }, { name: 'query-commands' }] },
  },
  handler: (_args, ctx) => ctx.registry.names().map((name) => ({ name })),
});
