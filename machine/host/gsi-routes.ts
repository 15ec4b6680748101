// The irqchip part of KVM's GSI routing table: what KVM_SET_GSI_ROUTING must keep for ISA IRQs to keep working.

import { IRQCHIP_IOAPIC, IRQCHIP_PIC_MASTER, IRQCHIP_PIC_SLAVE, type GsiRoute } from '../kvm/vm.js';

/** GSIs 0-23 are the IOAPIC's pins; MSI routes are allocated from here up. */
export const FIRST_MSI_GSI = 24;
/** KVM_MAX_IRQ_ROUTES on x86 (KVM_CAP_IRQ_ROUTING reports it). */
export const KVM_MAX_IRQ_ROUTES = 4096;

const ioapic = (gsi: number, pin = gsi): GsiRoute => ({ gsi, type: 'irqchip', irqchip: IRQCHIP_IOAPIC, pin });
const pic = (gsi: number): GsiRoute => ({ gsi, type: 'irqchip', irqchip: gsi < 8 ? IRQCHIP_PIC_MASTER : IRQCHIP_PIC_SLAVE, pin: gsi % 8 });

/**
 * Exactly the table KVM_CREATE_IRQCHIP installs (kvm_setup_default_irq_routing, arch/x86/kvm
 * irq_comm.c: `ROUTING_ENTRY2(0..15), ROUTING_ENTRY1(16..23)`): GSI n -> IOAPIC pin n for 0-23,
 * and GSI n -> PIC master/slave pin n % 8 for 0-15, GSI 2 (the cascade) and GSI 0 included.
 * 40 entries. Re-installing it alongside MSI routes leaves every ISA line behaving as before.
 */
export function kvmDefaultGsiRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < 16; gsi++) routes.push(ioapic(gsi), pic(gsi));
  for (let gsi = 16; gsi < 24; gsi++) routes.push(ioapic(gsi));
  return routes;
}

/**
 * QEMU's table for a PC with PCI (kvm_pc_setup_irq_routing): no GSI 2, and GSI 0 (the in-kernel
 * PIT) on IOAPIC pin 2, which is what tsvirt's MADT override and MP table (IRQ0 -> pin 2) tell the
 * guest. Not the default: switching to it changes where the PIT lands on the IOAPIC.
 */
export function qemuPcGsiRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < 16; gsi++) if (gsi !== 2) routes.push(pic(gsi));
  for (let gsi = 0; gsi < 24; gsi++) {
    if (gsi === 0) routes.push(ioapic(0, 2));
    else if (gsi !== 2) routes.push(ioapic(gsi));
  }
  return routes;
}
