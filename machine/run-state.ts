// The VM's run state, spelled as QEMU's RunState so QMP clients understand it.

export type RunState =
  | 'prelaunch'
  | 'running'
  | 'paused'
  | 'inmigrate'
  | 'postmigrate'
  | 'finish-migrate'
  | 'shutdown'
  | 'internal-error'
  | 'restore-vm'
  | 'save-vm';

/** Events the machine emits, with QMP's names and data. */
export type MachineEvent =
  | { name: 'SHUTDOWN'; data: { guest: boolean; reason: string } }
  | { name: 'RESET'; data: { guest: boolean; reason: string } }
  | { name: 'STOP'; data?: undefined }
  | { name: 'RESUME'; data?: undefined }
  | { name: 'POWERDOWN'; data?: undefined };
