// On real KVM: ioeventfd doorbells written by a real-mode guest, MSI delivery by KVM_SIGNAL_MSI and by irqfd routes, and ISA lines surviving KVM_SET_GSI_ROUTING.
import { expect } from 'chai';
import { kvmDefaultGsiRoutes, qemuPcGsiRoutes } from '../../machine/host/gsi-routes.js';
import { EventFd, EventfdWatcher } from '../../machine/host/eventfd.js';
import { MsiRouter } from '../../machine/host/msi-router.js';
import { VirtioDoorbells } from '../../machine/host/virtio-doorbells.js';
import { vcpuCpuid } from '../../machine/cpuid.js';
import { Kvm } from '../../machine/kvm/system.js';
import { VcpuFd } from '../../machine/kvm/vcpu.js';
import { IRQCHIP_IOAPIC, IRQCHIP_PIC_MASTER, IRQCHIP_PIC_SLAVE, type GsiRoute, type VmFd } from '../../machine/kvm/vm.js';
import { KVM_IOAPIC_STATE, KVM_PIC_STATE, decode } from '../../machine/kvm/structs.js';
import { allocateRam, freeRam, type Ram } from '../../machine/memory.js';
import { VcpuHandle, type VcpuExitHandler } from '../../machine/vcpu/handle.js';
import { requireKvm } from '../harness/skip.js';

const CODE = 0x1000;
const MMIO_DOORBELL = 0xd000_0000; // in the PCI hole: no memory slot, so KVM's MMIO bus sees the write
const PIO_DOORBELL = 0x510;
/** kvm_irqchip.chip starts 8 bytes in. */
const CHIP = 8;
const LAPIC_SVR = 0xf0;
const LAPIC_IRR = 0x200;
const MSI_ADDR = 0xfee0_0000;

/** One VM with an irqchip, RAM and one vCPU fd; everything is released by `close`. */
class TestVm {
  readonly kvm = Kvm.open();
  readonly vm: VmFd;
  readonly ram: Ram;
  readonly vcpu: VcpuFd;
  handle?: VcpuHandle;

  constructor() {
    this.vm = this.kvm.createVm();
    this.vm.setTssAddr(0xfffb_d000);
    this.vm.createIrqchip();
    this.ram = allocateRam(this.vm, 16 << 20);
    this.vcpu = new VcpuFd(this.vm.createVcpu(0), 0);
    this.vcpu.setCpuid2(vcpuCpuid(this.kvm.getSupportedCpuid(), 0, 1));
  }

  /** Real mode at CODE with cs base 0, and ds based at `dsBase` (a segment base need not be selector << 4 in KVM's state). */
  loadRealMode(code: number[], dsBase: number): void {
    this.ram.memory.write(CODE, Uint8Array.from(code));
    const s = this.vcpu.getSregs();
    this.vcpu.setSregs({ cs: { ...s.cs, base: 0n, selector: 0 }, ds: { ...s.ds, base: BigInt(dsBase), selector: 0 } });
    this.vcpu.setRegs({ rip: BigInt(CODE), rflags: 2n });
  }

  async run(exits: Partial<VcpuExitHandler>): Promise<VcpuHandle> {
    const noop = () => {};
    this.handle = new VcpuHandle(this.vcpu, 0, this.vm.vcpuMmapSize, {
      pioRead: (_p, d) => d.fill(0xff), pioWrite: noop, mmioRead: (_a, d) => d.fill(0xff), mmioWrite: noop,
      shutdown: noop, reset: noop, failed: (_i, r, d) => { throw new Error(`vCPU failed: reason ${r} detail ${d}`); },
      ...exits,
    });
    await this.handle.start();
    this.handle.resume();
    return this.handle;
  }

  /** Software-enables the LAPIC (SVR bit 8) so fixed interrupts are accepted into IRR. */
  enableLapic(): void {
    const lapic = this.vcpu.getLapic();
    const dv = new DataView(lapic.buffer);
    dv.setUint32(LAPIC_SVR, dv.getUint32(LAPIC_SVR, true) | 0x1ff, true);
    this.vcpu.setLapic(lapic);
  }

  irrHas(vector: number): boolean {
    const dv = new DataView(this.vcpu.getLapic().buffer);
    return ((dv.getUint32(LAPIC_IRR + (vector >> 5) * 0x10, true) >>> (vector & 31)) & 1) === 1;
  }

  /** IRR of the IOAPIC and of both PICs, as one number each. */
  pending(): { ioapic: number; master: number; slave: number } {
    const ioapic = decode(KVM_IOAPIC_STATE, this.vm.getIrqchip(IRQCHIP_IOAPIC), CHIP).irr as number;
    const master = decode(KVM_PIC_STATE, this.vm.getIrqchip(IRQCHIP_PIC_MASTER), CHIP).irr as number;
    const slave = decode(KVM_PIC_STATE, this.vm.getIrqchip(IRQCHIP_PIC_SLAVE), CHIP).irr as number;
    return { ioapic, master, slave };
  }

  async close(): Promise<void> {
    if (this.handle) await this.handle.stop();
    this.vcpu.close();
    freeRam(this.ram.backings);
    this.vm.close();
    this.kvm.close();
  }
}

async function until(what: string, cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('host: ioeventfd doorbells on KVM', function () {
  this.timeout(20000);
  before(requireKvm);
  let t: TestVm | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('calls back on the main loop when a real-mode guest writes the MMIO and port doorbells, and lets other writes exit', async () => {
    t = new TestVm();
    const router = new MsiRouter(t.vm);
    const kicks: string[] = [];
    let resolveBoth!: () => void;
    const both = new Promise<void>((r) => (resolveBoth = r));
    const note = (what: string) => {
      kicks.push(what);
      if (kicks.includes('mmio') && kicks.includes('pio')) resolveBoth();
    };
    const mmio = router.ioeventfdNotify(MMIO_DOORBELL, 2, 0, () => note('mmio'));
    const pio = router.ioeventfdNotify(PIO_DOORBELL, 2, undefined, () => note('pio'), { pio: true });
    const exits: string[] = [];
    t.loadRealMode([
      0xc7, 0x06, 0x00, 0x00, 0x05, 0x00, // mov word [0], 5   -> datamatch 0 does not match: an MMIO exit
      0xc7, 0x06, 0x00, 0x00, 0x00, 0x00, // mov word [0], 0   -> ioeventfd
      0xba, 0x10, 0x05, //                   mov dx, 0x510
      0xb8, 0x07, 0x00, //                   mov ax, 7
      0xef, //                               out dx, ax        -> ioeventfd (any value)
      0xf4, 0xeb, 0xfd, //                   hlt; jmp hlt
    ], MMIO_DOORBELL);
    await t.run({
      mmioWrite: (addr, d) => exits.push(`mmio 0x${addr.toString(16)} ${d.length} ${d[0]}`),
      pioWrite: (port) => exits.push(`pio 0x${port.toString(16)}`),
    });
    await both;
    expect(kicks.sort()).to.deep.equal(['mmio', 'pio']);
    expect(exits).to.deep.equal([`mmio 0x${MMIO_DOORBELL.toString(16)} 2 5`]);
    await t.handle!.pause();
    expect(mmio.address).to.equal(BigInt(MMIO_DOORBELL));
    router.close();
    expect(mmio.address).to.equal(null);
    expect(pio.address).to.equal(null);
  });

  it('follows a moved BAR: the doorbell at the new address rings, the old address exits to the MMIO bus', async () => {
    t = new TestVm();
    const router = new MsiRouter(t.vm);
    let rings = 0;
    let rang!: () => void;
    const ringing = new Promise<void>((r) => (rang = r));
    const bell = router.ioeventfdNotify(MMIO_DOORBELL, 2, 0, () => {
      rings++;
      rang();
    });
    bell.move(MMIO_DOORBELL + 0x1000);
    expect(bell.address).to.equal(BigInt(MMIO_DOORBELL + 0x1000));
    const exits: number[] = [];
    t.loadRealMode([
      0xc7, 0x06, 0x00, 0x00, 0x00, 0x00, // mov word [0], 0      (old address: exits)
      0xc7, 0x06, 0x00, 0x10, 0x00, 0x00, // mov word [0x1000], 0 (new address: rings)
      0xf4, 0xeb, 0xfd,
    ], MMIO_DOORBELL);
    await t.run({ mmioWrite: (addr) => exits.push(addr) });
    await ringing;
    expect(rings).to.equal(1);
    expect(exits).to.deep.equal([MMIO_DOORBELL]);
    router.close();
  });

  it('rings a virtio queue\'s doorbell on a 2-byte write of its index at BAR + notify offset', async () => {
    t = new TestVm();
    const router = new MsiRouter(t.vm);
    const kicked: number[] = [];
    let kick!: () => void;
    const kickedOnce = new Promise<void>((r) => (kick = r));
    const doorbells = new VirtioDoorbells(router, {
      queues: [0, 1, 2],
      notifyOffset: (i) => 0x3000 + i * 4,
      notify: (i) => {
        kicked.push(i);
        kick();
      },
    });
    expect(doorbells.address(1)).to.equal(null);
    doorbells.barMoved(BigInt(MMIO_DOORBELL));
    expect(doorbells.address(2)).to.equal(BigInt(MMIO_DOORBELL + 0x3008));
    const exits: string[] = [];
    t.loadRealMode([
      0xc7, 0x06, 0x08, 0x30, 0x07, 0x00, // mov word [0x3008], 7 -> not queue 2's index: the MMIO bus gets it
      0xc7, 0x06, 0x04, 0x30, 0x01, 0x00, // mov word [0x3004], 1 -> queue 1's doorbell
      0xf4, 0xeb, 0xfd,
    ], MMIO_DOORBELL);
    await t.run({ mmioWrite: (addr, d) => exits.push(`0x${addr.toString(16)}=${d[0]}`) });
    await kickedOnce;
    expect(kicked).to.deep.equal([1]);
    expect(exits).to.deep.equal([`0x${(MMIO_DOORBELL + 0x3008).toString(16)}=7`]);
    doorbells.barMoved(null);
    expect(doorbells.address(1)).to.equal(null);
    doorbells.close();
    router.close();
  });

  it('refuses a second identical registration with a KvmError naming KVM_IOEVENTFD and EEXIST', () => {
    t = new TestVm();
    const router = new MsiRouter(t.vm);
    const first = router.ioeventfdNotify(MMIO_DOORBELL, 2, 0, () => {});
    expect(() => router.ioeventfdNotify(MMIO_DOORBELL, 2, 0, () => {})).to.throw(/KVM_IOEVENTFD failed: EEXIST/);
    expect(first.address).to.equal(BigInt(MMIO_DOORBELL));
    router.close();
  });
});

describe('host: eventfd watcher', () => {
  it('drains a burst of signals into one callback with the count', async () => {
    const efd = EventFd.create();
    let got!: (n: bigint) => void;
    const called = new Promise<bigint>((r) => (got = r));
    const w = new EventfdWatcher(efd, (n) => got(n));
    efd.signal();
    efd.signal();
    efd.signal();
    expect(await called).to.equal(3n);
    expect(efd.drain()).to.equal(0n);
    w.close();
    efd.close();
  });
});

describe('host: MSI and GSI routing on KVM', function () {
  this.timeout(20000);
  before(requireKvm);
  let t: TestVm | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('reproduces KVM_CREATE_IRQCHIP\'s routing exactly: every GSI 0-23 reaches the same IOAPIC pin and PIC input', () => {
    const raiseEach = (routes?: readonly GsiRoute[]) => {
      const vm = new TestVm();
      try {
        if (routes) vm.vm.setGsiRouting(routes);
        return Array.from({ length: 24 }, (_, gsi) => {
          vm.vm.irqLine(gsi, true);
          const p = vm.pending();
          vm.vm.irqLine(gsi, false);
          return p;
        });
      } finally {
        void vm.close();
      }
    };
    const kernel = raiseEach();
    expect(kvmDefaultGsiRoutes()).to.have.length(40);
    expect(raiseEach(kvmDefaultGsiRoutes())).to.deep.equal(kernel);
    // Sanity of the method: QEMU's table (GSI 0 on pin 2, no GSI 2) is observably different.
    const qemu = raiseEach(qemuPcGsiRoutes());
    expect(qemu[0].ioapic & 0b101).to.equal(0b100);
    expect(kernel[0].ioapic & 0b101).to.equal(0b001);
  });

  it('keeps COM1\'s IRQ 4 reaching the IOAPIC and the PIC after MSI routes are installed', () => {
    t = new TestVm();
    const router = new MsiRouter(t.vm);
    router.sink('dev0').signal(0, BigInt(MSI_ADDR), 0x30);
    expect(router.gsiOf('dev0', 0)).to.equal(24);
    t.vm.irqLine(4, true);
    let p = t.pending();
    expect(p.ioapic & 0x10, 'IOAPIC IRR bit 4').to.equal(0x10);
    expect(p.master & 0x10, 'PIC master IRR bit 4').to.equal(0x10);
    t.vm.irqLine(4, false);
    p = t.pending();
    expect(p.ioapic & 0x10).to.equal(0);
    router.close();
  });

  it('loses IRQ 4 when a table without the irqchip routes replaces the default (why the base routes are kept)', () => {
    t = new TestVm();
    t.vm.setGsiRouting([{ gsi: 24, type: 'msi', addressLo: MSI_ADDR, addressHi: 0, data: 0x30 }]);
    t.vm.irqLine(4, true);
    const p = t.pending();
    expect(p.ioapic & 0x10).to.equal(0);
    expect(p.master & 0x10).to.equal(0);
  });

  it('delivers an MSI with KVM_SIGNAL_MSI into the LAPIC IRR', () => {
    t = new TestVm();
    t.enableLapic();
    expect(t.irrHas(0x41)).to.equal(false);
    expect(t.vm.signalMsi(MSI_ADDR, 0, 0x41)).to.equal(true);
    expect(t.irrHas(0x41)).to.equal(true);
  });

  it('delivers MSIs through per-vector irqfd routes, and re-routes when the guest reprograms a vector', async () => {
    t = new TestVm();
    t.enableLapic();
    const router = new MsiRouter(t.vm);
    const sink = router.sink('virtio-blk0');
    sink.signal(1, BigInt(MSI_ADDR), 0x52);
    await until('vector 0x52 in IRR', () => t!.irrHas(0x52));
    sink.signal(2, BigInt(MSI_ADDR), 0x53);
    await until('vector 0x53 in IRR', () => t!.irrHas(0x53));
    expect([router.gsiOf('virtio-blk0', 1), router.gsiOf('virtio-blk0', 2)]).to.deep.equal([24, 25]);
    // The guest rewrites vector 1's data: the route follows, the GSI stays.
    sink.update!(1, BigInt(MSI_ADDR), 0x63, false);
    sink.signal(1, BigInt(MSI_ADDR), 0x63);
    await until('vector 0x63 in IRR', () => t!.irrHas(0x63));
    expect(router.gsiOf('virtio-blk0', 1)).to.equal(24);
    expect(router.routes().slice(40)).to.deep.equal([
      { gsi: 24, type: 'msi', addressLo: MSI_ADDR, addressHi: 0, data: 0x63 },
      { gsi: 25, type: 'msi', addressLo: MSI_ADDR, addressHi: 0, data: 0x53 },
    ]);
    // Releasing the device frees its GSIs for the next one.
    sink.release();
    expect(router.routes()).to.have.length(40);
    router.sink('virtio-net0').signal(0, BigInt(MSI_ADDR), 0x70);
    expect(router.gsiOf('virtio-net0', 0)).to.be.oneOf([24, 25]);
    await until('vector 0x70 in IRR', () => t!.irrHas(0x70));
    router.close();
  });

  it('falls back to KVM_SIGNAL_MSI when the GSIs run out', () => {
    t = new TestVm();
    t.enableLapic();
    const logs: string[] = [];
    const router = new MsiRouter(t.vm, { gsiLimit: 25, log: (m) => logs.push(m) });
    router.sink('a').signal(0, BigInt(MSI_ADDR), 0x44);
    router.sink('b').signal(0, BigInt(MSI_ADDR), 0x45);
    expect(router.gsiOf('b', 0)).to.equal(undefined);
    expect(t.irrHas(0x45)).to.equal(true);
    expect(logs.join('\n')).to.match(/msi b vector 0: no free GSI below 25; delivering with KVM_SIGNAL_MSI/);
    router.close();
  });
});
