// calc-dirty-rate: measure how fast the guest dirties memory, to predict whether a migration will converge.
import { TsvirtError } from '../../machine/errors.js';
import { defineCommand } from '../registry.js';
import { boundedInt, objectSchema } from '../schema.js';

export const calcDirtyRate = defineCommand<{ 'calc-time': number; 'sample-pages'?: number; mode?: string }>({
  name: 'calc-dirty-rate',
  summary: "Measure the guest's dirty rate for calc-time seconds (KVM dirty log); read it with query-dirty-rate",
  schema: objectSchema({
    'calc-time': boundedInt(1, 60, 'an integer in the range of 1 to 60 seconds'),
    'sample-pages': boundedInt(0, 1000000),
    mode: { type: 'string', enum: ['dirty-bitmap'] },
  }, ['calc-time']),
  example: { request: { execute: 'calc-dirty-rate', arguments: { 'calc-time': 1 } }, response: { return: {} } },
  handler: async (args, ctx) => {
    if (!ctx.migration.calcDirtyRate) throw new TsvirtError('ERR_DIRTY_RATE', 'Dirty rate measurement is not available');
    await ctx.migration.calcDirtyRate(args['calc-time']);
  },
});
