// A real Linux (Debian's 6.1 vmlinux, booted through PVH) reads tsvirt's machine: memory map, CPU count, memory size.

import { expect } from 'chai';
import { e820Map, E820_RAM } from '../../machine/layout.js';
import { debianVmlinux } from '../harness/guest.js';
import { kvmUnavailableReason, skipBecause } from '../harness/skip.js';
import { VmmProcess } from '../harness/tsvirt-process.js';

const MiB = 1024 * 1024;

describe('Debian Linux reads the machine tsvirt built', function () {
  // Under this host's nested PVM the kernel's ring 0 is emulated: about 25 s to print its memory total.
  this.timeout(180000);
  let vm: VmmProcess | undefined;
  after(async () => vm?.kill());

  it('prints the e820 map, 2 CPUs and the memory total tsvirt configured', async function () {
    const why = kvmUnavailableReason();
    if (why) skipBecause(this, why);
    const kernel = debianVmlinux();
    if (!kernel) skipBecause(this, 'Debian vmlinux not fetched (make kernel)');
    const memSize = 512 * MiB;
    vm = VmmProcess.tsvirt(['-machine', 'q35', '-kernel', kernel!, '-m', '512', '-smp', '2',
      '-append', 'earlyprintk=serial console=ttyS0 noxsave clearcpuid=cx16 nokaslr']);
    await vm.waitFor(/Command line: earlyprintk=serial console=ttyS0 noxsave clearcpuid=cx16 nokaslr/, 60000);
    await vm.waitFor(/smpboot: Allowing 2 CPUs, 0 hotplug CPUs/, 90000);
    const mem = await vm.waitFor(/Memory: \d+K\/(\d+)K available/, 150000);

    // The map Linux printed is the map tsvirt built (Linux merges adjacent reserved ranges when printing).
    const printed = [...vm.output.matchAll(/BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (usable|reserved)/g)]
      .map((m) => ({ start: parseInt(m[1], 16), end: parseInt(m[2], 16) + 1, usable: m[3] === 'usable' }));
    const usable = e820Map(memSize).filter((e) => e.type === E820_RAM).map((e) => ({ start: e.addr, end: e.addr + e.size, usable: true }));
    expect(printed.filter((p) => p.usable)).to.deep.equal(usable);
    expect(printed.some((p) => !p.usable && p.start === 0xb0000000)).to.equal(true, 'ECAM window reserved');

    // Linux's total counts every usable page it manages: all usable RAM less at most the first page.
    const usableKiB = usable.reduce((n, r) => n + (r.end - r.start), 0) / 1024;
    const totalKiB = Number(mem[1]);
    expect(totalKiB).to.be.within(usableKiB - 64, usableKiB);
    expect(vm.output).to.match(/nr_cpu_ids:2 /);
    expect(vm.output).to.match(/ACPI: RSDP 0x00000000000E0000 .*TSVIRT/);
  });
});
