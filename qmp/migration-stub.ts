// The migration implementation the server uses until a real one is attached: it keeps settings and refuses to migrate.
import { MigrationUnavailableError } from './errors.js';
import {
  checkMigrationParameters,
  DEFAULT_MIGRATION_PARAMETERS,
  MIGRATION_CAPABILITIES,
  type MigrateRequest,
  type MigrationApi,
  type MigrationCapability,
  type MigrationCapabilityState,
  type MigrationInfo,
  type MigrationParameters,
} from './migration-api.js';

/**
 * Answers every migration command the way a QEMU that never migrated would, except `migrate`, which fails with
 * MigrationUnavailableError. Parameters and capabilities are stored so management tools can set them up front.
 */
export class StubMigration implements MigrationApi {
  private params: MigrationParameters = { ...DEFAULT_MIGRATION_PARAMETERS };
  private readonly caps = new Map<MigrationCapability, boolean>(MIGRATION_CAPABILITIES.map((c) => [c, false]));

  migrate(_request: MigrateRequest): void {
    throw new MigrationUnavailableError();
  }

  migrateIncoming(_uri: string): void {
    throw new MigrationUnavailableError();
  }

  cancel(): void {
    // Nothing runs, so there is nothing to cancel; QEMU answers {} here too.
  }

  info(): MigrationInfo {
    return { status: 'none' };
  }

  setParameters(patch: Partial<MigrationParameters>): void {
    const next = { ...this.params, ...patch };
    checkMigrationParameters(next);
    this.params = next;
  }

  parameters(): MigrationParameters {
    return { ...this.params };
  }

  setCapabilities(changes: readonly MigrationCapabilityState[]): void {
    for (const { capability, state } of changes) this.caps.set(capability, state);
  }

  capabilities(): MigrationCapabilityState[] {
    return MIGRATION_CAPABILITIES.map((capability) => ({ capability, state: this.caps.get(capability) ?? false }));
  }
}
