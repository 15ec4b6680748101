// The source/destination handshake end to end in memory: success, refused CONFIG, failure before and after RUN.

import { expect } from 'chai';
import { compareVms, type VmIdentity } from '../../../migration/compat.js';
import { MigrationCompatError, MigrationPeerError } from '../../../migration/errors.js';
import type { StreamMessage } from '../../../migration/format.js';
import { planRamBatches } from '../../../migration/ram.js';
import { StreamReader } from '../../../migration/reader.js';
import { MigrationStatus } from '../../../migration/status.js';
import { ReplyWriter, StreamWriter } from '../../../migration/writer.js';
import { chipBlobs, concat, description, guestRam, vcpuBlobs } from './fixtures.js';

/** A destination as the machine will wire it: check CONFIG, take RAM, load state, wait for RUN. */
class Destination {
  readonly status = new MigrationStatus('destination');
  readonly ram = [new Uint8Array(16 * 4096), new Uint8Array(8 * 4096)];
  readonly replies: Uint8Array[] = [];
  running = false;
  private header?: { arch: string; vendor: string };
  private readonly writer = new ReplyWriter();
  readonly reader: StreamReader;

  constructor(private readonly own: VmIdentity, private readonly failOnEnd = false) {
    this.reader = new StreamReader({
      direction: 'stream',
      ram: { target: (r, o, l) => this.ram[r].subarray(o, o + l), zero: (r, o, l) => this.ram[r].fill(0, o, o + l) },
      onMessage: (m) => this.onMessage(m),
    });
  }

  receive(bytes: Uint8Array): void {
    try {
      this.reader.push(bytes);
    } catch (e) {
      // Whatever failed, the guest stays on the source: say why, and never run.
      if (this.status.can('failed')) this.status.fail((e as Error).message);
      if (!(e instanceof MigrationPeerError)) this.replies.push(...this.writer.error((e as Error).message, (e as { code?: string }).code));
    }
  }

  private onMessage(m: StreamMessage): void {
    switch (m.type) {
      case 'header':
        this.header = m.header;
        this.status.transition('setup');
        return;
      case 'config': {
        const mismatches = compareVms({ ...this.header!, description: m.description }, this.own);
        if (mismatches.length) throw new MigrationCompatError(mismatches);
        this.replies.push(...this.writer.accept());
        this.status.transition('active');
        return;
      }
      case 'end':
        if (this.failOnEnd) throw new Error('KVM_SET_LAPIC failed');
        this.replies.push(...this.writer.ready(this.reader.summary));
        return;
      case 'run':
        this.running = true;
        this.replies.push(...this.writer.running());
        this.status.transition('completed');
        return;
      case 'error':
        throw new MigrationPeerError('source', m.message, m.code);
      default:
        return;
    }
  }
}

/** The source's script, reading the destination's replies between phases; `cut` drops the link after RUN. */
function migrate(dst: Destination, opts: { cut?: boolean } = {}): { status: MigrationStatus; resumed: boolean; error?: string } {
  const status = new MigrationStatus('source');
  const w = new StreamWriter();
  const replies: StreamMessage[] = [];
  const reader = new StreamReader({ direction: 'replies', onMessage: (m) => replies.push(m) });
  let resumed = false;
  const send = (chunks: Uint8Array[]) => dst.receive(concat(chunks));
  const reply = (): StreamMessage | undefined => {
    reader.push(concat(dst.replies.splice(0)));
    return replies.shift();
  };
  status.transition('setup');
  send([...w.header('GenuineIntel'), ...w.config(description())]);
  const accepted = reply();
  if (accepted?.type !== 'accept') {
    status.fail(accepted?.type === 'error' ? `destination reported: ${accepted.message}` : 'no ACCEPT');
    return { status, resumed, error: status.errorDesc };
  }
  status.transition('active');
  const ram = guestRam();
  ram.forEach((bytes, region) => {
    for (const b of planRamBatches(bytes, null)) send(w.ramPages(region, bytes, b.runs));
  });
  send(w.passEnd(1, true));
  send([...w.vcpu(0, vcpuBlobs(0)), ...w.vcpu(1, vcpuBlobs(1)), ...w.irqchip(chipBlobs())]);
  send([...w.pit(new Map([['pit2', new Uint8Array(112)]])), ...w.clock(new Map([['clock', new Uint8Array(48)]]))]);
  send([...w.deviceJson('disk0', 1, {}), ...w.deviceJson('net0', 1, {}), ...w.end()]);
  const ready = reply();
  if (ready?.type !== 'ready') {
    resumed = true; // before RUN the guest is still ours
    status.fail(ready?.type === 'error' ? `destination reported: ${ready.message}` : 'no READY');
    return { status, resumed, error: status.errorDesc };
  }
  status.commit();
  const run = w.run();
  if (opts.cut) {
    status.fail('connection lost after RUN; the guest may be running on the destination');
    return { status, resumed, error: status.errorDesc };
  }
  send(run);
  if (reply()?.type === 'running') status.transition('completed');
  return { status, resumed };
}

const own = (overrides = {}): VmIdentity => ({ arch: 'x86_64', vendor: 'GenuineIntel', description: description(overrides) });

describe('migration handshake', () => {
  it('moves the guest: ACCEPT, RAM, state, READY, RUN, RUNNING, both sides completed', () => {
    const dst = new Destination(own());
    const { status } = migrate(dst);
    expect(status.status).to.equal('completed');
    expect(dst.status.status).to.equal('completed');
    expect(dst.running).to.equal(true);
    expect(dst.ram).to.deep.equal(guestRam());
  });

  it('refuses an incompatible VM before any RAM, with every mismatch, and the source keeps the guest', () => {
    const dst = new Destination(own({ vcpus: 4, memory: { size: 8 * 4096, ranges: [{ gpa: 0, size: 8 * 4096 }] } }));
    const { status, error } = migrate(dst);
    expect(status.status).to.equal('failed');
    expect(error).to.contain('memory size mismatch: source 98304 bytes, destination 32768 bytes').and.contain('vCPU count mismatch: source 2, destination 4');
    expect(dst.status.status).to.equal('failed');
    expect(dst.reader.bytesReceived).to.be.lessThan(4096);
    expect(status.can('setup')).to.equal(true);
  });

  it('resumes on the source when the destination fails to load state before RUN', () => {
    const dst = new Destination(own(), true);
    const { status, resumed, error } = migrate(dst);
    expect(resumed).to.equal(true);
    expect(error).to.equal('destination reported: KVM_SET_LAPIC failed');
    expect(dst.running).to.equal(false);
    expect(status.can('setup')).to.equal(true);
  });

  it('never resumes or retries on the source once RUN was sent', () => {
    const dst = new Destination(own());
    const { status, resumed } = migrate(dst, { cut: true });
    expect(resumed).to.equal(false);
    expect(status.status).to.equal('failed');
    expect(status.can('setup')).to.equal(false);
    // The destination never got RUN, so it does not run either: an operator has to decide.
    expect(dst.running).to.equal(false);
  });
});
