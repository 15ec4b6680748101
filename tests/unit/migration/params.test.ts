// Migration parameters and capabilities: QEMU names and defaults, range errors naming the member, all-or-nothing updates.

import { expect } from 'chai';
import { MigrationParamError } from '../../../migration/errors.js';
import { MigrationSettings, PARAMETER_SPECS } from '../../../migration/params.js';

function refusal(fn: () => void): MigrationParamError {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(MigrationParamError);
    return e as MigrationParamError;
  }
  throw new Error('accepted');
}

describe('migration parameters', () => {
  it("reports QEMU's defaults, with unlimited bandwidth and no timeout", () => {
    expect(new MigrationSettings().queryParameters()).to.deep.equal({
      'downtime-limit': 300,
      'max-bandwidth': 0,
      'max-postcopy-bandwidth': 0,
      'x-migration-timeout': 0,
      'x-migration-timeout-strategy': 'cancel',
      'announce-initial': 50,
      'announce-max': 550,
      'announce-rounds': 5,
      'announce-step': 100,
      'multifd-channels': 2,
      'multifd-compression': 'none',
      'multifd-zlib-level': 1,
      'multifd-zstd-level': 1,
      'xbzrle-cache-size': 64 * 1024 * 1024,
      'cpu-throttle-initial': 20,
      'cpu-throttle-increment': 10,
      'cpu-throttle-tailslow': false,
      'max-cpu-throttle': 99,
      'throttle-trigger-threshold': 50,
    });
  });

  it('applies a valid change and reports it', () => {
    const s = new MigrationSettings();
    s.set({ 'downtime-limit': 50, 'max-bandwidth': 125_000_000, 'x-migration-timeout-strategy': 'force-switchover' });
    expect(s.parameters).to.deep.include({ 'downtime-limit': 50, 'max-bandwidth': 125_000_000, 'x-migration-timeout-strategy': 'force-switchover' });
  });

  it('accepts both ends of every integer range', () => {
    for (const [name, spec] of Object.entries(PARAMETER_SPECS)) {
      if (spec.kind !== 'int') continue;
      if (spec.powerOfTwo) continue;
      // Fresh settings each time: some ranges depend on another member (max-cpu-throttle >= cpu-throttle-initial).
      const s = new MigrationSettings();
      if (name === 'max-cpu-throttle') s.set({ 'cpu-throttle-initial': 1 });
      s.set({ [name]: spec.min });
      s.set({ [name]: spec.max });
    }
  });

  it('refuses a max-cpu-throttle below cpu-throttle-initial, as QEMU does', () => {
    const s = new MigrationSettings();
    expect(() => s.set({ 'max-cpu-throttle': 10, 'cpu-throttle-initial': 20 })).to.throw(/max-cpu-throttle' expects an integer in the range of cpu-throttle-initial to 99/);
    expect(s.parameters['max-cpu-throttle']).to.equal(99);
  });

  const outOfRange: [string, unknown, string][] = [
    ['downtime-limit', 2_000_001, "Parameter 'downtime-limit' expects an integer in the range of 0 to 2000000 milliseconds"],
    ['downtime-limit', -1, "Parameter 'downtime-limit' expects an integer in the range of 0 to 2000000 milliseconds"],
    ['multifd-channels', 0, "Parameter 'multifd-channels' expects an integer in the range of 1 to 255 channels"],
    ['multifd-channels', 256, "Parameter 'multifd-channels' expects an integer in the range of 1 to 255 channels"],
    ['cpu-throttle-initial', 100, "Parameter 'cpu-throttle-initial' expects an integer in the range of 1 to 99 percent"],
    ['max-cpu-throttle', 0, "Parameter 'max-cpu-throttle' expects an integer in the range of 1 to 99 percent"],
    ['throttle-trigger-threshold', 101, "Parameter 'throttle-trigger-threshold' expects an integer in the range of 1 to 100 percent"],
    ['announce-step', 0, "Parameter 'announce-step' expects an integer in the range of 1 to 10000 milliseconds"],
    ['x-migration-timeout', 604_801, "Parameter 'x-migration-timeout' expects an integer in the range of 0 to 604800 seconds (0 = no limit)"],
    ['xbzrle-cache-size', 3 * 1024 * 1024, "Parameter 'xbzrle-cache-size' expects a power of two no less than 4096 bytes"],
    ['xbzrle-cache-size', 2048, "Parameter 'xbzrle-cache-size' expects a power of two no less than 4096 bytes"],
    ['downtime-limit', 1.5, "Invalid parameter type for 'downtime-limit', expected: integer"],
    ['downtime-limit', '300', "Invalid parameter type for 'downtime-limit', expected: integer"],
    ['cpu-throttle-tailslow', 1, "Invalid parameter type for 'cpu-throttle-tailslow', expected: boolean"],
    ['multifd-compression', 'lz4', "Parameter 'multifd-compression' does not accept value 'lz4' (one of: none, zlib, zstd)"],
    ['x-migration-timeout-strategy', 'pause', "Parameter 'x-migration-timeout-strategy' does not accept value 'pause' (one of: cancel, force-switchover)"],
    ['downtime_limit', 1, "Parameter 'downtime_limit' is unexpected"],
    ['__proto__', 1, "Parameter '__proto__' is unexpected"],
  ];
  for (const [name, value, message] of outOfRange) {
    it(`refuses ${name} = ${JSON.stringify(value)}, naming the member and what it accepts`, () => {
      const e = refusal(() => new MigrationSettings().set({ [name]: value }));
      expect(e.message).to.equal(message);
      expect(e.member).to.equal(name);
      expect(e.code).to.equal('ERR_MIGRATION_PARAM');
    });
  }

  it('changes nothing when any member of a change is refused', () => {
    const s = new MigrationSettings();
    const before = s.queryParameters();
    refusal(() => s.set({ 'downtime-limit': 10, 'max-bandwidth': 1, 'multifd-channels': 0 }));
    expect(s.queryParameters()).to.deep.equal(before);
  });

  it('hands out a frozen copy of the parameters', () => {
    const s = new MigrationSettings();
    const p = s.parameters;
    expect(Object.isFrozen(p)).to.equal(true);
    s.set({ 'downtime-limit': 1 });
    expect(p['downtime-limit']).to.equal(300);
  });
});

describe('migration capabilities', () => {
  it('lists every capability, all off, in the QMP shape', () => {
    expect(new MigrationSettings().queryCapabilities()).to.deep.equal([
      { capability: 'events', state: false },
      { capability: 'auto-converge', state: false },
      { capability: 'multifd', state: false },
      { capability: 'xbzrle', state: false },
      { capability: 'x-ignore-shared', state: false },
      { capability: 'zero-copy-send', state: false },
    ]);
  });

  it('turns capabilities on and off', () => {
    const s = new MigrationSettings();
    s.setCapabilities([{ capability: 'events', state: true }, { capability: 'auto-converge', state: true }]);
    s.setCapabilities([{ capability: 'events', state: false }]);
    expect(s.capability('events')).to.equal(false);
    expect(s.capability('auto-converge')).to.equal(true);
  });

  it('refuses a capability tsvirt does not support, listing those it does', () => {
    const e = refusal(() => new MigrationSettings().setCapabilities([{ capability: 'postcopy-ram', state: true }]));
    expect(e.message).to.equal("Capability 'postcopy-ram' is not supported by tsvirt (supported: events, auto-converge, multifd, xbzrle, x-ignore-shared, zero-copy-send)");
  });

  it('refuses zero-copy-send without multifd, all or nothing', () => {
    const s = new MigrationSettings();
    const e = refusal(() => s.setCapabilities([{ capability: 'events', state: true }, { capability: 'zero-copy-send', state: true }]));
    expect(e.message).to.equal('Zero copy only available for non-compressed non-TLS multifd migration');
    expect(s.capability('events')).to.equal(false);
    s.setCapabilities([{ capability: 'multifd', state: true }, { capability: 'zero-copy-send', state: true }]);
    expect(s.capability('zero-copy-send')).to.equal(true);
  });

  it('refuses a compression parameter that would break zero-copy-send', () => {
    const s = new MigrationSettings();
    s.setCapabilities([{ capability: 'multifd', state: true }, { capability: 'zero-copy-send', state: true }]);
    refusal(() => s.set({ 'multifd-compression': 'zstd' }));
    expect(s.parameters['multifd-compression']).to.equal('none');
  });

  it('refuses xbzrle together with multifd', () => {
    const e = refusal(() => new MigrationSettings().setCapabilities([{ capability: 'multifd', state: true }, { capability: 'xbzrle', state: true }]));
    expect(e.message).to.equal("Capability 'xbzrle' is not compatible with capability 'multifd'");
  });

  it('refuses capability changes while a migration is in progress', () => {
    const e = refusal(() => new MigrationSettings().setCapabilities([{ capability: 'events', state: true }], true));
    expect(e.message).to.equal("There's a migration process in progress");
  });
});
