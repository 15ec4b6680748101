// Connects the QMP server to the machine (filled in when qmp/ lands).

import type { VmConfig } from './config.js';
import type { Logger } from './log.js';
import type { Machine } from './machine.js';

export interface QmpHandle {
  closeSync(): void;
}

export async function startQmpFor(config: VmConfig, machine: Machine, log: Logger): Promise<QmpHandle | undefined> {
  void config; void machine; void log;
  return undefined;
}
