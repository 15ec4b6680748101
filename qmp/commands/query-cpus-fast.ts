// query-cpus-fast: QEMU's vCPU list (index, QOM path, host thread, topology).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';
import { cpuQomPath } from '../vm-api.js';
import { cpuProps } from './cpu-wire.js';

export const queryCpusFast = defineCommand({
  name: 'query-cpus-fast',
  summary: "Each vCPU's index, QOM path, host thread id and topology, without interrupting it",
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-cpus-fast' },
    response: {
      return: [
        {
          'cpu-index': 0,
          'qom-path': '/machine/unattached/device[0]',
          'thread-id': 25627,
          props: { 'core-id': 0, 'thread-id': 0, 'socket-id': 0 },
          target: 'x86_64',
        },
      ],
    },
  },
  handler: (_args, ctx) =>
    ctx.vm.vcpus().map((c) => ({
      'cpu-index': c.index,
      'qom-path': cpuQomPath(c.index),
      'thread-id': c.tid,
      props: cpuProps(c.topology),
      target: 'x86_64',
    })),
});
