// Every QMP error class: its stable code, its QMP class and its message, in one table.
import { expect } from 'chai';
import { TsvirtError } from '../../../machine/errors.js';
import {
  MigrationUnavailableError,
  QmpAlreadyNegotiatedError,
  QmpArgumentError,
  QmpCapabilityError,
  QmpCommandNotFoundError,
  QmpEndpointError,
  QmpInputError,
  QmpSocketInUseError,
} from '../../../qmp/errors.js';

const TABLE: [TsvirtError, string, string, string][] = [
  [new QmpCommandNotFoundError('foo'), 'ERR_QMP_COMMAND_NOT_FOUND', 'CommandNotFound', 'The command foo has not been found'],
  [new QmpAlreadyNegotiatedError(), 'ERR_QMP_ALREADY_NEGOTIATED', 'CommandNotFound', 'Capabilities negotiation is already complete, command ignored'],
  [new QmpCapabilityError(['oob']), 'ERR_QMP_CAPABILITY', 'GenericError', 'Capability oob not available'],
  [new QmpInputError("QMP input lacks member 'execute'"), 'ERR_QMP_INPUT', 'GenericError', "QMP input lacks member 'execute'"],
  [new QmpArgumentError('uri', "Parameter 'uri' is missing"), 'ERR_QMP_ARGUMENT', 'GenericError', "Parameter 'uri' is missing"],
  [new QmpEndpointError('stdio', 'nope'), 'ERR_QMP_ENDPOINT', 'GenericError', "QMP endpoint 'stdio': nope"],
  [new QmpSocketInUseError('/run/q.sock'), 'ERR_QMP_SOCKET_IN_USE', 'GenericError', 'QMP socket /run/q.sock is in use'],
  [new MigrationUnavailableError(), 'ERR_MIGRATION_UNAVAILABLE', 'GenericError', 'Migration is not supported by this tsvirt build'],
];

describe('qmp errors', () => {
  for (const [error, code, qmpClass, message] of TABLE) {
    it(`${error.name} has code ${code}, class ${qmpClass} and QEMU's message`, () => {
      expect(error).to.be.instanceOf(TsvirtError);
      expect(error.code).to.equal(code);
      expect(error.qmpClass).to.equal(qmpClass);
      expect(error.message).to.equal(message);
    });
  }
});
