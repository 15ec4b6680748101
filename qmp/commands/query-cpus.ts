// query-cpus: StratoVirt's vCPU list (QEMU removed this command in 6.0; StratoVirt clients still use it).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';
import { cpuQomPath } from '../vm-api.js';
import { cpuProps } from './cpu-wire.js';

export const queryCpus = defineCommand({
  name: 'query-cpus',
  summary: "StratoVirt's vCPU list: index, halted, QOM path, host thread id, topology",
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-cpus' },
    response: {
      return: [
        {
          CPU: 0,
          arch: 'x86',
          current: true,
          halted: false,
          props: { 'core-id': 0, 'socket-id': 0, 'thread-id': 0 },
          qom_path: '/machine/unattached/device[0]',
          thread_id: 8439,
        },
      ],
    },
  },
  // StratoVirt reports every vCPU as current; so do we.
  handler: (_args, ctx) =>
    ctx.vm.vcpus().map((c) => ({
      CPU: c.index,
      arch: 'x86',
      current: true,
      halted: c.halted,
      props: cpuProps(c.topology),
      qom_path: cpuQomPath(c.index),
      thread_id: c.tid,
    })),
});
