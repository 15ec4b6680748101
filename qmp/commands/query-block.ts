// query-block: the VM's disks in QEMU's BlockInfo shape (raw images only).
import { defineCommand } from '../registry.js';
import { NO_ARGUMENTS } from '../schema.js';

export const queryBlock = defineCommand({
  name: 'query-block',
  summary: 'The block devices: their image file, format, size and whether they are read-only',
  schema: NO_ARGUMENTS,
  example: {
    request: { execute: 'query-block' },
    response: {
      return: [
        {
          device: '', qdev: '/machine/peripheral/disk0/virtio-backend', locked: false, removable: false, type: 'unknown', 'io-status': 'ok',
          inserted: { file: '/images/root.raw', ro: false, drv: 'raw', backing_file_depth: 0, encrypted: false, image: { filename: '/images/root.raw', format: 'raw', 'virtual-size': 1073741824 } },
        },
      ],
    },
  },
  handler: (_args, ctx) =>
    (ctx.vm.blocks?.() ?? []).map((b) => ({
      device: '',
      qdev: `/machine/peripheral/${b.id}/virtio-backend`,
      locked: false,
      removable: false,
      type: 'unknown',
      'io-status': 'ok',
      inserted: { file: b.file, ro: b.readonly, drv: 'raw', backing_file_depth: 0, encrypted: false, image: { filename: b.file, format: 'raw', 'virtual-size': b.sizeBytes } },
    })),
});
