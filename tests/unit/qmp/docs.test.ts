// docs/qmp.md stays in step with the registry: every command has its section and its example, verbatim.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { BUILTIN_COMMANDS } from '../../../qmp/commands/index.js';
import { QMP_EVENT_NAMES } from '../../../qmp/events.js';
import { encodeMessage } from '../../../qmp/protocol.js';

// Compiled to dist/tests/unit/qmp/, four levels below the repository root.
const doc = readFileSync(new URL('../../../../docs/qmp.md', import.meta.url), 'utf8');

describe('qmp docs', () => {
  for (const c of BUILTIN_COMMANDS) {
    it(`documents ${c.name} with its registry example`, () => {
      expect(doc).to.include(`### ${c.name}\n`);
      expect(doc).to.include(`-> ${encodeMessage(c.example.request).trimEnd()}\n`);
      expect(doc).to.include(`<- ${encodeMessage(c.example.response).trimEnd()}\n`);
    });
  }

  it('documents every event', () => {
    for (const e of QMP_EVENT_NAMES) expect(doc).to.include(`| \`${e}\` |`);
  });
});
