// quit: reply, tell every client SHUTDOWN {guest: false, reason: 'host-qmp-quit'}, then end the VM.
import { defineCommand, type CommandContext } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

/**
 * Schedules the quit sequence after the current reply: SHUTDOWN to every negotiated client, a bounded wait for the
 * output to leave, then `vm.quit()`. (QEMU 7.2 happens to send SHUTDOWN just before the reply; replying first
 * guarantees the caller its answer before the process goes away.)
 */
export function quitAfterReply(ctx: CommandContext): void {
  ctx.afterReply(async () => {
    ctx.emitEvent({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    await ctx.flushAll();
    await ctx.vm.quit();
  });
}

export const quit = defineCommand({
  name: 'quit',
  summary: 'Reply, emit SHUTDOWN (host-qmp-quit) and terminate the VM',
  schema: NO_ARGUMENTS,
  example: { request: { execute: 'quit' }, response: { return: {} } },
  handler: (_args, ctx) => {
    quitAfterReply(ctx);
  },
});
