// query-name: the VM's -name, or {} when it has none.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryName = defineCommand({
  name: 'query-name',
  summary: 'The VM name given with -name; {} when none was given',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'query-name' }, response: { return: { name: 'guest0' } } },
  handler: (_args, ctx) => (ctx.vm.name === undefined ? {} : { name: ctx.vm.name }),
});
