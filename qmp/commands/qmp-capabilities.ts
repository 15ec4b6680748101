// qmp_capabilities: leave negotiation mode; the session then receives events.
import { defineCommand } from '../registry.js';
import { objectSchema } from '../schema.js';

/** QEMU's QMPCapability enum; tsvirt offers none of them in its greeting (no out-of-band execution). */
const QMP_CAPABILITY_NAMES = ['oob'];

export const qmpCapabilities = defineCommand<{ enable?: string[] }>({
  name: 'qmp_capabilities',
  summary: 'Complete capabilities negotiation, enabling the listed capabilities; events flow from then on',
  schema: objectSchema({ enable: { type: 'array', items: { type: 'string', enum: QMP_CAPABILITY_NAMES } } }),
  example: { request: { execute: 'qmp_capabilities' }, response: { return: {} } },
  handler(args, ctx) {
    ctx.session.negotiate(args.enable ?? []);
  },
});
