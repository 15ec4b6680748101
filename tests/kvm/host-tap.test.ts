// On the host: a tap in a network namespace of our own answers ping through the Tap adapter (ARP and ICMP frames crafted here), and open errors name the tap.
import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { CLONE_NEWNET, setns } from '../../machine/host/libc-extra.js';
import { TAP_MAX_READ, TAP_VNET_HDR_SIZE, Tap, TapError } from '../../machine/host/tap.js';
import { TapNetBackend } from '../../machine/host/tap-backend.js';
import { O_CLOEXEC, closeFd, openPath } from '../../machine/kvm/libc.js';
import { skipBecause } from '../harness/skip.js';

const NS = `tsvirt-t-${process.pid}`;
const IFNAME = `tsvt${process.pid % 100000}`;
const HOST_IP = [10, 77, 0, 1];
const GUEST_IP = [10, 77, 0, 2];
const GUEST_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs `fn` with this thread in the test's network namespace (where taps are looked up and created). */
function inNamespace<T>(fn: () => T): T {
  const home = openPath('/proc/thread-self/ns/net', O_CLOEXEC);
  const there = openPath(`/run/netns/${NS}`, O_CLOEXEC);
  try {
    setns(there, CLONE_NEWNET);
    try {
      return fn();
    } finally {
      setns(home, CLONE_NEWNET);
    }
  } finally {
    closeFd(there);
    closeFd(home);
  }
}

/** The Internet checksum of `b`. */
function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

const eq = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, i) => v === b[i]);

/**
 * Plays the guest at GUEST_IP: answers the ARP request for it and the ICMP echo request to it.
 * `frame` is an Ethernet frame without the vnet header; returns the reply's pieces, or undefined.
 */
function guestReply(frame: Uint8Array): { kind: string; pieces: Uint8Array[] } | undefined {
  const type = (frame[12] << 8) | frame[13];
  const requester = frame.subarray(6, 12);
  if (type === 0x0806 && frame[21] === 1 && eq(frame.subarray(38, 42), GUEST_IP)) {
    const eth = Uint8Array.from([...requester, ...GUEST_MAC, 0x08, 0x06]);
    const arp = Uint8Array.from([0, 1, 8, 0, 6, 4, 0, 2, ...GUEST_MAC, ...GUEST_IP, ...frame.subarray(22, 28), ...frame.subarray(28, 32)]);
    return { kind: 'arp', pieces: [eth, arp] };
  }
  const ipHdrLen = (frame[14] & 0xf) * 4;
  if (type === 0x0800 && frame[23] === 1 && eq(frame.subarray(30, 34), GUEST_IP) && frame[14 + ipHdrLen] === 8) {
    const pkt = Uint8Array.from(frame.subarray(14));
    pkt.set(frame.subarray(30, 34), 12);
    pkt.set(frame.subarray(26, 30), 16);
    pkt[8] = 64;
    pkt[10] = pkt[11] = 0;
    const hsum = checksum(pkt.subarray(0, ipHdrLen));
    pkt[10] = hsum >> 8;
    pkt[11] = hsum & 0xff;
    const icmp = pkt.subarray(ipHdrLen);
    icmp[0] = 0;
    icmp[2] = icmp[3] = 0;
    const csum = checksum(icmp);
    icmp[2] = csum >> 8;
    icmp[3] = csum & 0xff;
    const eth = Uint8Array.from([...requester, ...GUEST_MAC, 0x08, 0x00]);
    return { kind: 'icmp', pieces: [eth, pkt.subarray(0, ipHdrLen), icmp] };
  }
  return undefined;
}

function ping(): { child: ChildProcess; done: Promise<number | null> } {
  const child = spawn('ip', ['netns', 'exec', NS, 'ping', '-n', '-c', '1', '-W', '5', GUEST_IP.join('.')], { stdio: 'ignore' });
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, done };
}

describe('host: tap adapter in a private network namespace', function () {
  this.timeout(30000);
  const taps: Tap[] = [];
  const children: ChildProcess[] = [];

  before(function () {
    if (!fs.existsSync('/dev/net/tun')) skipBecause(this, '/dev/net/tun is missing');
    if (process.getuid?.() !== 0) skipBecause(this, 'creating a network namespace needs root');
    ip('netns', 'add', NS);
    ip('-n', NS, 'tuntap', 'add', 'dev', IFNAME, 'mode', 'tap');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
  });

  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    for (const t of taps.splice(0)) t.close();
  });

  after(() => {
    // Always remove what the suite made, even after a failure; each step on its own.
    for (const t of taps.splice(0)) t.close();
    try { ip('-n', NS, 'tuntap', 'del', 'dev', IFNAME, 'mode', 'tap'); } catch { /* not created */ }
    try { ip('netns', 'del', NS); } catch { /* not created */ }
  });

  const open = (name = IFNAME) => {
    const tap = inNamespace(() => Tap.open(name));
    taps.push(tap);
    return tap;
  };

  const bringUp = () => {
    ip('-n', NS, 'addr', 'replace', `${HOST_IP.join('.')}/24`, 'dev', IFNAME);
    ip('-n', NS, 'link', 'set', IFNAME, 'up');
  };

  it('answers a ping: reads ARP and ICMP requests with their virtio_net_hdr and writes the replies with writev', async () => {
    const tap = open();
    expect(tap.ifname).to.equal(IFNAME);
    bringUp();
    const seen: string[] = [];
    const buf = new Uint8Array(TAP_MAX_READ);
    tap.onReadable(() => {
      for (let n = tap.read(buf); n > 0; n = tap.read(buf)) {
        const hdr = buf.subarray(0, TAP_VNET_HDR_SIZE);
        // No offloads were enabled: no GSO, no partial checksum (flags may only say DATA_VALID).
        expect(hdr[1], 'gso_type').to.equal(0);
        expect(hdr[0] & 1, 'NEEDS_CSUM').to.equal(0);
        const answer = guestReply(buf.subarray(TAP_VNET_HDR_SIZE, n));
        if (!answer) continue;
        seen.push(answer.kind);
        expect(tap.writev([new Uint8Array(TAP_VNET_HDR_SIZE), ...answer.pieces])).to.equal(true);
      }
    });
    const p = ping();
    children.push(p.child);
    expect(await p.done, 'ping exit code').to.equal(0);
    expect(seen).to.include.members(['arp', 'icmp']);
  });

  it('carries frames through TapNetBackend, keeping a frame the device could not take until it resumes', async () => {
    const tap = open();
    bringUp();
    // The kernel may already hold the neighbour entry from the previous test: forget it so ARP runs again.
    try { ip('-n', NS, 'neigh', 'flush', 'dev', IFNAME); } catch { /* nothing to flush */ }
    const backend = new TapNetBackend(tap);
    let refusals = 1;
    const kinds: string[] = [];
    backend.startReceive((frame) => {
      const answer = guestReply(frame);
      if (!answer) return true;
      if (refusals > 0) {
        // The device has no rx buffers: the backend must keep this frame and stop reading.
        refusals--;
        setTimeout(() => backend.resumeReceive(), 20);
        return false;
      }
      kinds.push(answer.kind);
      expect(backend.send(answer.pieces)).to.equal(true);
      return true;
    });
    const p = ping();
    children.push(p.child);
    expect(await p.done, 'ping exit code').to.equal(0);
    expect(kinds).to.include.members(['arp', 'icmp']);
    expect(backend.sent).to.be.at.least(2);
    backend.stopReceive();
  });

  it('fails with EBUSY, naming the tap, while another fd holds it', () => {
    open();
    let err: unknown;
    try {
      open();
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(TapError);
    expect((err as TapError).message).to.equal(`-netdev tap,ifname=${IFNAME}: cannot open tap: Device or resource busy`);
    expect((err as TapError).errno).to.equal(16);
    expect((err as TapError).reason).to.equal('cannot open tap: Device or resource busy');
  });

  it('creates a tap that does not exist yet, for the life of its fd', () => {
    const name = `tsvn${process.pid % 100000}`;
    const tap = open(name);
    expect(ip('-n', NS, '-o', 'link', 'show', name)).to.contain(name);
    tap.close();
    expect(() => ip('-n', NS, 'link', 'show', name)).to.throw();
  });

  it('refuses an interface name longer than 15 bytes', () => {
    expect(() => Tap.open('a-very-long-tap-name')).to.throw(TapError, /-netdev tap,ifname=a-very-long-tap-name: interface name must be 1 to 15 bytes/);
  });
});
