// The null backend: output is discarded and there is never input.

import type { CharBackend } from './backend.js';

export class NullBackend implements CharBackend {
  readonly description = 'null';
  write(): void {}
  setInputSink(): void {}
  resumeInput(): void {}
  close(): void {}
}
