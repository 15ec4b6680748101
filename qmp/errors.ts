// Typed errors raised by the QMP layer; each maps to the QMP error class QEMU would report.
import { TsvirtError } from '../machine/errors.js';

/** `execute` names no registered command (QEMU: "The command foo has not been found"). */
export class QmpCommandNotFoundError extends TsvirtError {
  readonly command: string;
  constructor(command: string) {
    super('ERR_QMP_COMMAND_NOT_FOUND', `The command ${command} has not been found`, 'CommandNotFound');
    this.command = command;
  }
}

/** `qmp_capabilities` sent again after negotiation; QEMU reports it as CommandNotFound. */
export class QmpAlreadyNegotiatedError extends TsvirtError {
  constructor() {
    super('ERR_QMP_ALREADY_NEGOTIATED', 'Capabilities negotiation is already complete, command ignored', 'CommandNotFound');
  }
}

/** `qmp_capabilities` asked for capabilities the greeting did not offer. */
export class QmpCapabilityError extends TsvirtError {
  readonly capabilities: readonly string[];
  constructor(capabilities: readonly string[]) {
    super('ERR_QMP_CAPABILITY', `Capability ${capabilities.join(', ')} not available`);
    this.capabilities = capabilities;
  }
}

/** The message is not a well-formed QMP request (bad JSON, not an object, bad envelope member). */
export class QmpInputError extends TsvirtError {
  constructor(message: string) {
    super('ERR_QMP_INPUT', message);
  }
}

/** A command's `arguments` failed validation; `member` is the full member name, e.g. `capabilities[0].state`. */
export class QmpArgumentError extends TsvirtError {
  readonly member: string;
  constructor(member: string, message: string) {
    super('ERR_QMP_ARGUMENT', message);
    this.member = member;
  }
}

/** A `-qmp` endpoint string cannot be parsed or served. */
export class QmpEndpointError extends TsvirtError {
  readonly endpoint: string;
  constructor(endpoint: string, reason: string) {
    super('ERR_QMP_ENDPOINT', `QMP endpoint '${endpoint}': ${reason}`);
    this.endpoint = endpoint;
  }
}

/** Another live process is listening on the QMP socket path. */
export class QmpSocketInUseError extends TsvirtError {
  readonly path: string;
  constructor(path: string) {
    super('ERR_QMP_SOCKET_IN_USE', `QMP socket ${path} is in use`);
    this.path = path;
  }
}

/** No migration implementation is attached to this VM yet. */
export class MigrationUnavailableError extends TsvirtError {
  constructor() {
    super('ERR_MIGRATION_UNAVAILABLE', 'Migration is not supported by this tsvirt build');
  }
}
