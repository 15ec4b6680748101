// query-pci: the functions on the PCIe root bus in QEMU's PciInfo shape.
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryPci = defineCommand({
  name: 'query-pci',
  summary: 'The PCI functions on bus 0 with their ids, class and BARs',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-pci' },
    response: {
      return: [
        {
          bus: 0,
          devices: [
            { bus: 0, slot: 0, function: 0, class_info: { class: 1536 }, id: { vendor: 32902, device: 10688, subsystem: 0, 'subsystem-vendor': 0 }, irq_pin: 0, qdev_id: '', regions: [] },
          ],
        },
      ],
    },
  },
  handler: (_args, ctx) => [{ bus: 0, devices: ctx.vm.pciDevices?.() ?? [] }],
});
