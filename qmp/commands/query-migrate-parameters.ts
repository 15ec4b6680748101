// query-migrate-parameters: every supported migration parameter with its value.
import { toWire } from '../protocol.js';
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryMigrateParameters = defineCommand({
  name: 'query-migrate-parameters',
  summary: 'Current migration parameters (QEMU 7.2 defaults until changed)',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-migrate-parameters' },
    response: {
      return: {
        'downtime-limit': 300,
        'max-bandwidth': 134217728,
        'max-postcopy-bandwidth': 0,
        'multifd-channels': 2,
        'xbzrle-cache-size': 67108864,
        'cpu-throttle-initial': 20,
        'cpu-throttle-increment': 10,
        'cpu-throttle-tailslow': false,
        'max-cpu-throttle': 99,
        'throttle-trigger-threshold': 50,
      },
    },
  },
  handler: (_args, ctx) => toWire(ctx.migration.parameters()),
});
