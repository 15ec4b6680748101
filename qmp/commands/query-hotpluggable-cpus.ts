// query-hotpluggable-cpus: every CPU slot; plugged ones carry their QOM path.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';
import { cpuQomPath } from '../vm-api.js';
import { cpuProps } from './cpu-wire.js';

export const queryHotpluggableCpus = defineCommand({
  name: 'query-hotpluggable-cpus',
  summary: 'CPU slots up to maxcpus; a slot with "qom-path" is occupied',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-hotpluggable-cpus' },
    response: {
      return: [
        {
          type: 'host-x86_64-cpu',
          'vcpus-count': 1,
          props: { 'core-id': 0, 'thread-id': 0, 'socket-id': 0 },
          'qom-path': '/machine/unattached/device[0]',
        },
        { type: 'host-x86_64-cpu', 'vcpus-count': 1, props: { 'core-id': 0, 'thread-id': 0, 'socket-id': 1 } },
      ],
    },
  },
  handler: (_args, ctx) =>
    ctx.vm.cpuSlots().map((s) => {
      const slot: Record<string, unknown> = { type: s.type, 'vcpus-count': s.vcpusCount, props: cpuProps(s.props) };
      if (s.vcpuIndex !== undefined) slot['qom-path'] = cpuQomPath(s.vcpuIndex);
      return slot;
    }),
});
