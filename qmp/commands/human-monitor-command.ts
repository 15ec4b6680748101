// human-monitor-command: run an HMP command line and return its text output.
import { QmpArgumentError } from '../errors.js';
import { runHmp } from '../hmp.js';
import { defineCommand } from '../registry.js';
import { objectSchema } from '../schema.js';
import { quitAfterReply } from './quit.js';

export const humanMonitorCommand = defineCommand<{ 'command-line': string; 'cpu-index'?: number }>({
  name: 'human-monitor-command',
  summary: 'Run an HMP command (info status|cpus|kvm|name|version, stop, cont|c, system_reset, system_powerdown, quit|q, help)',
  schema: objectSchema({ 'command-line': { type: 'string' }, 'cpu-index': { type: 'integer' } }, ['command-line']),
  example: {
    request: { execute: 'human-monitor-command', arguments: { 'command-line': 'info status' } },
    response: { return: 'VM status: running\r\n' },
  },
  handler: async (args, ctx) => {
    const vcpus = ctx.vm.vcpus();
    let cpuIndex = vcpus[0]?.index ?? 0;
    if (args['cpu-index'] !== undefined) {
      if (!vcpus.some((c) => c.index === args['cpu-index'])) {
        throw new QmpArgumentError('cpu-index', "Parameter 'cpu-index' expects a CPU number");
      }
      cpuIndex = args['cpu-index'];
    }
    return runHmp(args['command-line'], ctx, cpuIndex, () => quitAfterReply(ctx));
  },
});
