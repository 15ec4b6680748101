// query-machines: the machine types this build can create (a property of the binary, not of the running VM).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

/** tsvirt builds one machine type, a q35-like PC (see machine/layout.ts); StratoVirt's q35 allows 254 vCPUs. */
export const MACHINE_TYPES = Object.freeze([
  {
    name: 'q35',
    'is-default': true,
    'cpu-max': 254,
    'hotpluggable-cpus': true,
    'numa-mem-supported': false,
    deprecated: false,
    'default-cpu-type': 'host-x86_64-cpu',
  },
]);

export const queryMachines = defineCommand({
  name: 'query-machines',
  summary: 'Machine types this build supports',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'query-machines' }, response: { return: MACHINE_TYPES.map((m) => ({ ...m })) } },
  handler: () => MACHINE_TYPES.map((m) => ({ ...m })),
});
