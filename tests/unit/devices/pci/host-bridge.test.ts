// Unit tests of the q35 root bus: CF8/CFC and ECAM config access, absent functions, BAR-change reports, query-pci.
import { expect } from 'chai';
import type { BusDevice } from '../../../../devices/bus.js';
import {
  PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_HEADER_TYPE, PciConfigSpace,
} from '../../../../devices/pci/config-space.js';
import { PciBusError, PciRootBus, type PciFunction } from '../../../../devices/pci/host-bridge.js';

/** A function with one 32-bit and one 64-bit BAR. */
class TestFunction implements PciFunction {
  readonly config = new PciConfigSpace({ vendorId: 0x1234, deviceId: 0x5678, classCode: 0x020000, interruptPin: 1 });
  resets = 0;
  constructor() {
    this.config.addBar(0, { size: 0x1000, is64Bit: false, prefetchable: false });
    this.config.addBar(2, { size: 0x4000, is64Bit: true, prefetchable: true });
    this.config.addPcieCapability();
    this.config.seal();
  }
  readConfig(o: number, d: Uint8Array): void {
    this.config.read(o, d);
  }
  writeConfig(o: number, d: Uint8Array): void {
    this.config.write(o, d);
  }
  barRegion(): BusDevice | undefined {
    return undefined;
  }
  reset(): void {
    this.resets++;
    this.config.reset();
  }
}

type Change = [PciFunction, number, bigint | null, bigint | null];

function setup() {
  const changes: Change[] = [];
  const bus = new PciRootBus((d, i, o, n) => changes.push([d, i, o, n]));
  const fn = new TestFunction();
  bus.add(3, 0, fn, 'nic0');
  const le = (size: number, value: number) => {
    const d = new Uint8Array(size);
    for (let i = 0; i < size; i++) d[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
    return d;
  };
  const num = (d: Uint8Array) => d.reduceRight((v, b) => v * 256 + b, 0);
  const io = {
    setAddress: (v: number) => bus.configIo.write(0, le(4, v)),
    address: () => { const d = new Uint8Array(4); bus.configIo.read(0, d); return num(d); },
    read: (port: number, size: number) => { const d = new Uint8Array(size); bus.configIo.read(port - 0xcf8, d); return num(d); },
    write: (port: number, size: number, v: number) => bus.configIo.write(port - 0xcf8, le(size, v)),
  };
  const ecamOff = (devfn: number, reg: number, b = 0) => (b << 20) | (devfn << 12) | reg;
  const ecam = {
    read: (devfn: number, reg: number, size: number, b = 0) => { const d = new Uint8Array(size); bus.ecam.read(ecamOff(devfn, reg, b), d); return num(d); },
    write: (devfn: number, reg: number, size: number, v: number) => bus.ecam.write(ecamOff(devfn, reg), le(size, v)),
  };
  return { bus, fn, changes, io, ecam };
}

const cfgAddr = (slot: number, fn: number, reg: number) => (0x8000_0000 | (slot << 11) | (fn << 8) | reg) >>> 0;

describe('pci host bridge', () => {
  describe('CF8/CFC', () => {
    it('latches CONFIG_ADDRESS as Linux probes it, dropping reserved bits', () => {
      const { io } = setup();
      io.setAddress(0x8000_0000);
      expect(io.address()).to.equal(0x8000_0000);
      io.setAddress(0xff00_0003);
      expect(io.address()).to.equal(0x8000_0000);
    });

    it('reads the q35 host bridge at 00.0', () => {
      const { io } = setup();
      io.setAddress(cfgAddr(0, 0, 0));
      expect(io.read(0xcfc, 4)).to.equal(0x29c0_8086);
      io.setAddress(cfgAddr(0, 0, 0x08));
      expect(io.read(0xcfe, 2)).to.equal(0x0600);
      expect(io.read(0xcff, 1)).to.equal(0x06);
    });

    it('reads a device with 1, 2 and 4-byte accesses at 0xCFC-0xCFF', () => {
      const { io } = setup();
      io.setAddress(cfgAddr(3, 0, 0));
      expect(io.read(0xcfc, 4)).to.equal(0x5678_1234);
      expect(io.read(0xcfe, 2)).to.equal(0x5678);
      expect(io.read(0xcfd, 1)).to.equal(0x12);
    });

    it('reads all-ones for absent functions, other buses and a cleared enable bit', () => {
      const { io } = setup();
      io.setAddress(cfgAddr(4, 0, 0));
      expect(io.read(0xcfc, 4)).to.equal(0xffff_ffff);
      io.setAddress(cfgAddr(3, 0, 0) | (1 << 16));
      expect(io.read(0xcfc, 4)).to.equal(0xffff_ffff);
      io.setAddress(cfgAddr(3, 0, 0) & 0x7fff_ffff);
      expect(io.read(0xcfc, 2)).to.equal(0xffff);
    });

    it('writes config registers through CFC', () => {
      const { io, fn } = setup();
      io.setAddress(cfgAddr(3, 0, 0x3c));
      io.write(0xcfc, 1, 10);
      expect(fn.config.getU8(0x3c)).to.equal(10);
    });

    it('hands byte accesses at 0xCF9 to the reset control register', () => {
      const seen: number[] = [];
      const rc: BusDevice = { read: (_o, d) => d.fill(0x0a), write: (_o, d) => seen.push(d[0]) };
      const bus = new PciRootBus(() => {}, { resetControl: rc });
      bus.configIo.write(1, Uint8Array.of(0x06));
      const d = new Uint8Array(1);
      bus.configIo.read(1, d);
      expect(seen).to.deep.equal([0x06]);
      expect(d[0]).to.equal(0x0a);
    });

    it('works when registered as separate address and data ports', () => {
      const { bus } = setup();
      bus.configIo.addressPort.write(0, Uint8Array.of(0, 0x18, 0, 0x80));
      const d = new Uint8Array(2);
      bus.configIo.dataPort.read(0, d);
      expect(d[0] | (d[1] << 8)).to.equal(0x1234);
    });
  });

  describe('ECAM', () => {
    it('reads functions at devfn << 12 and all-ones where nothing is', () => {
      const { ecam } = setup();
      expect(ecam.read(3 << 3, 0, 4)).to.equal(0x5678_1234);
      expect(ecam.read(0, 0, 4)).to.equal(0x29c0_8086);
      expect(ecam.read(5 << 3, 0, 4)).to.equal(0xffff_ffff);
      expect(ecam.read(3 << 3, 0, 4, 1)).to.equal(0xffff_ffff);
    });

    it('reaches the extended space of a PCIe function, empty so Linux finds no extended capabilities', () => {
      const { ecam } = setup();
      expect(ecam.read(3 << 3, 0x100, 4)).to.equal(0);
      expect(ecam.read(0, 0x100, 4)).to.equal(0xffff_ffff);
    });
  });

  describe('BAR changes', () => {
    it('reports a BAR once memory decode is enabled, then its moves and its unmapping', () => {
      const { ecam, changes, fn } = setup();
      const devfn = 3 << 3;
      ecam.write(devfn, PCI_BASE_ADDRESS_0, 4, 0xffff_ffff);
      expect(ecam.read(devfn, PCI_BASE_ADDRESS_0, 4)).to.equal(0xffff_f000);
      ecam.write(devfn, PCI_BASE_ADDRESS_0, 4, 0xc000_0000);
      ecam.write(devfn, PCI_BASE_ADDRESS_0 + 8, 4, 0xc001_0000);
      ecam.write(devfn, PCI_BASE_ADDRESS_0 + 12, 4, 0);
      expect(changes).to.deep.equal([]);
      ecam.write(devfn, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(changes).to.deep.equal([[fn, 0, null, 0xc000_0000n], [fn, 2, null, 0xc001_0000n]]);
      changes.length = 0;
      ecam.write(devfn, PCI_BASE_ADDRESS_0, 4, 0xc000_2000);
      expect(changes).to.deep.equal([[fn, 0, 0xc000_0000n, 0xc000_2000n]]);
      changes.length = 0;
      ecam.write(devfn, PCI_COMMAND, 2, 0);
      expect(changes).to.deep.equal([[fn, 0, 0xc000_2000n, null], [fn, 2, 0xc001_0000n, null]]);
    });

    it('unmaps every BAR on reset', () => {
      const { bus, ecam, changes, fn } = setup();
      ecam.write(3 << 3, PCI_BASE_ADDRESS_0, 4, 0xc000_0000);
      ecam.write(3 << 3, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      changes.length = 0;
      bus.reset();
      expect(fn.resets).to.equal(1);
      expect(changes).to.deep.equal([[fn, 0, 0xc000_0000n, null]]);
    });

    it('reports restored mappings on syncAllBars', () => {
      const { bus, fn, changes } = setup();
      fn.config.write(PCI_BASE_ADDRESS_0, Uint8Array.of(0, 0, 0, 0xd0));
      fn.config.write(PCI_COMMAND, Uint8Array.of(PCI_COMMAND_MEMORY, 0));
      bus.syncAllBars();
      expect(changes).to.deep.equal([[fn, 0, null, 0xd000_0000n]]);
    });
  });

  describe('placement', () => {
    it('refuses occupied and out-of-range addresses', () => {
      const { bus } = setup();
      expect(() => bus.add(3, 0, new TestFunction())).to.throw(PciBusError, /in use/);
      expect(() => bus.add(32, 0, new TestFunction())).to.throw(PciBusError);
      expect(() => bus.add(1, 8, new TestFunction())).to.throw(PciBusError);
    });

    it('marks function 0 multi-function when a slot gains another function', () => {
      const { bus, fn, ecam } = setup();
      bus.add(3, 1, new TestFunction());
      expect(fn.config.getU8(PCI_HEADER_TYPE) & 0x80).to.equal(0x80);
      expect(ecam.read((3 << 3) | 1, 0, 2)).to.equal(0x1234);
    });
  });

  it('round-trips the latched CONFIG_ADDRESS and the host bridge', () => {
    const a = setup();
    a.io.setAddress(cfgAddr(3, 0, 0x10));
    a.io.setAddress(cfgAddr(0, 0, 0x3c));
    a.io.write(0xcfc, 1, 5);
    const b = setup();
    b.bus.restoreState(JSON.parse(JSON.stringify(a.bus.saveState())));
    expect(b.io.address()).to.equal(cfgAddr(0, 0, 0x3c));
    expect(b.io.read(0xcfc, 1)).to.equal(5);
    expect(() => b.bus.restoreState({ ...a.bus.saveState(), configAddress: 3 })).to.throw(PciBusError);
  });

  it('describes the bus as query-pci does', () => {
    const { bus, ecam } = setup();
    ecam.write(3 << 3, PCI_BASE_ADDRESS_0, 4, 0xc000_0000);
    const info = bus.describe();
    expect(info.map((d) => [d.slot, d.function, d.id.vendor, d.id.device])).to.deep.equal([[0, 0, 0x8086, 0x29c0], [3, 0, 0x1234, 0x5678]]);
    expect(info[1]).to.include({ bus: 0, qdev_id: 'nic0', irq_pin: 1 });
    expect(info[1].class_info.class).to.equal(0x0200);
    expect(info[1].regions).to.deep.equal([
      { bar: 0, type: 'memory', address: 0xc000_0000, size: 0x1000, prefetch: false, mem_type_64: false },
      { bar: 2, type: 'memory', address: 0, size: 0x4000, prefetch: true, mem_type_64: true },
    ]);
  });
});
