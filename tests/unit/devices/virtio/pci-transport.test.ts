// Unit tests of the virtio-pci modern transport, driven like a guest: capability walk, negotiation, queues, interrupts, reset, state.
import { expect } from 'chai';
import { RecordingIrqLine } from '../../../../devices/irq.js';
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MEMORY, PCI_STATUS } from '../../../../devices/pci/config-space.js';
import { PciRootBus } from '../../../../devices/pci/host-bridge.js';
import type { VirtioDevice, VirtioInterrupt } from '../../../../devices/virtio/device.js';
import { VIRTIO_PCI_MODERN_BAR, VirtioPciDevice, VirtioPciStateError } from '../../../../devices/virtio/pci-transport.js';
import { VirtqueueError, type Virtqueue } from '../../../../devices/virtio/queue.js';
import {
  VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_STATUS_ACKNOWLEDGE, VIRTIO_STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_STATUS_DRIVER, VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_FEATURES_OK, feature,
} from '../../../../devices/virtio/spec.js';
import { COMMON, DriverRing, FakeDriver, FakeRam, RecordingMsiSink } from './fake-driver.js';

const DEVICE_FEATURE_0 = 1n << 0n;
const OFFERED = feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_RING_F_EVENT_IDX) | DEVICE_FEATURE_0;
const NEGOTIATED = feature(VIRTIO_F_VERSION_1) | DEVICE_FEATURE_0;
const FEATURES_OK_STATUS = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;

/** A device that records what the transport does to it. */
class FakeDevice implements VirtioDevice {
  readonly deviceType = 2;
  readonly queueSizes = [8, 8];
  readonly features = OFFERED;
  readonly configSize = 8;
  readonly cfg = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
  activations: { live: boolean[]; features: bigint }[] = [];
  notifies: number[] = [];
  resets = 0;
  interrupt: VirtioInterrupt | undefined;
  failNotify: Error | undefined;
  saved = { note: 'fake' };
  restored: unknown[] = [];
  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.cfg.subarray(offset, offset + data.length));
  }
  writeConfig(offset: number, data: Uint8Array): void {
    this.cfg.set(data, offset);
  }
  activate(queues: readonly Virtqueue[], interrupt: VirtioInterrupt, features: bigint): void {
    this.interrupt = interrupt;
    this.activations.push({ live: queues.map((q) => q.isLive), features });
  }
  queueNotify(index: number): void {
    if (this.failNotify) throw this.failNotify;
    this.notifies.push(index);
  }
  reset(): void {
    this.resets++;
  }
  saveState(): unknown {
    return this.saved;
  }
  restoreState(state: unknown): void {
    this.restored.push(state);
  }
}

function setup() {
  const ram = new FakeRam();
  const msi = new RecordingMsiSink();
  const intx = new RecordingIrqLine();
  const device = new FakeDevice();
  const log: string[] = [];
  const dev = new VirtioPciDevice(device, { memory: ram.memory, msi, intx, log: (m) => log.push(m) });
  const driver = new FakeDriver(dev);
  return { ram, msi, intx, device, dev, driver, log };
}

/** Negotiates, sets up both queues and sets DRIVER_OK. */
function running(vectors = false) {
  const s = setup();
  const rings = [new DriverRing(s.ram, 8), new DriverRing(s.ram, 8)];
  if (vectors) s.driver.enableMsix(3);
  expect(s.driver.negotiate(NEGOTIATED)).to.equal(FEATURES_OK_STATUS);
  if (vectors) s.driver.write(COMMON.MSIX, 2, 2);
  rings.forEach((r, i) => s.driver.setupQueue(i, r, vectors ? i : undefined));
  s.driver.driverOk();
  return { ...s, rings };
}

describe('virtio pci transport', () => {
  describe('PCI presentation', () => {
    it('is found by a capability walk over ECAM with every virtio structure in BAR 4', () => {
      const { dev } = setup();
      const bus = new PciRootBus(() => {});
      bus.add(2, 0, dev);
      const rd = (reg: number, size: number) => {
        const d = new Uint8Array(size);
        bus.ecam.read((2 << 15) | reg, d);
        return d.reduceRight((v, b) => v * 256 + b, 0);
      };
      expect(rd(0, 4)).to.equal(0x1042_1af4);
      expect(rd(0x08, 1)).to.equal(1);
      expect(rd(0x0a, 2)).to.equal(0x0100);
      const caps: Record<string, number[]> = {};
      const ids: number[] = [];
      for (let p = rd(0x34, 1); p; p = rd(p + 1, 1)) {
        ids.push(rd(p, 1));
        if (rd(p, 1) !== 0x09) continue;
        const type = rd(p + 3, 1);
        caps[type] = [rd(p + 4, 1), rd(p + 8, 4), rd(p + 12, 4), rd(p + 2, 1) === 20 ? rd(p + 16, 4) : -1];
      }
      expect(ids).to.include.members([0x09, 0x11, 0x10]);
      expect(caps[1]).to.deep.equal([4, 0x0000, 0x38, -1]);
      expect(caps[3]).to.deep.equal([4, 0x1000, 1, -1]);
      expect(caps[4]).to.deep.equal([4, 0x2000, 8, -1]);
      expect(caps[2]).to.deep.equal([4, 0x3000, 8, 4]);
      expect(caps[5][0]).to.equal(4);
    });

    it('presets Interrupt Line and INTA# for a machine without firmware, and keeps them across reset', () => {
      const intx = { set() {} };
      const dev = new VirtioPciDevice(new FakeDevice(), { memory: new FakeRam().memory, msi: new RecordingMsiSink(), intx, interruptLine: 11 });
      dev.reset();
      expect([dev.config.getU8(0x3c), dev.config.getU8(0x3d)]).to.deep.equal([11, 1]);
    });

    it('claims no interrupt pin when the machine wires no INTx line', () => {
      const dev = new VirtioPciDevice(new FakeDevice(), { memory: new FakeRam().memory, msi: new RecordingMsiSink() });
      expect(dev.config.getU8(0x3d)).to.equal(0);
    });

    it('sizes BAR 1 (MSI-X, 32-bit) and BAR 4 (64-bit prefetchable)', () => {
      const { dev } = setup();
      const rw = (reg: number) => {
        dev.writeConfig(reg, Uint8Array.of(0xff, 0xff, 0xff, 0xff));
        return dev.config.getU32(reg);
      };
      expect(rw(PCI_BASE_ADDRESS_0 + 4)).to.equal(0xffff_f000);
      expect(rw(PCI_BASE_ADDRESS_0 + 16)).to.equal(0xffff_c00c);
      expect(rw(PCI_BASE_ADDRESS_0 + 20)).to.equal(0xffff_ffff);
    });

    it('reaches BAR registers through the PCI configuration access capability', () => {
      const { dev } = setup();
      const cap = dev.config.capabilities().filter((c) => c.id === 0x09).find((c) => dev.config.getU8(c.offset + 3) === 5)!.offset;
      dev.writeConfig(cap + 4, Uint8Array.of(VIRTIO_PCI_MODERN_BAR));
      dev.writeConfig(cap + 8, Uint8Array.of(COMMON.NUMQ, 0, 0, 0));
      dev.writeConfig(cap + 12, Uint8Array.of(2, 0, 0, 0));
      const d = new Uint8Array(2);
      dev.readConfig(cap + 16, d);
      expect(d[0] | (d[1] << 8)).to.equal(2);
    });
  });

  describe('feature negotiation', () => {
    it('shows the offered features in two 32-bit windows', () => {
      const { driver } = setup();
      expect(driver.deviceFeatures()).to.equal(OFFERED);
      driver.write(COMMON.DFSELECT, 4, 7);
      expect(driver.read(COMMON.DF, 4)).to.equal(0);
    });

    it('accepts a subset of the offered features that includes VERSION_1', () => {
      const { driver } = setup();
      expect(driver.negotiate(NEGOTIATED)).to.equal(FEATURES_OK_STATUS);
    });

    it('refuses FEATURES_OK when the driver asks for a feature that was not offered', () => {
      const { driver } = setup();
      expect(driver.negotiate(NEGOTIATED | (1n << 3n)) & VIRTIO_STATUS_FEATURES_OK).to.equal(0);
    });

    it('refuses FEATURES_OK without VIRTIO_F_VERSION_1', () => {
      const { driver } = setup();
      expect(driver.negotiate(DEVICE_FEATURE_0) & VIRTIO_STATUS_FEATURES_OK).to.equal(0);
    });

    it('ignores driver feature writes after FEATURES_OK and DRIVER_OK without FEATURES_OK', () => {
      const { driver, device } = setup();
      driver.negotiate(NEGOTIATED);
      driver.write(COMMON.GFSELECT, 4, 0);
      driver.write(COMMON.GF, 4, 0);
      expect(driver.read(COMMON.GF, 4)).to.equal(1);
      driver.setStatus(0);
      driver.setStatus(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
      expect(driver.status() & VIRTIO_STATUS_DRIVER_OK).to.equal(0);
      expect(device.activations).to.have.length(0);
    });
  });

  describe('queue setup', () => {
    it('reports the number of queues, their maximum sizes and size 0 beyond them', () => {
      const { driver } = setup();
      expect(driver.read(COMMON.NUMQ, 2)).to.equal(2);
      driver.write(COMMON.Q_SELECT, 2, 1);
      expect([driver.read(COMMON.Q_SIZE, 2), driver.read(COMMON.Q_NOFF, 2)]).to.deep.equal([8, 1]);
      driver.write(COMMON.Q_SELECT, 2, 2);
      expect(driver.read(COMMON.Q_SIZE, 2)).to.equal(0);
    });

    it('takes ring addresses as dword halves or whole, and freezes them once enabled', () => {
      const { driver, dev } = setup();
      driver.write(COMMON.Q_SELECT, 2, 0);
      driver.write(COMMON.Q_DESC, 4, 0x1234_5000);
      driver.write(COMMON.Q_DESC + 4, 4, 0x1);
      driver.write(COMMON.Q_USED, 8, 0x2_0000_3000n);
      expect(dev.queues[0].descTable).to.equal(0x1_1234_5000n);
      expect(driver.read(COMMON.Q_USED + 4, 4)).to.equal(2);
      driver.write(COMMON.Q_ENABLE, 2, 1);
      driver.write(COMMON.Q_DESC, 4, 0);
      driver.write(COMMON.Q_SIZE, 2, 4);
      expect(dev.queues[0].descTable).to.equal(0x1_1234_5000n);
      expect(driver.read(COMMON.Q_SIZE, 2)).to.equal(8);
      expect(driver.read(COMMON.Q_ENABLE, 2)).to.equal(1);
    });

    it('starts the device with live queues and the negotiated features at DRIVER_OK', () => {
      const { device } = running();
      expect(device.activations).to.deep.equal([{ live: [true, true], features: NEGOTIATED }]);
    });

    it('sets NEEDS_RESET when a ring lies outside guest memory at DRIVER_OK', () => {
      const { driver, device, ram } = setup();
      driver.negotiate(NEGOTIATED);
      driver.setupQueue(0, new DriverRing(ram, 8));
      driver.write(COMMON.Q_SELECT, 2, 1);
      driver.write(COMMON.Q_DESC, 4, 0xffff_f000);
      driver.write(COMMON.Q_ENABLE, 2, 1);
      driver.driverOk();
      expect(driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.not.equal(0);
      expect(device.activations).to.have.length(0);
    });
  });

  describe('notifications', () => {
    it('passes doorbell writes and ioeventfd notifies to the device once running', () => {
      const { driver, device, dev } = running();
      driver.kick(1);
      dev.notify(0);
      driver.kick(7);
      expect(device.notifies).to.deep.equal([1, 0]);
      expect(dev.notifyOffset(1)).to.equal(0x3004);
    });

    it('ignores doorbells before DRIVER_OK', () => {
      const { driver, device } = setup();
      driver.kick(0);
      expect(device.notifies).to.deep.equal([]);
    });
  });

  describe('interrupts', () => {
    it('signals queue and config vectors through MSI-X', () => {
      const { device, msi, intx } = running(true);
      device.interrupt!.signalQueue(1);
      device.interrupt!.signalConfig();
      expect(msi.signals).to.deep.equal([
        { vector: 1, address: 0xfee0_0000n, data: 0x41 },
        { vector: 2, address: 0xfee0_0000n, data: 0x42 },
      ]);
      expect(intx.raises).to.equal(0);
    });

    it('reads back NO_VECTOR for a vector beyond the table', () => {
      const { driver } = setup();
      driver.write(COMMON.Q_SELECT, 2, 0);
      driver.write(COMMON.Q_MSIX, 2, 9);
      expect(driver.read(COMMON.Q_MSIX, 2)).to.equal(0xffff);
      driver.write(COMMON.MSIX, 2, 2);
      expect(driver.read(COMMON.MSIX, 2)).to.equal(2);
    });

    it('falls back to ISR and INTx without MSI-X; reading ISR acknowledges it', () => {
      const { device, driver, intx, dev } = running();
      device.interrupt!.signalQueue(0);
      expect(intx.level).to.equal(true);
      expect(dev.config.getU16(PCI_STATUS) & 0x08).to.equal(0x08);
      device.interrupt!.signalConfig();
      expect(driver.readIsr()).to.equal(3);
      expect(intx.level).to.equal(false);
      expect(driver.readIsr()).to.equal(0);
    });

    it('keeps INTx low while the command register disables it', () => {
      const { device, dev, intx } = running();
      dev.writeConfig(PCI_COMMAND, Uint8Array.of(PCI_COMMAND_MEMORY, PCI_COMMAND_INTX_DISABLE >> 8));
      device.interrupt!.signalQueue(0);
      expect(intx.level).to.equal(false);
      dev.writeConfig(PCI_COMMAND, Uint8Array.of(PCI_COMMAND_MEMORY, 0));
      expect(intx.level).to.equal(true);
    });

    it('bumps config_generation on a configuration change', () => {
      const { device, driver } = running();
      const before = driver.read(COMMON.CFGGEN, 1);
      device.interrupt!.signalConfig();
      expect(driver.read(COMMON.CFGGEN, 1)).to.equal(before + 1);
    });
  });

  describe('driver errors and reset', () => {
    it('turns a device error into NEEDS_RESET, a config interrupt and halted queues', () => {
      const { device, driver, dev, log, intx } = running();
      device.failNotify = new VirtqueueError('loop', 'test');
      driver.kick(0);
      expect(driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.not.equal(0);
      expect(driver.readIsr()).to.equal(2);
      expect(intx.raises).to.equal(1);
      expect(dev.queues.map((q) => q.isLive)).to.deep.equal([false, false]);
      expect(log[0]).to.match(/needs reset.*loop/);
      device.failNotify = undefined;
      driver.kick(0);
      expect(device.notifies).to.deep.equal([]);
    });

    it('does not let the driver clear NEEDS_RESET except by resetting', () => {
      const { device, driver } = running();
      device.interrupt!.deviceError(new Error('bad'));
      driver.setStatus(FEATURES_OK_STATUS | VIRTIO_STATUS_DRIVER_OK);
      expect(driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.not.equal(0);
      driver.setStatus(0);
      expect(driver.status()).to.equal(0);
    });

    it('returns device, queues, features and vectors to power-on when 0 is written to device_status', () => {
      const { driver, device, dev } = running(true);
      const fresh = setup();
      const resets = device.resets;
      driver.setStatus(0);
      expect(device.resets).to.equal(resets + 1);
      expect(dev.queues.map((q) => q.saveState())).to.deep.equal(fresh.dev.queues.map((q) => q.saveState()));
      expect(driver.read(COMMON.MSIX, 2)).to.equal(0xffff);
      driver.write(COMMON.GFSELECT, 4, 1);
      expect(driver.read(COMMON.GF, 4)).to.equal(0);
      expect(dev.msix.enabled).to.equal(true); // PCI state is not the virtio device's
    });

    it('returns config space and MSI-X to power-on on a PCI reset', () => {
      const { dev } = running(true);
      dev.reset();
      const fresh = setup().dev;
      expect(dev.saveState()).to.deep.equal(fresh.saveState());
    });
  });

  describe('state', () => {
    it('round-trips mid-operation and restarts the device on the destination', () => {
      const src = running(true);
      src.driver.write(COMMON.Q_SELECT, 2, 1);
      src.device.interrupt!.signalConfig();
      const saved = JSON.parse(JSON.stringify(src.dev.saveState()));
      const dst = setup();
      dst.ram.bytes.set(src.ram.bytes);
      dst.dev.restoreState(saved);
      expect(dst.dev.saveState()).to.deep.equal(src.dev.saveState());
      expect(dst.device.restored).to.deep.equal([{ note: 'fake' }]);
      expect(dst.device.activations).to.deep.equal([{ live: [true, true], features: NEGOTIATED }]);
      dst.device.interrupt!.signalQueue(0);
      expect(dst.msi.vectors()).to.deep.equal([0]);
    });

    it('re-raises a pending INTx after restore', () => {
      const src = running();
      src.device.interrupt!.signalQueue(0);
      const dst = setup();
      dst.ram.bytes.set(src.ram.bytes);
      dst.dev.restoreState(src.dev.saveState());
      expect(dst.intx.level).to.equal(true);
    });

    it('refuses a snapshot with the wrong number of queues or bad ISR bits', () => {
      const state = running().dev.saveState();
      expect(() => setup().dev.restoreState({ ...state, isr: 4 })).to.throw(VirtioPciStateError);
      expect(() => setup().dev.restoreState({ ...state, queues: [] })).to.throw(VirtioPciStateError);
    });
  });
});
