// End to end on real KVM: the test guest boots from tsvirt's command line, sees the configured CPUs and memory map, talks on the console and powers off.

import { expect } from 'chai';
import { e820Map } from '../../machine/layout.js';
import { testGuest } from '../harness/guest.js';
import { requireKvm } from '../harness/skip.js';
import { VmmProcess } from '../harness/tsvirt-process.js';

const MiB = 1024 * 1024;

/** The E820 lines the guest prints, as {addr, size, type}. */
function parseE820(console: string): { addr: number; size: number; type: number }[] {
  return [...console.matchAll(/E820 (0x[0-9a-f]+) (0x[0-9a-f]+) (\d+)/g)].map((m) => ({ addr: Number(m[1]), size: Number(m[2]), type: Number(m[3]) }));
}

describe('test guest on tsvirt', function () {
  this.timeout(60000);
  before(requireKvm);
  const vms: VmmProcess[] = [];
  afterEach(async () => {
    await Promise.all(vms.splice(0).map((v) => v.kill()));
  });
  const start = (args: string[]) => {
    const vm = VmmProcess.tsvirt(['-machine', 'q35', '-kernel', testGuest(), ...args]);
    vms.push(vm);
    return vm;
  };

  it('boots with -smp 1 and reports one CPU, the memory map and memory size tsvirt configured', async () => {
    const vm = start(['-m', '256', '-smp', '1', '-append', 'console=ttyS0 hb_ms=100']);
    await vm.waitFor(/CMDLINE console=ttyS0 hb_ms=100/);
    const mem = await vm.waitFor(/MEM ram=(\d+)/);
    expect(parseE820(vm.output)).to.deep.equal(e820Map(256 * MiB));
    const ramBytes = e820Map(256 * MiB).filter((e) => e.type === 1).reduce((n, e) => n + e.size, 0);
    expect(Number(mem[1])).to.equal(ramBytes);
    const cpus = await vm.waitFor(/CPUS found=(\d+) started=(\d+)/);
    expect([cpus[1], cpus[2]]).to.deep.equal(['1', '1']);
    await vm.waitFor(/READY/);
    await vm.waitFor(/HB seq=0 /);
  });

  it('boots with -smp 4 and starts all four CPUs', async () => {
    const vm = start(['-m', '512M', '-smp', '4']);
    const cpus = await vm.waitFor(/CPUS found=(\d+) started=(\d+)/, 30000);
    expect([cpus[1], cpus[2]]).to.deep.equal(['4', '4']);
    await vm.waitFor(/READY/);
  });

  it('reports memory above 4 GiB when the guest has more than the low RAM limit', async () => {
    const vm = start(['-m', '3G', '-smp', '1']);
    await vm.waitFor(/MEM ram=(\d+)/);
    expect(parseE820(vm.output)).to.deep.equal(e820Map(3 * 1024 * MiB));
    expect(parseE820(vm.output).some((e) => e.addr === 0x1_0000_0000 && e.type === 1)).to.equal(true);
  });

  it('answers a line typed into the serial console', async () => {
    const vm = start(['-m', '128', '-smp', '1']);
    await vm.waitFor(/READY/);
    vm.send('echo hello from the host\r');
    await vm.waitFor(/ECHO hello from the host/);
  });

  it('ends the process with exit code 0 when the guest powers off', async () => {
    const vm = start(['-m', '128', '-smp', '2']);
    await vm.waitFor(/READY/);
    vm.send('poweroff\r');
    await vm.waitFor(/POWEROFF/);
    const exit = await vm.waitExit(10000);
    expect(exit).to.deep.equal({ code: 0, signal: null });
  });

  it('reboots the guest on reset and boots it again', async () => {
    const vm = start(['-m', '128', '-smp', '2']);
    await vm.waitFor(/READY/);
    vm.send('reset\r');
    await vm.waitFor(/RESET/);
    await vm.waitFor(/TSVIRT-GUEST BOOT/);
    await vm.waitFor(/CPUS found=2 started=2/);
    await vm.waitFor(/READY/);
  });

  it('exits with 0 on a guest reset when started with -no-reboot', async () => {
    const vm = start(['-m', '128', '-no-reboot']);
    await vm.waitFor(/READY/);
    vm.send('reset\r');
    const exit = await vm.waitExit(10000);
    expect(exit.code).to.equal(0);
  });
});
