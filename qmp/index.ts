// Public surface of the QMP layer: what the machine imports to serve QMP.
export { startQmp, QmpServer, type QmpServerOptions } from './server.js';
export { EventHub, QMP_EVENT_NAMES, type QmpEventSource, type VmEvent, type ShutdownCause } from './events.js';
export { RUN_STATES, cpuQomPath, type RunState, type VmApi, type VcpuInfo, type CpuSlot, type CpuTopologyId, type KvmInfo } from './vm-api.js';
export * from './migration-api.js';
export { StubMigration } from './migration-stub.js';
export type { QmpLogger } from './logger.js';
export { parseEndpoint, type QmpEndpoint } from './endpoint.js';
