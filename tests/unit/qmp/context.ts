// Runs registry commands without a socket: a CommandContext over a FakeVm and an in-memory session.
import { BUILTIN_COMMANDS } from '../../../qmp/commands/index.js';
import { QmpAlreadyNegotiatedError, QmpCapabilityError } from '../../../qmp/errors.js';
import type { VmEvent } from '../../../qmp/events.js';
import { silentLogger } from '../../../qmp/logger.js';
import { StubMigration } from '../../../qmp/migration-stub.js';
import { QmpRegistry, describeFailure, type CommandContext, type SessionControl } from '../../../qmp/registry.js';
import { qmpVersion } from '../../../qmp/version.js';
import { FakeVm } from './fake-vm.js';

export class MemorySession implements SessionControl {
  readonly id = 1;
  negotiated = false;
  readonly offeredCapabilities: string[] = [];
  negotiate(enable: readonly string[]): void {
    if (this.negotiated) throw new QmpAlreadyNegotiatedError();
    const missing = enable.filter((c) => !this.offeredCapabilities.includes(c));
    if (missing.length > 0) throw new QmpCapabilityError(missing);
    this.negotiated = true;
  }
}

export interface Harness {
  vm: FakeVm;
  registry: QmpRegistry;
  session: MemorySession;
  emitted: VmEvent[];
  afterReply: (() => void | Promise<void>)[];
  ctx: CommandContext;
  /** Runs a command; resolves to {return} or {error: {class, desc}} like the wire would carry. */
  run(name: string, args?: Record<string, unknown>): Promise<{ return?: unknown; error?: { class: string; desc: string } }>;
}

export function harness(vm = new FakeVm()): Harness {
  const registry = new QmpRegistry(BUILTIN_COMMANDS);
  const session = new MemorySession();
  const emitted: VmEvent[] = [];
  const afterReply: (() => void | Promise<void>)[] = [];
  const migration = vm.migration ?? new StubMigration();
  const ctx: CommandContext = {
    vm,
    migration,
    session,
    registry,
    version: qmpVersion('0.1.0'),
    logger: silentLogger,
    afterReply: (t) => afterReply.push(t),
    emitEvent: (e) => emitted.push(e),
    flushAll: async () => undefined,
  };
  return {
    vm,
    registry,
    session,
    emitted,
    afterReply,
    ctx,
    async run(name, args = {}) {
      try {
        return { return: await registry.execute(name, args, ctx) };
      } catch (e) {
        const { cls, desc } = describeFailure(e, silentLogger, name);
        return { error: { class: cls, desc } };
      }
    },
  };
}
