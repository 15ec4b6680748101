// system_reset: reset the machine (the VM emits RESET {guest: false, reason: 'host-qmp-system-reset'}).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const systemReset = defineCommand({
  name: 'system_reset',
  summary: 'Reset the VM as if its reset line were pulled; emits RESET',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'system_reset' }, response: { return: {} } },
  handler: async (_args, ctx) => {
    await ctx.vm.systemReset();
  },
});
