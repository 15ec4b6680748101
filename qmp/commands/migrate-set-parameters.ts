// migrate-set-parameters: change migration tunables; ranges follow QEMU 7.2.
import type { MigrationParameters } from '../migration-api.js';
import { fromWire } from '../protocol.js';
import { defineCommand } from '../registry.js';
import { boundedInt, objectSchema, uint64 } from '../schema.js';

const BYTES = Number.MAX_SAFE_INTEGER;

export const migrateSetParameters = defineCommand<Record<string, unknown>>({
  name: 'migrate-set-parameters',
  summary: 'Set migration parameters; only the members given change',
  schema: objectSchema({
    'downtime-limit': uint64(2000000, 0, 'an integer in the range of 0 to 2000000 ms'),
    'max-bandwidth': uint64(BYTES, 0, `an integer in the range of 0 to ${BYTES} bytes/second`),
    'max-postcopy-bandwidth': uint64(BYTES, 0, `an integer in the range of 0 to ${BYTES} bytes/second`),
    'multifd-channels': boundedInt(1, 255, 'a value between 1 and 255'),
    'xbzrle-cache-size': uint64(BYTES),
    'cpu-throttle-initial': boundedInt(1, 99),
    'cpu-throttle-increment': boundedInt(1, 99),
    'cpu-throttle-tailslow': { type: 'boolean' },
    'max-cpu-throttle': boundedInt(1, 99, 'an integer in the range of cpu-throttle-initial to 99'),
    'throttle-trigger-threshold': boundedInt(1, 100),
    // tsvirt's own, named after Cloud Hypervisor's --migration-timeout: seconds before the strategy applies.
    'x-migration-timeout': uint64(604800, 0, 'an integer in the range of 0 to 604800 seconds'),
    'x-migration-timeout-strategy': { type: 'string', enum: ['cancel', 'force-switchover'] },
    'multifd-compression': { type: 'string', enum: ['none', 'zlib', 'zstd'] },
    'multifd-zlib-level': boundedInt(0, 9),
    'multifd-zstd-level': boundedInt(0, 20),
    'announce-initial': uint64(100000),
    'announce-max': uint64(100000),
    'announce-rounds': uint64(1000),
    'announce-step': boundedInt(1, 10000),
  }),
  example: {
    request: { execute: 'migrate-set-parameters', arguments: { 'downtime-limit': 500, 'max-bandwidth': 1073741824 } },
    response: { return: {} },
  },
  handler: async (args, ctx) => {
    await ctx.migration.setParameters(fromWire(args) as Partial<MigrationParameters>);
  },
});
