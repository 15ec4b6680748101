// Every migration error class: its stable code, its QMP class, and the fields callers match on.

import { expect } from 'chai';
import { TsvirtError } from '../../../machine/errors.js';
import {
  MigrationCompatError,
  MigrationParamError,
  MigrationPeerError,
  MigrationStateError,
  MigrationStreamError,
} from '../../../migration/errors.js';

describe('migration errors', () => {
  const mismatch = { field: 'vCPU count', source: '2', destination: '4', message: 'vCPU count mismatch: source 2, destination 4' };
  const cases: [TsvirtError, string, string][] = [
    [new MigrationStateError('completed', 'setup', 'the guest has left'), 'ERR_MIGRATION_STATE', 'MigrationStateError'],
    [new MigrationParamError('downtime-limit', 'x'), 'ERR_MIGRATION_PARAM', 'MigrationParamError'],
    [new MigrationStreamError('truncated', 'RAM_PAGES', 'x'), 'ERR_MIGRATION_TRUNCATED', 'MigrationStreamError'],
    [new MigrationStreamError('corrupt', 'CONFIG', 'x'), 'ERR_MIGRATION_CORRUPT', 'MigrationStreamError'],
    [new MigrationStreamError('unsupported', 'x', 'x'), 'ERR_MIGRATION_UNSUPPORTED', 'MigrationStreamError'],
    [new MigrationStreamError('version', 'x', 'x'), 'ERR_MIGRATION_VERSION', 'MigrationStreamError'],
    [new MigrationStreamError('limit', 'x', 'x'), 'ERR_MIGRATION_LIMIT', 'MigrationStreamError'],
    [new MigrationStreamError('order', 'x', 'x'), 'ERR_MIGRATION_ORDER', 'MigrationStreamError'],
    [new MigrationCompatError([mismatch]), 'ERR_MIGRATION_COMPAT', 'MigrationCompatError'],
    [new MigrationPeerError('destination', 'x'), 'ERR_MIGRATION_PEER', 'MigrationPeerError'],
  ];
  for (const [error, code, name] of cases) {
    it(`${name} ${code} is a GenericError TsvirtError`, () => {
      expect(error).to.be.instanceOf(TsvirtError);
      expect(error.code).to.equal(code);
      expect(error.name).to.equal(name);
      expect(error.qmpClass).to.equal('GenericError');
    });
  }

  it('joins every compatibility mismatch into one message', () => {
    const e = new MigrationCompatError([mismatch, { ...mismatch, message: 'machine type mismatch: source q35, destination virt' }]);
    expect(e.message).to.equal('incompatible migration source: vCPU count mismatch: source 2, destination 4; machine type mismatch: source q35, destination virt');
  });

  it("keeps the peer's message and code", () => {
    const e = new MigrationPeerError('destination', 'memory size mismatch: source 1024 MiB, destination 512 MiB', 'ERR_MIGRATION_COMPAT');
    expect(e.message).to.equal('destination reported: memory size mismatch: source 1024 MiB, destination 512 MiB');
    expect(e.peerCode).to.equal('ERR_MIGRATION_COMPAT');
  });
});
