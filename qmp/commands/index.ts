// Every built-in QMP command, in the order query-commands lists them.
import type { AnyCommandDef } from '../registry.js';
import { calcDirtyRate } from './calc-dirty-rate.js';
import { cont } from './cont.js';
import { queryDirtyRate } from './query-dirty-rate.js';
import { humanMonitorCommand } from './human-monitor-command.js';
import { migrateCancel } from './migrate-cancel.js';
import { migrateIncoming } from './migrate-incoming.js';
import { migrateSetCapabilities } from './migrate-set-capabilities.js';
import { migrateSetParameters } from './migrate-set-parameters.js';
import { migrate } from './migrate.js';
import { qmpCapabilities } from './qmp-capabilities.js';
import { queryBlock } from './query-block.js';
import { queryCommands } from './query-commands.js';
import { queryPci } from './query-pci.js';
import { queryCpusFast } from './query-cpus-fast.js';
import { queryCpus } from './query-cpus.js';
import { queryEvents } from './query-events.js';
import { queryHotpluggableCpus } from './query-hotpluggable-cpus.js';
import { queryKvm } from './query-kvm.js';
import { queryMachines } from './query-machines.js';
import { queryMigrateCapabilities } from './query-migrate-capabilities.js';
import { queryMigrateParameters } from './query-migrate-parameters.js';
import { queryMigrate } from './query-migrate.js';
import { queryName } from './query-name.js';
import { queryStatus } from './query-status.js';
import { queryTarget } from './query-target.js';
import { queryVersion } from './query-version.js';
import { quit } from './quit.js';
import { stop } from './stop.js';
import { systemPowerdown } from './system-powerdown.js';
import { systemReset } from './system-reset.js';

export const BUILTIN_COMMANDS: readonly AnyCommandDef[] = Object.freeze([
  qmpCapabilities,
  queryBlock,
  queryPci,
  calcDirtyRate,
  queryDirtyRate,
  queryVersion,
  queryCommands,
  queryStatus,
  stop,
  cont,
  quit,
  systemReset,
  systemPowerdown,
  queryCpusFast,
  queryCpus,
  queryHotpluggableCpus,
  queryName,
  queryKvm,
  queryMachines,
  queryTarget,
  queryEvents,
  humanMonitorCommand,
  migrate,
  migrateCancel,
  migrateIncoming,
  queryMigrate,
  migrateSetParameters,
  queryMigrateParameters,
  migrateSetCapabilities,
  queryMigrateCapabilities,
]);
