// cont: resume the vCPUs (the VM emits RESUME).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const cont = defineCommand({
  name: 'cont',
  summary: 'Resume a paused VM; emits RESUME',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'cont' }, response: { return: {} } },
  handler: async (_args, ctx) => {
    await ctx.vm.cont();
  },
});
