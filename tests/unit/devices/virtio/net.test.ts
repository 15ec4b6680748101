// Unit tests of virtio-net through the PCI transport, driven like a guest driver, with a fake tap backend.
import { expect } from 'chai';
import {
  NET_MAX_FRAME, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_RX,
  VIRTIO_NET_ERR, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_ANNOUNCE, VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, VIRTIO_NET_HDR_SIZE, VIRTIO_NET_OK, VIRTIO_NET_S_ANNOUNCE,
  VIRTIO_NET_S_LINK_UP, VirtioNet, VirtioNetStateError, type NetBackend,
} from '../../../../devices/virtio/net.js';
import { VirtioPciDevice } from '../../../../devices/virtio/pci-transport.js';
import { VIRTIO_F_VERSION_1, VIRTIO_STATUS_DEVICE_NEEDS_RESET, feature, hasFeature } from '../../../../devices/virtio/spec.js';
import { COMMON, DriverRing, FakeDriver, FakeRam, RecordingMsiSink } from './fake-driver.js';

const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const RX = 0;
const TX = 1;
const CTRL = 2;
const CONFIG_VECTOR = 3;

class FakeTap implements NetBackend {
  sent: number[][] = [];
  blocked = false;
  writable: (() => void) | undefined;
  send(frame: Uint8Array[]): boolean {
    if (this.blocked) return false;
    this.sent.push(frame.flatMap((b) => [...b]));
    return true;
  }
  onWritable(cb: () => void): void {
    this.writable = cb;
  }
}

const ALL = [VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_GUEST_ANNOUNCE];

function setup(opts: { mergeable?: boolean; features?: number[] } = {}) {
  const ram = new FakeRam();
  const tap = new FakeTap();
  const msi = new RecordingMsiSink();
  const net = new VirtioNet({ memory: ram.memory, backend: tap, mac: MAC, queueSize: 16 });
  const log: string[] = [];
  const dev = new VirtioPciDevice(net, { memory: ram.memory, msi, log: (m) => log.push(m) });
  const driver = new FakeDriver(dev);
  const rings = [new DriverRing(ram, 16), new DriverRing(ram, 16), new DriverRing(ram, 16)];
  driver.enableMsix(4);
  const bits = [...(opts.features ?? ALL), ...(opts.mergeable ? [VIRTIO_NET_F_MRG_RXBUF] : [])];
  driver.negotiate(bits.reduce((f, b) => f | feature(b), 0n));
  driver.write(COMMON.MSIX, 2, CONFIG_VECTOR);
  rings.forEach((r, i) => driver.setupQueue(i, r, i));
  driver.driverOk();
  let rxAvailable = 0;
  net.onRxBuffersAvailable(() => rxAvailable++);

  /** Posts an rx buffer of `len` bytes; returns its address. */
  const postRx = (len: number) => {
    const at = ram.alloc(len);
    ram.bytes.fill(0xcc, at, at + len);
    rings[RX].add([{ addr: at, len, write: true }]);
    return at;
  };
  /** Queues a frame for transmission: header and payload in separate descriptors, like Linux. */
  const transmit = (frame: number[]) => {
    const hdr = ram.put(new Uint8Array(VIRTIO_NET_HDR_SIZE));
    return rings[TX].add([{ addr: hdr, len: VIRTIO_NET_HDR_SIZE }, { addr: ram.put(frame), len: frame.length }]);
  };
  /** Sends a control command; returns the address of its ack byte. */
  const control = (cls: number, cmd: number, data: number[] = []) => {
    const ack = ram.put([0xee]);
    rings[CTRL].add([{ addr: ram.put([cls, cmd]), len: 2 }, ...(data.length ? [{ addr: ram.put(data), len: data.length }] : []), { addr: ack, len: 1, write: true }]);
    driver.kick(CTRL);
    return ram.bytes[ack];
  };
  return { ram, tap, msi, net, dev, driver, rings, log, postRx, transmit, control, rxAvailable: () => rxAvailable };
}

function frame(len: number, seed = 1): number[] {
  return Array.from({ length: len }, (_, i) => (i * seed + 3) & 0xff);
}

describe('virtio-net', () => {
  describe('configuration', () => {
    it('shows the configured MAC, link up and one queue pair, and ignores MAC writes', () => {
      const { driver } = setup();
      expect([0, 1, 2, 3, 4, 5].map((i) => driver.readDeviceConfig(i, 1))).to.deep.equal([...MAC]);
      expect(driver.readDeviceConfig(6, 2)).to.equal(VIRTIO_NET_S_LINK_UP);
      expect(driver.readDeviceConfig(8, 2)).to.equal(1);
      driver.writeDeviceConfig(0, 1, 0xff);
      expect(driver.readDeviceConfig(0, 1)).to.equal(0x52);
    });

    it('offers MAC, STATUS, CTRL_VQ, CTRL_RX, GUEST_ANNOUNCE and MRG_RXBUF', () => {
      const offered = setup().driver.deviceFeatures();
      for (const bit of [...ALL, VIRTIO_NET_F_MRG_RXBUF]) expect(hasFeature(offered, bit), `bit ${bit}`).to.equal(true);
    });
  });

  describe('transmit', () => {
    it('hands the frame without its header to the backend and returns the chain', () => {
      const { tap, driver, rings, msi, transmit } = setup();
      const head = transmit(frame(60));
      driver.kick(TX);
      expect(tap.sent).to.deep.equal([frame(60)]);
      expect(rings[TX].usedElem(0)).to.deep.equal({ id: head, len: 0 });
      expect(msi.vectors()).to.deep.equal([TX]);
    });

    it('keeps frames on the ring while the backend would block and sends them when writable', () => {
      const { tap, driver, rings, transmit } = setup();
      tap.blocked = true;
      transmit(frame(60, 1));
      transmit(frame(60, 2));
      driver.kick(TX);
      expect(rings[TX].usedIdx()).to.equal(0);
      tap.blocked = false;
      tap.writable!();
      expect(tap.sent).to.deep.equal([frame(60, 1), frame(60, 2)]);
      expect(rings[TX].usedIdx()).to.equal(2);
    });

    it('drops frames larger than a tap takes but returns their buffers', () => {
      const { tap, driver, rings, transmit, net } = setup();
      transmit(frame(NET_MAX_FRAME + 1));
      driver.kick(TX);
      expect(tap.sent).to.deep.equal([]);
      expect(rings[TX].usedIdx()).to.equal(1);
      expect(net.dropped).to.equal(1);
    });

    it('ends a chain shorter than the header in NEEDS_RESET with guest memory untouched', () => {
      const { ram, driver, rings, log } = setup();
      rings[TX].add([{ addr: ram.put(new Uint8Array(8)), len: 8 }]);
      const before = ram.snapshot();
      driver.kick(TX);
      expect(driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.not.equal(0);
      expect(log[0]).to.include('request-shape');
      expect(ram.bytes).to.deep.equal(before);
    });
  });

  describe('receive', () => {
    it('refuses a frame while no buffer is posted and calls back once the guest adds one', () => {
      const { net, driver, postRx, rxAvailable } = setup();
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(false);
      postRx(2048);
      expect(rxAvailable()).to.equal(0);
      driver.kick(RX);
      expect(rxAvailable()).to.equal(1);
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(true);
    });

    it('copies a frame after a header with num_buffers 1', () => {
      const { ram, net, rings, msi, postRx } = setup();
      const at = postRx(2048);
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(true);
      const hdr = ram.bytes.subarray(at, at + VIRTIO_NET_HDR_SIZE);
      expect([...hdr]).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
      expect([...ram.bytes.subarray(at + 12, at + 72)]).to.deep.equal(frame(60));
      expect(ram.bytes[at + 72]).to.equal(0xcc);
      expect(rings[RX].usedElem(0).len).to.equal(72);
      expect(msi.vectors()).to.deep.equal([RX]);
    });

    it('spreads a frame over merged buffers and counts them in num_buffers', () => {
      const { ram, net, rings, postRx } = setup({ mergeable: true });
      const bufs = [postRx(32), postRx(32), postRx(32), postRx(32)];
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(true);
      expect(ram.bytes[bufs[0] + 10]).to.equal(3);
      const got = [...ram.bytes.subarray(bufs[0] + 12, bufs[0] + 32), ...ram.bytes.subarray(bufs[1], bufs[1] + 32), ...ram.bytes.subarray(bufs[2], bufs[2] + 8)];
      expect(got).to.deep.equal(frame(60));
      expect([0, 1, 2].map((i) => rings[RX].usedElem(i).len)).to.deep.equal([32, 32, 8]);
      expect(rings[RX].usedIdx()).to.equal(3);
    });

    it('gives merged buffers back untouched when they cannot hold the whole frame', () => {
      const { ram, net, rings, postRx, driver, rxAvailable } = setup({ mergeable: true });
      postRx(32);
      postRx(32);
      const before = ram.snapshot();
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(false);
      expect(ram.bytes).to.deep.equal(before);
      postRx(32);
      driver.kick(RX);
      expect(rxAvailable()).to.equal(1);
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(true);
      expect(rings[RX].usedIdx()).to.equal(3);
    });

    it('drops a frame too big for a non-mergeable buffer and keeps the buffer', () => {
      const { net, rings, postRx } = setup();
      postRx(64);
      expect(net.receive(Uint8Array.from(frame(100)))).to.equal(true);
      expect(net.dropped).to.equal(1);
      expect(rings[RX].usedIdx()).to.equal(0);
      expect(net.receive(Uint8Array.from(frame(40)))).to.equal(true);
      expect(rings[RX].usedIdx()).to.equal(1);
    });

    it('ends an rx buffer smaller than the header in NEEDS_RESET', () => {
      const { net, driver, postRx, ram } = setup();
      postRx(8);
      const before = ram.snapshot();
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(false);
      expect(driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.not.equal(0);
      expect(ram.bytes).to.deep.equal(before);
    });
  });

  describe('control queue', () => {
    it('acks receive-mode commands and keeps the mode', () => {
      const { control, net } = setup();
      expect(control(VIRTIO_NET_CTRL_RX, 0, [0])).to.equal(VIRTIO_NET_OK);
      expect(control(VIRTIO_NET_CTRL_RX, 1, [1])).to.equal(VIRTIO_NET_OK);
      expect(net.receiveMode).to.include({ promisc: false, allmulti: true });
    });

    it('acks the MAC filter table Linux sends with CTRL_RX', () => {
      const { control } = setup();
      expect(control(VIRTIO_NET_CTRL_MAC, 0, [0, 0, 0, 0, 0, 0, 0, 0])).to.equal(VIRTIO_NET_OK);
    });

    it('refuses unknown commands and MAC address changes', () => {
      const { control } = setup();
      expect(control(9, 0)).to.equal(VIRTIO_NET_ERR);
      expect(control(VIRTIO_NET_CTRL_MAC, 1, [...MAC])).to.equal(VIRTIO_NET_ERR);
      expect(control(VIRTIO_NET_CTRL_RX, 9, [1])).to.equal(VIRTIO_NET_ERR);
    });

    it('ends a command without an ack byte in NEEDS_RESET', () => {
      const { ram, rings, driver } = setup();
      rings[CTRL].add([{ addr: ram.put([0, 0, 1]), len: 3 }]);
      driver.kick(CTRL);
      expect(driver.status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET).to.not.equal(0);
    });
  });

  describe('announce and link', () => {
    it('sets ANNOUNCE with a config interrupt, cleared by the driver\'s ANNOUNCE_ACK', () => {
      const { net, driver, msi, control } = setup();
      expect(net.announce()).to.equal(true);
      expect(driver.readDeviceConfig(6, 2)).to.equal(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
      expect(msi.vectors()).to.deep.equal([CONFIG_VECTOR]);
      expect(control(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK)).to.equal(VIRTIO_NET_OK);
      expect(driver.readDeviceConfig(6, 2)).to.equal(VIRTIO_NET_S_LINK_UP);
    });

    it('does not announce when GUEST_ANNOUNCE was not negotiated', () => {
      const { net, msi, driver } = setup({ features: [VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS] });
      expect(net.announce()).to.equal(false);
      expect(driver.readDeviceConfig(6, 2)).to.equal(VIRTIO_NET_S_LINK_UP);
      expect(msi.vectors()).to.deep.equal([]);
    });

    it('reports link changes with a config interrupt', () => {
      const { net, driver, msi } = setup();
      net.setLinkUp(false);
      expect(driver.readDeviceConfig(6, 2)).to.equal(0);
      expect(msi.vectors()).to.deep.equal([CONFIG_VECTOR]);
    });
  });

  describe('reset and state', () => {
    it('returns to power-on when the driver resets it', () => {
      const { net, driver, control } = setup();
      control(VIRTIO_NET_CTRL_RX, 0, [0]);
      net.announce();
      driver.setStatus(0);
      expect(net.saveState()).to.deep.equal(new VirtioNet({ memory: new FakeRam().memory, backend: new FakeTap(), mac: MAC }).saveState());
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(false);
    });

    it('round-trips with a pending announce and keeps receiving on the destination', () => {
      const src = setup({ mergeable: true });
      src.control(VIRTIO_NET_CTRL_RX, 0, [0]);
      src.net.announce();
      src.postRx(2048);
      const saved = JSON.parse(JSON.stringify(src.dev.saveState()));
      const net = new VirtioNet({ memory: src.ram.memory, backend: new FakeTap(), mac: MAC, queueSize: 16 });
      const dev = new VirtioPciDevice(net, { memory: src.ram.memory, msi: new RecordingMsiSink() });
      dev.restoreState(saved);
      expect(dev.saveState()).to.deep.equal(saved);
      expect(net.linkStatus).to.equal(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
      expect(net.receiveMode.promisc).to.equal(false);
      expect(net.receive(Uint8Array.from(frame(60)))).to.equal(true);
      expect(src.rings[RX].usedIdx()).to.equal(1);
    });

    it('refuses a snapshot with unknown status bits or a missing receive mode', () => {
      const { net } = setup();
      expect(() => net.restoreState({ status: 4, rxMode: net.saveState().rxMode })).to.throw(VirtioNetStateError);
      expect(() => net.restoreState({ status: 1 })).to.throw(VirtioNetStateError, /rxMode/);
    });
  });
});
