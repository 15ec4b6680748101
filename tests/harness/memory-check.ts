// The test guest's memory self-check as a test assertion (kept apart from the process harness, which benchmarks use too).

import { expect } from 'chai';
import type { Vm } from './migration.js';

/** Asks the test guest for its memory self-check and expects it to pass (the dirtier's pages all in sequence). */
export async function expectMemoryIntact(vm: Vm): Promise<void> {
  vm.proc.send('check\r');
  const m = await vm.proc.waitFor(/CHECK (OK|FAIL)[^\n]*/, 30000);
  expect(m[0]).to.match(/^CHECK OK pages=\d+ edge=/);
}
