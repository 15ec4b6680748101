// query-status: the VM's run state in QEMU's spelling.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryStatus = defineCommand({
  name: 'query-status',
  summary: 'Run state ("running", "paused", "prelaunch", "inmigrate", ...); running is true only in "running"',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-status' },
    response: { return: { status: 'running', singlestep: false, running: true } },
  },
  handler: (_args, ctx) => {
    const status = ctx.vm.runState();
    return { status, singlestep: false, running: status === 'running' };
  },
});
