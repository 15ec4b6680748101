// The file backend: guest output appended to a file (created if missing); no input.

import * as fs from 'node:fs';
import type { CharBackend } from './backend.js';

export class FileBackend implements CharBackend {
  readonly description: string;
  private readonly fd: number;

  constructor(path: string) {
    this.fd = fs.openSync(path, 'a');
    this.description = `file ${path}`;
  }

  write(bytes: Uint8Array): void {
    fs.writeSync(this.fd, bytes);
  }

  setInputSink(): void {}
  resumeInput(): void {}

  close(): void {
    fs.closeSync(this.fd);
  }
}
