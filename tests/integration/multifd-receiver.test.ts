// The destination's multifd channel readers on real sockets and memfds (no KVM): pages land in the memory, a
// channel of another migration is refused before it writes anything, and a cut channel fails the migration.

import { expect } from 'chai';
import * as net from 'node:net';
import { closeFd, memfdCreate, mmapShared, munmap, view } from '../../machine/kvm/libc.js';
import { MultifdReceiver } from '../../migration/multifd-destination.js';
import { planRamBatches } from '../../migration/ram.js';
import { ChannelStreamWriter } from '../../migration/writer.js';
import { description, guestRam } from '../unit/migration/fixtures.js';

const SESSION = '00112233445566778899aabbccddeeff';

/** The fixture VM's two ranges as memfds, with views of them, released by `close`. */
function guestMemory() {
  const sizes = description().memory.ranges.map((r) => r.size);
  const fds = sizes.map((size, i) => memfdCreate(`test-ram-${i}`, size));
  const ptrs = fds.map((fd, i) => mmapShared(fd, sizes[i]));
  const views = ptrs.map((p, i) => new Uint8Array(view(p, sizes[i])));
  return {
    regions: fds.map((fd, i) => ({ fd, size: sizes[i] })),
    views,
    close: () => {
      ptrs.forEach((p, i) => munmap(p, sizes[i]));
      fds.forEach((fd) => closeFd(fd));
    },
  };
}

/** A receiver for one channel behind a local TCP listener; resolves how the migration ended. */
async function receive(send: (socket: net.Socket) => void): Promise<{ outcome: string; memory: Uint8Array[] }> {
  const mem = guestMemory();
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const outcome = await new Promise<string>((resolve) => {
      const receiver = new MultifdReceiver({ channels: 1, compression: 'none', session: SESSION }, description(), mem.regions, {
        onCounts: () => {},
        onComplete: () => resolve('complete'),
        onSync: () => {},
        onFail: (e) => resolve(`failed: ${(e as Error).message}`),
      });
      server.once('connection', (s: net.Socket) => receiver.adopt(s));
      const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => send(client));
      client.on('error', () => {});
    });
    // Let the reader thread end and unmap before the memory goes.
    await new Promise((r) => setTimeout(r, 200));
    return { outcome, memory: mem.views.map((v) => v.slice()) };
  } finally {
    server.close();
    mem.close();
  }
}

function channel(session: string, pages = true, final = true): Uint8Array[] {
  const w = new ChannelStreamWriter(description());
  const chunks = [...w.preamble(0, 1, Buffer.from(session, 'hex'))];
  if (pages) guestRam().forEach((bytes, region) => {
    for (const b of planRamBatches(bytes, null, 8)) chunks.push(...w.ramPages(region, bytes, b.runs));
  });
  if (final) chunks.push(...w.sync(1, true));
  return chunks;
}

describe('multifd channel readers', function () {
  this.timeout(20000);

  it('read a channel straight into guest memory on their own thread and report it complete', async () => {
    const r = await receive((s) => s.end(Buffer.concat(channel(SESSION))));
    expect(r.outcome).to.equal('complete');
    expect(r.memory).to.deep.equal(guestRam());
  });

  it('refuse a channel of another migration before it writes any page', async () => {
    const r = await receive((s) => s.write(Buffer.concat(channel('ffeeddccbbaa99887766554433221100'))));
    expect(r.outcome).to.equal('failed: a multifd channel: channel 0 belongs to another migration (session ffeeddccbbaa99887766554433221100)');
    expect(r.memory.every((m) => m.every((b) => b === 0))).to.equal(true);
  });

  it('fail the migration when a channel is cut before its final sync', async () => {
    const r = await receive((s) => s.end(Buffer.concat(channel(SESSION, true, false))));
    expect(r.outcome).to.match(/^failed: multifd channel 0: truncated stream|^failed: multifd channel 0: the source closed the channel before its final sync/);
  });
});
