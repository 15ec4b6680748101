// Checks every KVM struct layout and ioctl number tsvirt uses against the installed <linux/kvm.h>.

import { expect } from 'chai';
import * as fs from 'node:fs';
import { KVM } from '../../../../machine/kvm/ioctls.js';
import { ALL_LAYOUTS } from '../../../../machine/kvm/structs.js';
import { runC } from '../../../harness/compile-c.js';

// Our layout names for members that live inside unions or nested structs in the header.
const MEMBER_PATHS: Record<string, Record<string, string>> = {
  kvm_run: {
    io_direction: 'io.direction', io_size: 'io.size', io_port: 'io.port', io_count: 'io.count', io_data_offset: 'io.data_offset',
    mmio_phys_addr: 'mmio.phys_addr', mmio_data: 'mmio.data', mmio_len: 'mmio.len', mmio_is_write: 'mmio.is_write',
    fail_entry_reason: 'fail_entry.hardware_entry_failure_reason', fail_entry_cpu: 'fail_entry.cpu',
    internal_suberror: 'internal.suberror', internal_ndata: 'internal.ndata', internal_data: 'internal.data',
    system_event_type: 'system_event.type', system_event_ndata: 'system_event.ndata',
  },
  kvm_sregs: { interrupt_bitmap: 'interrupt_bitmap' },
  kvm_fpu: { fcw: 'fcw', mxcsr: 'mxcsr' },
};
const IOCTL_NAMES: Record<string, string> = { GET_XSAVE2: 'KVM_GET_XSAVE2' };

function program(): string {
  const lines: string[] = ['#include <stdio.h>', '#include <stddef.h>', '#include <linux/kvm.h>', 'int main(void) {'];
  for (const l of ALL_LAYOUTS) {
    lines.push(`printf("size ${l.name} %zu\\n", sizeof(struct ${l.name}));`);
    for (const field of Object.keys(l.fields)) {
      const member = MEMBER_PATHS[l.name]?.[field] ?? field;
      lines.push(`printf("offset ${l.name}.${field} %zu\\n", offsetof(struct ${l.name}, ${member}));`);
    }
  }
  for (const name of Object.keys(KVM)) lines.push(`printf("ioctl ${name} %lu\\n", (unsigned long)${IOCTL_NAMES[name] ?? 'KVM_' + name});`);
  lines.push('return 0; }');
  return lines.join('\n');
}

describe('KVM struct layouts and ioctl numbers', function () {
  before(function () {
    if (!fs.existsSync('/usr/include/linux/kvm.h')) {
      console.log('      skipped: /usr/include/linux/kvm.h is not installed');
      this.skip();
    }
  });

  it('match the installed linux/kvm.h exactly', () => {
    const facts = new Map<string, number>();
    for (const line of runC('kvm-layouts', program()).trim().split('\n')) {
      const [, key, value] = line.split(' ');
      facts.set(key, Number(value));
    }
    const mismatches: string[] = [];
    for (const l of ALL_LAYOUTS) {
      if (facts.get(l.name) !== l.size) mismatches.push(`sizeof ${l.name}: header ${facts.get(l.name)}, ours ${l.size}`);
      for (const [field, [off]] of Object.entries(l.fields)) {
        const key = `${l.name}.${field}`;
        if (facts.get(key) !== off) mismatches.push(`offset ${key}: header ${facts.get(key)}, ours ${off}`);
      }
    }
    for (const [name, value] of Object.entries(KVM)) {
      if (facts.get(name) !== value) mismatches.push(`KVM_${name}: header ${facts.get(name)}, ours ${value}`);
    }
    expect(mismatches).to.deep.equal([]);
  });
});
