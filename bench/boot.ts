// make bench-boot: time from process start to the test guest's READY line, tsvirt against QEMU 7.2, medians and ratio.

import { execFileSync } from 'node:child_process';
import { testGuest } from '../tests/harness/guest.js';
import { VmmProcess } from '../tests/harness/tsvirt-process.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timeToReady(vm: VmmProcess): Promise<number> {
  await vm.waitFor(/READY/, 60000);
  const ms = performance.now() - vm.startedAt;
  await vm.kill();
  return ms;
}

async function main(): Promise<void> {
  const guest = testGuest();
  const qemu = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64 || true'], { encoding: 'utf8' }).trim();
  const tsvirt: number[] = [];
  const qemuTimes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    tsvirt.push(await timeToReady(VmmProcess.tsvirt(['-machine', 'q35', '-kernel', guest, '-m', '256', '-smp', '1'])));
    if (qemu) {
      qemuTimes.push(await timeToReady(new VmmProcess(qemu, ['-machine', 'q35,accel=kvm', '-m', '256', '-smp', '1', '-nographic', '-nodefaults', '-serial', 'stdio', '-kernel', guest])));
    }
  }
  const t = median(tsvirt);
  console.log(`boot to READY (test guest, 256 MiB, 1 vCPU), ${RUNS} runs each, medians:`);
  console.log(`| VMM | median ms | runs (ms) |`);
  console.log(`| --- | --- | --- |`);
  console.log(`| tsvirt | ${t.toFixed(0)} | ${tsvirt.map((x) => x.toFixed(0)).join(', ')} |`);
  if (qemu) {
    const q = median(qemuTimes);
    console.log(`| QEMU 7.2 | ${q.toFixed(0)} | ${qemuTimes.map((x) => x.toFixed(0)).join(', ')} |`);
    console.log(`ratio tsvirt/QEMU: ${(t / q).toFixed(3)} (target at most 0.1)`);
  } else {
    console.log('QEMU not installed: run `make deps` (installs qemu-system-x86) for the comparison');
  }
}

void main();
