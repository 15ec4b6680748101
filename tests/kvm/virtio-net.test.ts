// The test guest answers ping and echoes UDP through virtio-net and a tap in a network namespace the test creates.

import { expect } from 'chai';
import { testGuest } from '../harness/guest.js';
import { GUEST_IP, NetNs, UDP_ECHO_CLIENT } from '../harness/netns.js';
import { kvmUnavailableReason, skipBecause } from '../harness/skip.js';
import type { VmmProcess } from '../harness/tsvirt-process.js';

describe('virtio-net with the test guest', function () {
  this.timeout(120000);
  let ns: NetNs | undefined;
  let vm: VmmProcess | undefined;
  before(function () {
    const why = kvmUnavailableReason() ?? (process.getuid?.() === 0 ? undefined : 'network namespaces need root');
    if (why) skipBecause(this, why);
    ns = new NetNs('net');
  });
  after(async () => {
    await vm?.kill();
    ns?.delete();
  });

  it('answers ping from the namespace and echoes 10 MiB of UDP intact', async () => {
    vm = ns!.tsvirt(['-machine', 'q35', '-kernel', testGuest(), '-m', '128', '-append', `console=ttyS0 ip=${GUEST_IP}`,
      '-netdev', `tap,id=n0,ifname=${ns!.tap}`, '-device', 'virtio-net-pci,netdev=n0,id=nic0,mac=52:54:00:12:34:56,addr=0x4']);
    await vm.waitFor(/NET 0 mac=52:54:00:12:34:56 link=up/);
    await vm.waitFor(/READY/);
    const ping = ns!.run('ping', ['-c', '5', '-i', '0.2', '-W', '2', GUEST_IP]);
    expect(ping.stdout, ping.stderr).to.match(/5 packets transmitted, 5 received/);
    const r = ns!.node(UDP_ECHO_CLIENT, [String(10 * 1024 * 1024), '1400', '32'], 60000);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
    expect(summary, r.stderr).to.include({ ok: true, bad: 0 });
    expect(summary.bytes).to.be.at.least(10 * 1024 * 1024);
    console.log(`      UDP echo: ${summary.bytes} bytes in ${summary.ms} ms, ${summary.retransmits} retransmits`);
    vm.send('netstat\r');
    await vm.waitFor(/NETSTAT rx=\d+ tx=\d+ arp=\d+ icmp=5 udp=\d+/);
  });

  it('reports a tap that cannot be opened, naming -netdev', async () => {
    // The test's tap is held by the running VM above; a second opener gets EBUSY.
    const second = ns!.tsvirt(['-kernel', testGuest(), '-m', '64', '-netdev', `tap,id=n1,ifname=${ns!.tap}`, '-device', 'virtio-net-pci,netdev=n1,addr=0x5']);
    const exit = await second.waitExit(15000);
    expect(exit.code).to.equal(1);
    expect(second.stderr.trim()).to.match(/^tsvirt: -netdev: tap,id=n1: .*(busy|Device or resource busy)/i);
  });
});
