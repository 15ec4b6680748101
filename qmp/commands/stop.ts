// stop: pause the vCPUs (the VM emits STOP).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const stop = defineCommand({
  name: 'stop',
  summary: 'Pause the VM; emits STOP unless it was already paused',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'stop' }, response: { return: {} } },
  handler: async (_args, ctx) => {
    await ctx.vm.stop();
  },
});
