// The asynchronous events tsvirt reports over QMP, and a tiny hub that emits them.
import type { MigrationStatus } from './migration-api.js';

/** Why the VM shut down or reset (QEMU's `ShutdownCause`). */
export type ShutdownCause =
  | 'none'
  | 'host-error'
  | 'host-qmp-quit'
  | 'host-qmp-system-reset'
  | 'host-signal'
  | 'host-ui'
  | 'guest-shutdown'
  | 'guest-reset'
  | 'guest-panic'
  | 'subsystem-reset'
  | 'snapshot-load';

/** Every event name the server may send, as `query-events` lists them. */
export const QMP_EVENT_NAMES = [
  'SHUTDOWN',
  'RESET',
  'STOP',
  'RESUME',
  'POWERDOWN',
  'MIGRATION',
  'MIGRATION_PASS',
] as const;

/** An event as its source reports it; the server adds the timestamp when it receives it. */
export type VmEvent =
  | { event: 'SHUTDOWN'; data: { guest: boolean; reason: ShutdownCause } }
  | { event: 'RESET'; data: { guest: boolean; reason: ShutdownCause } }
  | { event: 'STOP' }
  | { event: 'RESUME' }
  | { event: 'POWERDOWN' }
  | { event: 'MIGRATION'; data: { status: MigrationStatus } }
  | { event: 'MIGRATION_PASS'; data: { pass: number } };

/** Something the QMP server subscribes to; `subscribe` returns the function that unsubscribes. */
export interface QmpEventSource {
  subscribe(listener: (event: VmEvent) => void): () => void;
}

/** A synchronous fan-out of events to subscribers; a listener that throws does not stop the others. */
export class EventHub implements QmpEventSource {
  private readonly listeners = new Set<(event: VmEvent) => void>();

  subscribe(listener: (event: VmEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  emit(event: VmEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // A subscriber's failure is its own; the emitter (a vCPU exit, a migration phase) must carry on.
      }
    }
  }

  /** How many subscribers are attached (tests use it to check that closing unsubscribes). */
  get size(): number {
    return this.listeners.size;
  }
}
