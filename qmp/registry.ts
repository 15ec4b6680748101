// The command registry: one definition per wire name (schema, handler, doc example); validation before dispatch.
import type { SchemaObject, ValidateFunction } from 'ajv';
import { TsvirtError, type QmpErrorClass } from '../machine/errors.js';
import type { VmEvent } from './events.js';
import { QmpCommandNotFoundError } from './errors.js';
import type { QmpLogger } from './logger.js';
import type { MigrationApi } from './migration-api.js';
import type { QmpVersion } from './protocol.js';
import { argumentError, createAjv } from './schema.js';
import type { VmApi } from './vm-api.js';

/** What one connection lets a command see and change about itself. */
export interface SessionControl {
  /** Session number, for logs. */
  readonly id: number;
  /** True once qmp_capabilities succeeded; only then are events delivered. */
  readonly negotiated: boolean;
  /** Capabilities offered in the greeting. */
  readonly offeredCapabilities: readonly string[];
  /** Enters command mode with `enable` switched on; throws QmpAlreadyNegotiatedError or QmpCapabilityError. */
  negotiate(enable: readonly string[]): void;
}

/** Everything a handler may use. */
export interface CommandContext {
  readonly vm: VmApi;
  readonly migration: MigrationApi;
  readonly session: SessionControl;
  readonly registry: QmpRegistry;
  readonly version: QmpVersion;
  readonly logger: QmpLogger;
  /** Runs `task` once this command's reply is written; later commands on the session wait for it. */
  afterReply(task: () => void | Promise<void>): void;
  /** Sends `event` to every negotiated session, stamped now. */
  emitEvent(event: VmEvent): void;
  /** Resolves when every session's pending output has been handed to the kernel (bounded wait). */
  flushAll(): Promise<void>;
}

/** The documented request/response pair of a command; docs/qmp.md shows it and a test checks it. */
export interface CommandExample {
  request: { execute: string; arguments?: Record<string, unknown> };
  response: { return: unknown };
}

/** One QMP command: adding a command is adding one of these (in its own file under commands/). */
export interface QmpCommandDef<A = Record<string, never>> {
  /** Wire name, as sent in `execute`. */
  readonly name: string;
  /** One line for docs and logs. */
  readonly summary: string;
  /** JSON Schema of `arguments` (additionalProperties: false, so unknown members fail before any side effect). */
  readonly schema: SchemaObject;
  readonly example: CommandExample;
  /** Runs with validated arguments; its result (undefined -> {}) is the `return` member. */
  handler(args: A, ctx: CommandContext): unknown;
}

/** A command of any argument type, as the registry stores them. */
export type AnyCommandDef = QmpCommandDef<any>;

/** Identity helper so each command file gets its argument type checked against its handler. */
export function defineCommand<A = Record<string, never>>(def: QmpCommandDef<A>): QmpCommandDef<A> {
  return def;
}

/** Commands by wire name, with their compiled argument validators. */
export class QmpRegistry {
  private readonly commands = new Map<string, AnyCommandDef>();
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(commands: readonly AnyCommandDef[]) {
    const ajv = createAjv();
    for (const cmd of commands) {
      if (this.commands.has(cmd.name)) throw new Error(`QMP command ${cmd.name} registered twice`);
      this.commands.set(cmd.name, cmd);
      this.validators.set(cmd.name, ajv.compile(cmd.schema));
    }
  }

  /** Wire names in registration order (query-commands reports them). */
  names(): string[] {
    return [...this.commands.keys()];
  }

  get(name: string): AnyCommandDef | undefined {
    return this.commands.get(name);
  }

  /** True when `args` satisfy the command's schema (used to keep doc examples honest). */
  accepts(name: string, args: Record<string, unknown>): boolean {
    return this.validators.get(name)?.(args) === true;
  }

  /** Looks up, validates and runs a command; throws QmpCommandNotFoundError / QmpArgumentError or the handler's error. */
  async execute(name: string, args: Record<string, unknown>, ctx: CommandContext): Promise<unknown> {
    const cmd = this.commands.get(name);
    const validate = this.validators.get(name);
    if (cmd === undefined || validate === undefined) throw new QmpCommandNotFoundError(name);
    if (!validate(args)) throw argumentError(validate.errors![0]);
    const result = await cmd.handler(args, ctx);
    return result === undefined ? {} : result;
  }
}

/**
 * What the client is told about a failure: a TsvirtError keeps its class and message; anything else is a bug or an
 * unexpected host failure, reported as GenericError with its message and logged with its stack.
 */
export function describeFailure(e: unknown, logger: QmpLogger, command?: string): { cls: QmpErrorClass; desc: string } {
  if (e instanceof TsvirtError) return { cls: e.qmpClass, desc: e.message };
  const desc = e instanceof Error ? e.message || e.name : String(e);
  logger.error('QMP command failed unexpectedly', {
    command,
    error: desc,
    stack: e instanceof Error ? e.stack : undefined,
  });
  return { cls: 'GenericError', desc };
}
