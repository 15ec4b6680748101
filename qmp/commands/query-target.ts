// query-target: the guest architecture.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryTarget = defineCommand({
  name: 'query-target',
  summary: 'Guest architecture',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'query-target' }, response: { return: { arch: 'x86_64' } } },
  handler: () => ({ arch: 'x86_64' }),
});
