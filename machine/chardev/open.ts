// Opens the host backend a ChardevSpec names (the -serial and -chardev forms).

import type { ChardevSpec } from '../config.js';
import type { CharBackend } from './backend.js';
import { FileBackend } from './file.js';
import { NullBackend } from './null.js';
import { PtyBackend } from './pty.js';
import { SocketBackend } from './socket.js';
import { StdioBackend } from './stdio.js';
import { ConfigError } from '../errors.js';

/** Opens the console backend; `onQuit` is the Ctrl-A x escape on a terminal. */
export async function openCharBackend(spec: ChardevSpec | null, onQuit: () => void): Promise<CharBackend> {
  try {
    switch (spec?.kind ?? 'null') {
      case 'null':
        return new NullBackend();
      case 'stdio':
        return new StdioBackend(onQuit);
      case 'file':
        return new FileBackend((spec as { path: string }).path);
      case 'pty': {
        const pty = new PtyBackend();
        process.stderr.write(`char device redirected to ${pty.path} (label serial0)\n`);
        return pty;
      }
      case 'unix':
        return await SocketBackend.listen({ kind: 'unix', path: (spec as { path: string }).path });
      case 'tcp': {
        const s = spec as { host: string; port: number };
        return await SocketBackend.listen({ kind: 'tcp', host: s.host, port: s.port });
      }
    }
  } catch (e) {
    throw new ConfigError('serial', (e as Error).message);
  }
  throw new ConfigError('serial', `unsupported backend ${spec?.kind}`);
}
