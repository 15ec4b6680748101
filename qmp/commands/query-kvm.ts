// query-kvm: whether KVM is present on the host and used by this VM.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryKvm = defineCommand({
  name: 'query-kvm',
  summary: 'KVM presence and use',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'query-kvm' }, response: { return: { enabled: true, present: true } } },
  handler: (_args, ctx) => {
    const { enabled, present } = ctx.vm.kvm();
    return { enabled, present };
  },
});
