// query-dirty-rate: the result of the last calc-dirty-rate.
import { toWire } from '../protocol.js';
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryDirtyRate = defineCommand({
  name: 'query-dirty-rate',
  summary: 'The dirty rate measured by the last calc-dirty-rate, in MB/s',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-dirty-rate' },
    response: { return: { status: 'measured', 'dirty-rate': 1024, 'start-time': 1795000000, 'calc-time': 1, mode: 'dirty-bitmap' } },
  },
  handler: (_args, ctx) => toWire(ctx.migration.dirtyRate?.() ?? { status: 'unstarted', startTime: 0, calcTime: 0, mode: 'dirty-bitmap' }),
});
