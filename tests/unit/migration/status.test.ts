// Every edge of the migration status table, allowed and refused, on both sides; events; the point of no return.

import { expect } from 'chai';
import { MigrationStateError } from '../../../migration/errors.js';
import {
  MIGRATION_STATES,
  MIGRATION_TRANSITIONS,
  MigrationStatus,
  isAllowedTransition,
  type MigrationRole,
  type MigrationState,
  type MigrationStatusChange,
} from '../../../migration/status.js';

/** Shortest paths from none to each status, per role (the destination cannot reach the cancel states). */
const PATHS: Record<MigrationRole, Partial<Record<MigrationState, MigrationState[]>>> = {
  source: {
    none: [],
    setup: ['setup'],
    active: ['setup', 'active'],
    completed: ['setup', 'active', 'completed'],
    failed: ['setup', 'failed'],
    cancelling: ['setup', 'cancelling'],
    cancelled: ['setup', 'cancelling', 'cancelled'],
  },
  destination: {
    none: [],
    setup: ['setup'],
    active: ['setup', 'active'],
    completed: ['setup', 'active', 'completed'],
    failed: ['setup', 'failed'],
  },
};

function at(role: MigrationRole, state: MigrationState): MigrationStatus {
  const s = new MigrationStatus(role);
  for (const step of PATHS[role][state]!) s.transition(step);
  return s;
}

const EXPECTED: Record<MigrationRole, string[]> = {
  source: [
    'none>setup', 'setup>active', 'setup>failed', 'setup>cancelling', 'active>completed', 'active>failed', 'active>cancelling',
    'cancelling>cancelled', 'cancelling>failed', 'failed>setup', 'cancelled>setup',
  ],
  destination: ['none>setup', 'setup>active', 'setup>failed', 'active>completed', 'active>failed'],
};

describe('migration status', () => {
  for (const role of ['source', 'destination'] as const) {
    describe(`on the ${role}`, () => {
      it('allows exactly the edges of the table', () => {
        const allowed = MIGRATION_STATES.flatMap((f) => MIGRATION_STATES.filter((t) => isAllowedTransition(role, f, t)).map((t) => `${f}>${t}`));
        expect(allowed).to.have.members(EXPECTED[role]);
        expect(allowed).to.have.length(EXPECTED[role].length);
      });

      for (const from of MIGRATION_STATES) {
        if (PATHS[role][from] === undefined) continue;
        for (const to of MIGRATION_STATES) {
          const ok = EXPECTED[role].includes(`${from}>${to}`);
          it(`${ok ? 'allows' : 'refuses'} ${from} -> ${to}`, () => {
            const s = at(role, from);
            expect(s.can(to)).to.equal(ok);
            if (ok) {
              s.transition(to);
              expect(s.status).to.equal(to);
            } else {
              let err: unknown;
              try {
                s.transition(to);
              } catch (e) {
                err = e;
              }
              expect(err).to.be.instanceOf(MigrationStateError);
              const e = err as MigrationStateError;
              expect(e.code).to.equal('ERR_MIGRATION_STATE');
              expect(e.qmpClass).to.equal('GenericError');
              expect([e.from, e.to]).to.deep.equal([from, to]);
              expect(s.status).to.equal(from);
            }
          });
        }
      }
    });
  }

  it('keeps the destination unable to reach the cancel states', () => {
    expect(MIGRATION_TRANSITIONS.filter((e) => e.roles.includes('destination') && (e.to === 'cancelling' || e.to === 'cancelled'))).to.deep.equal([]);
  });

  it('refuses a new migrate after completion because the guest has left', () => {
    const s = at('source', 'completed');
    expect(() => s.transition('setup')).to.throw(MigrationStateError, /^the guest has left: migration already completed/);
  });

  it("refuses a second migrate while one is in progress with QEMU's message", () => {
    const s = at('source', 'active');
    expect(() => s.transition('setup')).to.throw(MigrationStateError, "There's a migration process in progress (status active)");
  });

  it('tells a failed destination to restart with -incoming', () => {
    expect(() => at('destination', 'failed').transition('setup')).to.throw(MigrationStateError, /restart tsvirt with -incoming/);
  });

  it('emits every change to listeners, with error-desc on failure', () => {
    const s = new MigrationStatus('source');
    const seen: MigrationStatusChange[] = [];
    const off = s.onChange((c) => seen.push(c));
    s.transition('setup');
    s.transition('active');
    s.fail('destination reported: memory size mismatch');
    off();
    s.transition('setup');
    expect(seen).to.deep.equal([
      { role: 'source', status: 'setup', previous: 'none' },
      { role: 'source', status: 'active', previous: 'setup' },
      { role: 'source', status: 'failed', previous: 'active', errorDesc: 'destination reported: memory size mismatch' },
    ]);
    expect(s.errorDesc).to.equal(undefined);
  });

  it('completes the change and runs every listener even when one throws, then rethrows', () => {
    const s = new MigrationStatus('source');
    const calls: string[] = [];
    s.onChange(() => {
      calls.push('a');
      throw new Error('listener a');
    });
    s.onChange(() => calls.push('b'));
    expect(() => s.transition('setup')).to.throw('listener a');
    expect(s.status).to.equal('setup');
    expect(calls).to.deep.equal(['a', 'b']);
  });

  it('records when each status was entered from the injected clock', () => {
    let t = 1000;
    const s = new MigrationStatus('source', () => t);
    t = 1500;
    s.transition('setup');
    t = 1700;
    s.transition('active');
    expect([s.enteredAt('none'), s.enteredAt('setup'), s.enteredAt('active'), s.enteredAt('completed')]).to.deep.equal([1000, 1500, 1700, undefined]);
  });

  describe('the point of no return', () => {
    it('refuses a cancel once RUN was sent', () => {
      const s = at('source', 'active');
      expect(s.cancellable).to.equal(true);
      s.commit();
      expect(s.cancellable).to.equal(false);
      expect(() => s.transition('cancelling')).to.throw(MigrationStateError, /past the point of no return/);
    });

    it('refuses a retry after a failure that came after RUN, and allows one after a failure before it', () => {
      const committed = at('source', 'active');
      committed.commit();
      committed.fail('no RUNNING from the destination');
      expect(() => committed.transition('setup')).to.throw(MigrationStateError, /the guest may be running on the destination/);
      const early = at('source', 'active');
      early.fail('connection reset');
      early.transition('setup');
      expect(early.status).to.equal('setup');
    });

    it('commits only an active source', () => {
      expect(() => at('source', 'setup').commit()).to.throw(MigrationStateError, /must be active/);
      expect(() => at('destination', 'active').commit()).to.throw(MigrationStateError, /only the source/);
    });
  });
});
