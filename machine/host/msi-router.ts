// MSI delivery through KVM: one GSI route and irqfd per (device, vector), and ioeventfd doorbells that call back on the main loop.

import type { MsiSink } from '../../devices/pci/msix.js';
import type { GsiRoute, IoeventfdOptions, IrqfdOptions } from '../kvm/vm.js';
import { EventFd, EventfdWatcher } from './eventfd.js';
import { FIRST_MSI_GSI, KVM_MAX_IRQ_ROUTES, kvmDefaultGsiRoutes } from './gsi-routes.js';

/** The VM calls the router makes (VmFd has them all); a fake can stand in for unit tests. */
export interface MsiRoutingVm {
  setGsiRouting(routes: readonly GsiRoute[]): void;
  irqfd(fd: number, gsi: number, opts?: IrqfdOptions): void;
  ioeventfd(fd: number, addr: number | bigint, len: number, opts?: IoeventfdOptions): void;
  signalMsi(addressLo: number, addressHi: number, data: number): boolean;
}

export interface MsiRouterOptions {
  /** The irqchip routes kept in every table; default KVM's own (kvmDefaultGsiRoutes). */
  readonly baseRoutes?: readonly GsiRoute[];
  /** First GSI handed to MSI vectors (default 24) and one past the last (default 4096). */
  readonly firstGsi?: number;
  readonly gsiLimit?: number;
  /** Where failures to set up a route are reported (delivery then falls back to KVM_SIGNAL_MSI). */
  readonly log?: (message: string) => void;
}

interface VectorRoute {
  readonly gsi: number;
  readonly eventfd: EventFd;
  addressLo: number;
  addressHi: number;
  data: number;
  /** The irqfd is attached (after the route was committed once). */
  attached: boolean;
}

/** One doorbell: a KVM ioeventfd on a guest address whose writes call back on the main loop. */
export interface IoeventfdBinding {
  /** Where it is registered now (null while unmapped). */
  readonly address: bigint | null;
  /** Re-registers at `address` (a BAR moved) or unregisters (null: the BAR stopped decoding). */
  move(address: number | bigint | null): void;
  /** Unregisters and releases the eventfd. */
  close(): void;
}

const U32 = 0xffff_ffffn;

/**
 * Owns the VM's GSI routing table. Each (device, vector) gets a GSI from 24 up, an MSI route and
 * an eventfd attached with KVM_IRQFD, so raising it is one eventfd write (no ioctl). The table is
 * rewritten (KVM_SET_GSI_ROUTING replaces it whole, always with the irqchip base routes) when a
 * vector's address or data changes: lazily, before the next signal, and at the end of the tick in
 * which the guest reprogrammed the table.
 */
export class MsiRouter {
  private readonly base: readonly GsiRoute[];
  private readonly firstGsi: number;
  private readonly gsiLimit: number;
  private readonly log: (message: string) => void;
  /** device -> vector -> route. */
  private readonly devices = new Map<string, Map<number, VectorRoute>>();
  private readonly freeGsis: number[] = [];
  private nextGsi: number;
  private dirty = false;
  private fallbacksLogged = 0;
  private commitQueued = false;
  private readonly bindings = new Set<IoeventfdBinding>();

  constructor(private readonly vm: MsiRoutingVm, opts: MsiRouterOptions = {}) {
    this.base = opts.baseRoutes ?? kvmDefaultGsiRoutes();
    this.firstGsi = opts.firstGsi ?? FIRST_MSI_GSI;
    this.gsiLimit = opts.gsiLimit ?? KVM_MAX_IRQ_ROUTES;
    this.nextGsi = this.firstGsi;
    this.log = opts.log ?? (() => {});
  }

  /** The MsiSink a device's MSI-X table delivers through; `device` must be unique (its qdev id). */
  sink(device: string): MsiSink & { release(): void } {
    return {
      signal: (vector, address, data) => this.signal(device, vector, address, data),
      update: (vector, address, data, masked) => this.update(device, vector, address, data, masked),
      release: () => this.release(device),
    };
  }

  /** The table as last committed or about to be (irqchip base routes first). */
  routes(): GsiRoute[] {
    const msi: GsiRoute[] = [...this.devices.values()].flatMap((m) => [...m.values()])
      .sort((a, b) => a.gsi - b.gsi)
      .map((r) => ({ gsi: r.gsi, type: 'msi', addressLo: r.addressLo, addressHi: r.addressHi, data: r.data }));
    return [...this.base, ...msi];
  }

  /** The GSI serving `device`'s `vector`, once it has been signalled. */
  gsiOf(device: string, vector: number): number | undefined {
    return this.devices.get(device)?.get(vector)?.gsi;
  }

  /** Delivers `vector`'s message: allocate/refresh its route if needed, then write its irqfd. */
  signal(device: string, vector: number, address: bigint, data: number): void {
    const lo = Number(address & U32);
    const hi = Number((address >> 32n) & U32);
    let r = this.devices.get(device)?.get(vector);
    try {
      if (!r) r = this.allocate(device, vector, lo, hi, data);
      else this.setMessage(r, lo, hi, data);
      if (!r) {
        this.fallback(`msi ${device} vector ${vector}: no free GSI below ${this.gsiLimit}`, lo, hi, data);
        return;
      }
      if (this.dirty) this.commit();
      if (!r.attached) {
        this.vm.irqfd(r.eventfd.fd, r.gsi);
        r.attached = true;
      }
    } catch (e) {
      // A route KVM refused must not lose the interrupt: deliver this one by ioctl.
      this.fallback(`msi ${device} vector ${vector}: ${(e as Error).message}`, lo, hi, data);
      return;
    }
    r.eventfd.signal();
  }

  /** A vector's message or mask changed: keep an existing route in step (masking is the table's job). */
  update(device: string, vector: number, address: bigint, data: number, masked: boolean): void {
    void masked;
    const r = this.devices.get(device)?.get(vector);
    if (!r) return;
    this.setMessage(r, Number(address & U32), Number((address >> 32n) & U32), data);
    if (this.dirty && !this.commitQueued) {
      this.commitQueued = true;
      queueMicrotask(() => {
        this.commitQueued = false;
        if (!this.dirty) return;
        try {
          this.commit();
        } catch (e) {
          this.log(`msi routing: ${(e as Error).message}`);
        }
      });
    }
  }

  /** Frees every GSI of `device` (hot-unplug or teardown). */
  release(device: string): void {
    const routes = this.devices.get(device);
    if (!routes) return;
    for (const r of routes.values()) this.drop(r);
    this.devices.delete(device);
    if (this.dirty) this.commit();
  }

  /**
   * Wires a KVM ioeventfd at `addr` (MMIO, or a port with `pio`) to `cb`, which runs on the main
   * loop once per burst of guest writes. For a virtio-pci queue doorbell: len 2 and datamatch = the
   * queue index, as Linux writes it (a write of another size or value still reaches the MMIO bus).
   */
  ioeventfdNotify(addr: number | bigint | null, len: number, datamatch: number | bigint | undefined, cb: () => void,
    opts: { pio?: boolean } = {}): IoeventfdBinding {
    const efd = EventFd.create();
    const watcher = new EventfdWatcher(efd, () => cb());
    const regOpts = { datamatch, pio: opts.pio };
    let current: bigint | null = null;
    const vm = this.vm;
    const bindings = this.bindings;
    const binding: IoeventfdBinding = {
      get address() {
        return current;
      },
      move(next) {
        const to = next === null ? null : BigInt(next);
        if (to === current) return;
        if (current !== null) vm.ioeventfd(efd.fd, current, len, { ...regOpts, deassign: true });
        current = null;
        if (to !== null) {
          vm.ioeventfd(efd.fd, to, len, regOpts);
          current = to;
        }
      },
      close() {
        try {
          binding.move(null);
        } finally {
          watcher.close();
          efd.close();
          bindings.delete(binding);
        }
      },
    };
    try {
      binding.move(addr);
    } catch (e) {
      watcher.close();
      efd.close();
      throw e;
    }
    bindings.add(binding);
    return binding;
  }

  /** Releases every route, irqfd and doorbell (the VM is going away, or tests). */
  close(): void {
    for (const b of [...this.bindings]) b.close();
    for (const routes of this.devices.values()) for (const r of routes.values()) this.drop(r);
    this.devices.clear();
    if (this.dirty) this.commit();
  }

  private allocate(device: string, vector: number, addressLo: number, addressHi: number, data: number): VectorRoute | undefined {
    const gsi = this.freeGsis.pop() ?? (this.nextGsi < this.gsiLimit ? this.nextGsi++ : undefined);
    if (gsi === undefined) return undefined;
    const r: VectorRoute = { gsi, eventfd: EventFd.create(), addressLo, addressHi, data, attached: false };
    let routes = this.devices.get(device);
    if (!routes) this.devices.set(device, (routes = new Map()));
    routes.set(vector, r);
    this.dirty = true;
    return r;
  }

  private setMessage(r: VectorRoute, lo: number, hi: number, data: number): void {
    if (r.addressLo === lo && r.addressHi === hi && r.data === data) return;
    r.addressLo = lo;
    r.addressHi = hi;
    r.data = data;
    this.dirty = true;
  }

  /** Delivers one message by ioctl when no irqfd route can serve it; logs why (a bounded number of times). */
  private fallback(why: string, lo: number, hi: number, data: number): void {
    if (this.fallbacksLogged < 16) {
      this.fallbacksLogged++;
      this.log(`${why}; delivering with KVM_SIGNAL_MSI`);
    }
    try {
      this.vm.signalMsi(lo, hi, data);
    } catch (e) {
      this.log(`KVM_SIGNAL_MSI: ${(e as Error).message}`);
    }
  }

  /** Detaches and frees one route (the caller removes it from its device map). */
  private drop(r: VectorRoute): void {
    if (r.attached) {
      try {
        this.vm.irqfd(r.eventfd.fd, r.gsi, { deassign: true });
      } catch (e) {
        this.log(`msi: detaching irqfd of GSI ${r.gsi}: ${(e as Error).message}`);
      }
    }
    r.eventfd.close();
    this.freeGsis.push(r.gsi);
    this.dirty = true;
  }

  private commit(): void {
    this.vm.setGsiRouting(this.routes());
    this.dirty = false;
  }
}
