// query-events: every event this server may send.
import { QMP_EVENT_NAMES } from '../events.js';
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryEvents = defineCommand({
  name: 'query-events',
  summary: 'Names of the events this server may send (QEMU dropped this command in 4.0; StratoVirt keeps it)',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-events' },
    response: { return: QMP_EVENT_NAMES.map((name) => ({ name })) },
  },
  handler: () => QMP_EVENT_NAMES.map((name) => ({ name })),
});
