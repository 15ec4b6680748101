// A raw disk image as virtio-blk's BlockBackend: preadv/pwritev on the libuv threadpool straight into and out of guest memory.

import * as fs from 'node:fs';
import type { BlockBackend } from '../../devices/virtio/block.js';
import { TsvirtError } from '../errors.js';
import { addressOf, ioctlPtr } from '../kvm/libc.js';
import { IOV_MAX, directIoAlignment } from './libc-extra.js';

/**
 * The disk image cannot be opened or used; the message names it as the command line did. `reason`
 * is the message without that prefix, for callers that name the option themselves.
 */
export class BlockFileError extends TsvirtError {
  readonly path: string;
  readonly reason: string;
  constructor(path: string, reason: string) {
    super('ERR_BLOCK_FILE', `-drive file=${path}: ${reason}`);
    this.path = path;
    this.reason = reason;
  }
}

export interface BlockFileOptions {
  /** Open O_RDONLY; writes are refused. */
  readonly readonly?: boolean;
  /** Open O_DIRECT (bypass the host page cache); see RawBlockFile for the alignment rules. */
  readonly direct?: boolean;
}

/** _IOR(0x12, 114, size_t): the byte size of a block device. */
const BLKGETSIZE64 = 0x80081272;
/** What O_DIRECT needs when the kernel does not say (statx STATX_DIOALIGN): the classic 512-byte sector. */
const DEFAULT_DIRECT_ALIGN = 512;

/** One preadv/pwritev on the libuv threadpool. */
function vectored(kind: 'read' | 'write', fd: number, buffers: Uint8Array[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const done = (err: NodeJS.ErrnoException | null, n: number) => (err ? reject(err) : resolve(n));
    if (kind === 'read') fs.readv(fd, buffers, position, done);
    else fs.writev(fd, buffers, position, done);
  });
}

/**
 * A raw image file (or block device). `read` and `write` take views straight into guest memory and
 * pass them to one preadv/pwritev each (IOV_MAX views at a time) on the libuv threadpool: no
 * staging copy. Reads past the end of the file fill zeros.
 *
 * With `direct`, O_DIRECT needs the file offset, every view's length and every view's address
 * aligned (statx's dio_offset_align / dio_mem_align, 512 when the kernel does not report them).
 * Guest RAM is mmapped, so views are aligned whenever the guest's buffers are (Linux's virtio-blk
 * uses sector-sized and page-aligned bio pages). Only a request with some unaligned piece goes
 * through an aligned bounce buffer: reads fill it and scatter out; writes gather into it, after
 * reading the partial first and last blocks when the offset or length is itself unaligned. Such
 * requests are counted in `bounced`.
 */
export class RawBlockFile implements BlockBackend {
  readonly size: number;
  readonly readonly: boolean;
  readonly direct: boolean;
  /** O_DIRECT alignment of addresses and of offsets/lengths (1 when not direct). */
  readonly memoryAlign: number;
  readonly offsetAlign: number;
  /** Requests that went through the bounce buffer (direct only). */
  bounced = 0;
  private closed = false;

  private constructor(readonly path: string, private readonly fd: number, opts: BlockFileOptions, size: number,
    align: { memory: number; offset: number }) {
    this.readonly = !!opts.readonly;
    this.direct = !!opts.direct;
    this.size = size;
    this.memoryAlign = align.memory;
    this.offsetAlign = align.offset;
  }

  /** Opens `path`; fails with BlockFileError (no such file, permission, no O_DIRECT support ...). */
  static open(path: string, opts: BlockFileOptions = {}): RawBlockFile {
    let flags = opts.readonly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
    if (opts.direct) flags |= fs.constants.O_DIRECT;
    let fd: number;
    try {
      fd = fs.openSync(path, flags);
    } catch (e) {
      throw new BlockFileError(path, openFailure(e as NodeJS.ErrnoException, opts));
    }
    try {
      const st = fs.fstatSync(fd);
      let size = st.size;
      if (st.isBlockDevice()) {
        const b = new BigUint64Array(1);
        const r = ioctlPtr(fd, BLKGETSIZE64, new Uint8Array(b.buffer));
        if (r < 0) throw new BlockFileError(path, 'cannot read the block device size');
        size = Number(b[0]);
      } else if (!st.isFile()) {
        throw new BlockFileError(path, 'not a regular file or block device');
      }
      let align = { memory: 1, offset: 1 };
      if (opts.direct) {
        const dio = directIoAlignment(path);
        if (dio && dio.memory === 0 && dio.offset === 0) throw new BlockFileError(path, 'the filesystem does not support direct=on');
        align = { memory: dio?.memory || DEFAULT_DIRECT_ALIGN, offset: dio?.offset || DEFAULT_DIRECT_ALIGN };
        if (size % align.offset !== 0) {
          throw new BlockFileError(path, `direct=on needs a size that is a multiple of ${align.offset} bytes (it is ${size})`);
        }
      }
      return new RawBlockFile(path, fd, opts, size, align);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  async read(offset: number, into: Uint8Array[]): Promise<void> {
    this.check(offset);
    if (this.needsBounce(offset, into)) return this.bounceRead(offset, into);
    await this.transfer('read', offset, into);
  }

  async write(offset: number, from: Uint8Array[]): Promise<void> {
    this.check(offset);
    if (this.readonly) throw new BlockFileError(this.path, 'the image is read-only');
    if (this.needsBounce(offset, from)) return this.bounceWrite(offset, from);
    await this.transfer('write', offset, from);
  }

  /** fdatasync: the data written so far is on stable storage. */
  async flush(): Promise<void> {
    if (this.closed) throw new BlockFileError(this.path, 'the image is closed');
    if (this.readonly) return;
    await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  /** Closes the fd; the caller has awaited every request it started. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private check(offset: number): void {
    if (this.closed) throw new BlockFileError(this.path, 'the image is closed');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`bad disk offset ${offset}`);
  }

  private needsBounce(offset: number, views: Uint8Array[]): boolean {
    if (!this.direct) return false;
    if (offset % this.offsetAlign !== 0) return true;
    const mem = BigInt(this.memoryAlign);
    for (const v of views) {
      if (v.byteLength === 0) continue;
      if (v.byteLength % this.offsetAlign !== 0 || addressOf(v) % mem !== 0n) return true;
    }
    return false;
  }

  /** preadv/pwritev until every view is done; reads stop at end of file and zero the rest. */
  private async transfer(kind: 'read' | 'write', offset: number, views: Uint8Array[]): Promise<void> {
    let list = views.filter((v) => v.byteLength > 0);
    let pos = offset;
    while (list.length > 0) {
      const batch = list.slice(0, IOV_MAX);
      const n = await vectored(kind, this.fd, batch, pos);
      if (n === 0) {
        if (kind === 'write') throw new BlockFileError(this.path, `write at ${pos} made no progress`);
        for (const v of list) v.fill(0);
        return;
      }
      pos += n;
      list = advance(list, n);
    }
  }

  private alignedBuffer(len: number): Uint8Array {
    const raw = Buffer.alloc(len + this.memoryAlign);
    const skew = Number(addressOf(raw) % BigInt(this.memoryAlign));
    const start = skew === 0 ? 0 : this.memoryAlign - skew;
    return raw.subarray(start, start + len);
  }

  private span(offset: number, views: Uint8Array[]): { start: number; end: number; len: number } {
    const len = views.reduce((n, v) => n + v.byteLength, 0);
    const a = this.offsetAlign;
    const start = Math.floor(offset / a) * a;
    const end = Math.ceil((offset + len) / a) * a;
    return { start, end, len };
  }

  private async bounceRead(offset: number, into: Uint8Array[]): Promise<void> {
    this.bounced++;
    const { start, end } = this.span(offset, into);
    const bounce = this.alignedBuffer(end - start);
    await this.transfer('read', start, [bounce]);
    let at = offset - start;
    for (const v of into) {
      v.set(bounce.subarray(at, at + v.byteLength));
      at += v.byteLength;
    }
  }

  private async bounceWrite(offset: number, from: Uint8Array[]): Promise<void> {
    this.bounced++;
    const { start, end, len } = this.span(offset, from);
    const a = this.offsetAlign;
    const bounce = this.alignedBuffer(end - start);
    // Partial blocks at either end keep the bytes around the guest's data.
    if (offset !== start) await this.transfer('read', start, [bounce.subarray(0, a)]);
    if (offset + len !== end && (end - a > start || offset === start)) {
      await this.transfer('read', end - a, [bounce.subarray(end - a - start)]);
    }
    let at = offset - start;
    for (const v of from) {
      bounce.set(v, at);
      at += v.byteLength;
    }
    await this.transfer('write', start, [bounce]);
  }
}

/** The views left after the first `n` bytes are done (a partly done view becomes its remainder). */
function advance(list: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < list.length && n >= list[i].byteLength) n -= list[i++].byteLength;
  const rest = list.slice(i);
  if (n > 0 && rest.length > 0) rest[0] = rest[0].subarray(n);
  return rest;
}

function openFailure(e: NodeJS.ErrnoException, opts: BlockFileOptions): string {
  switch (e.code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EROFS': return 'the filesystem is read-only (use readonly=on)';
    case 'EISDIR': return 'is a directory';
    case 'EINVAL': return opts.direct ? 'the filesystem does not support direct=on' : `cannot open: ${e.message}`;
    default: return `cannot open: ${e.message}`;
  }
}
