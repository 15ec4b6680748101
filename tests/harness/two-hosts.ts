// Two test hosts on one machine: network namespaces joined by a veth pair, optionally shaped with tc; always deleted.

import { execFileSync, spawnSync } from 'node:child_process';
import { tsvirtMain } from './paths.js';
import { VmmProcess } from './tsvirt-process.js';

/** Host A is 10.0.3.1, host B 10.0.3.2, inside namespaces this test creates (nowhere else). */
export class TwoHosts {
  readonly a: string;
  readonly b: string;
  readonly addrA = '10.0.3.1';
  readonly addrB = '10.0.3.2';

  /**
   * `shape.rate` limits each direction with tbf. (The issue also asks for 1 ms of delay; that needs the netem qdisc,
   * which this machine's kernel does not have and cannot load, so the link is rate-shaped only.)
   */
  constructor(tag: string, shape?: { rate: string }) {
    this.a = `tsvirt-${tag}a-${process.pid}`;
    this.b = `tsvirt-${tag}b-${process.pid}`;
    this.delete();
    try {
      this.setUp(shape);
    } catch (e) {
      this.delete();
      throw e;
    }
  }

  private setUp(shape?: { rate: string }): void {
    const ip = (...args: string[]) => execFileSync('ip', args);
    ip('netns', 'add', this.a);
    ip('netns', 'add', this.b);
    const va = `tsva${process.pid % 100000}`;
    const vb = `tsvb${process.pid % 100000}`;
    ip('link', 'add', va, 'netns', this.a, 'type', 'veth', 'peer', 'name', vb, 'netns', this.b);
    for (const [ns, dev, addr] of [[this.a, va, this.addrA], [this.b, vb, this.addrB]] as const) {
      ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${addr}/24`, 'dev', dev);
      ip('netns', 'exec', ns, 'ip', 'link', 'set', dev, 'up');
      if (shape) ip('netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', shape.rate, 'burst', '256kb', 'latency', '50ms');
    }
  }

  /** Runs tsvirt inside namespace `ns`. */
  tsvirt(ns: string, args: string[], main = tsvirtMain): VmmProcess {
    return new VmmProcess('ip', ['netns', 'exec', ns, process.execPath, main, ...args, ...(args.includes('-serial') ? [] : ['-serial', 'stdio'])]);
  }

  delete(): void {
    for (const ns of [this.a, this.b]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}
