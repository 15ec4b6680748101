// system_powerdown: press the ACPI power button (the VM emits POWERDOWN).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const systemPowerdown = defineCommand({
  name: 'system_powerdown',
  summary: 'Ask the guest to power down (ACPI power button); emits POWERDOWN',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'system_powerdown' }, response: { return: {} } },
  handler: async (_args, ctx) => {
    await ctx.vm.systemPowerdown();
  },
});
