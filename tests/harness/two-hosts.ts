// Two test hosts on one machine: network namespaces joined by veth, optionally shaped (rate with tc, delay by a wire process); always deleted.

import { execFileSync, spawnSync } from 'node:child_process';
import { DelayWire, parseDelayUs } from './delay-wire.js';
import { pingRtt, tcpRate, type Rtt, type Transfer } from './link-probe.js';
import { tsvirtMain } from './paths.js';
import { VmmProcess } from './tsvirt-process.js';

/** How the link between the hosts is shaped, each direction alike: `rate` as tc writes it (`1gbit`), `delay` one way (`1ms`). */
export interface LinkShape {
  rate?: string;
  delay?: string;
}

/**
 * Host A is 10.0.3.1, host B 10.0.3.2, inside namespaces this test creates (nowhere else).
 *
 * Unshaped or rate-only, the hosts are joined by one veth pair, and `shape.rate` limits each host's sending with tbf.
 * With `shape.delay` the link gets a middle: A <-veth-> [wire namespace] <-veth-> B, where a small C process
 * (wire-delay.c) passes every frame across `delay` after it arrived, in each direction; the rate is still tbf on the
 * hosts' ends. The delay cannot be a qdisc on this machine: its kernel (built without modules) has neither netem nor
 * the fq/etf qdiscs that would honour an eBPF-set departure time (EDT). The wire keeps GSO frames whole, so 1 Gbit/s
 * with 1 ms each way measures about 950 Mbit/s and a 2.1 ms ping, the wire using about 15% of one core.
 */
export class TwoHosts {
  readonly a: string;
  readonly b: string;
  /** The middle namespace that holds the delaying wire, when the link has a delay. */
  readonly wire?: string;
  readonly addrA = '10.0.3.1';
  readonly addrB = '10.0.3.2';
  private delayWire?: DelayWire;

  constructor(tag: string, shape?: LinkShape) {
    this.a = `tsvirt-${tag}a-${process.pid}`;
    this.b = `tsvirt-${tag}b-${process.pid}`;
    if (shape?.delay) this.wire = `tsvirt-${tag}w-${process.pid}`;
    this.delete();
    try {
      this.setUp(shape);
    } catch (e) {
      this.delete();
      throw e;
    }
  }

  private setUp(shape?: LinkShape): void {
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
    const inNs = (ns: string, ...args: string[]) => ip('netns', 'exec', ns, ...args);
    const delayUs = shape?.delay ? parseDelayUs(shape.delay) : 0;
    ip('netns', 'add', this.a);
    ip('netns', 'add', this.b);
    const va = `tsva${process.pid % 100000}`;
    const vb = `tsvb${process.pid % 100000}`;
    if (!this.wire) {
      ip('link', 'add', va, 'netns', this.a, 'type', 'veth', 'peer', 'name', vb, 'netns', this.b);
    } else {
      ip('netns', 'add', this.wire);
      const wa = `tswa${process.pid % 100000}`;
      const wb = `tswb${process.pid % 100000}`;
      ip('link', 'add', va, 'netns', this.a, 'type', 'veth', 'peer', 'name', wa, 'netns', this.wire);
      ip('link', 'add', vb, 'netns', this.b, 'type', 'veth', 'peer', 'name', wb, 'netns', this.wire);
      // The middle only carries frames: no IPv6 link-local address, so its own stack never sends on the link. The
      // ends are up before the wire binds to them (a packet socket on a down interface reports an error, ending it).
      for (const w of [wa, wb]) inNs(this.wire, 'ip', 'link', 'set', w, 'addrgenmode', 'none', 'up');
      this.delayWire = new DelayWire(this.wire, wa, wb, delayUs);
    }
    for (const [ns, dev, addr] of [[this.a, va, this.addrA], [this.b, vb, this.addrB]] as const) {
      inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
      inNs(ns, 'ip', 'addr', 'add', `${addr}/24`, 'dev', dev);
      inNs(ns, 'ip', 'link', 'set', dev, 'up');
      if (shape?.rate) inNs(ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', shape.rate, 'burst', '256kb', 'latency', '50ms');
    }
  }

  /** Runs tsvirt inside namespace `ns`. */
  tsvirt(ns: string, args: string[], main = tsvirtMain): VmmProcess {
    return new VmmProcess('ip', ['netns', 'exec', ns, process.execPath, main, ...args, ...(args.includes('-serial') ? [] : ['-serial', 'stdio'])]);
  }

  /** Ping round-trip times from A to B, in milliseconds. */
  pingRtt(count = 20): Rtt {
    return pingRtt(this.a, this.addrB, count);
  }

  /** Times a `bytes` TCP transfer from A to B. */
  tcpRate(bytes: number): Promise<Transfer> {
    return tcpRate(this.a, this.b, this.addrB, bytes);
  }

  /** Ends the wire and deletes the namespaces (and with them the veths and the tc qdiscs); safe to call twice. */
  delete(): void {
    this.delayWire?.stop();
    this.delayWire = undefined;
    for (const ns of [this.a, this.b, this.wire]) if (ns) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}
