// Mocha reporter: the spec output, then one plain summary line ("tests: N passed, N failed, N skipped") and why tests were skipped.
'use strict';
const Mocha = require('mocha');
const { EVENT_RUN_END, EVENT_TEST_PENDING } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const skipped = [];
    runner.on(EVENT_TEST_PENDING, (test) => {
      const reason = (globalThis.__tsvirtSkipReasons && globalThis.__tsvirtSkipReasons.get(test.fullTitle())) || 'marked pending';
      skipped.push({ title: test.fullTitle(), reason });
    });
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats;
      const byReason = new Map();
      for (const k of skipped) byReason.set(k.reason, (byReason.get(k.reason) || 0) + 1);
      for (const [reason, n] of byReason) console.log(`skipped ${n} test(s): ${reason}`);
      console.log(`tests: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped`);
    });
  }
}
module.exports = SummaryReporter;
