// Parsing of `-qmp` endpoint strings: `unix:PATH[,server][,nowait]` and `tcp:HOST:PORT[,server=on][,wait=off]`.
import { QmpEndpointError } from './errors.js';

/** Where a QMP listener binds. An empty TCP host means every interface, as in QEMU. */
export type QmpEndpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Options QEMU and StratoVirt command lines carry; tsvirt always listens and never waits for a client. */
const ACCEPTED_OPTIONS = new Set(['server', 'server=on', 'nowait', 'wait=off']);

/** Splits on single commas; QEMU writes a literal comma as ",,". */
function splitOptions(spec: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < spec.length; i++) {
    if (spec[i] === ',' && spec[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (spec[i] === ',') {
      parts.push(cur);
      cur = '';
    } else {
      cur += spec[i];
    }
  }
  parts.push(cur);
  return parts;
}

/** Parses one endpoint; throws QmpEndpointError naming what is wrong. */
export function parseEndpoint(spec: string): QmpEndpoint {
  const [address, ...options] = splitOptions(spec);
  for (const opt of options) {
    if (!ACCEPTED_OPTIONS.has(opt)) throw new QmpEndpointError(spec, `unsupported option '${opt}' (tsvirt always listens and never waits)`);
  }
  if (address.startsWith('unix:')) {
    const path = address.slice('unix:'.length);
    if (path === '') throw new QmpEndpointError(spec, 'missing socket path');
    return { kind: 'unix', path };
  }
  if (address.startsWith('tcp:')) {
    const rest = address.slice('tcp:'.length);
    const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(rest);
    if (m === null) throw new QmpEndpointError(spec, 'expected tcp:HOST:PORT');
    const port = Number(m[3]);
    if (port > 65535) throw new QmpEndpointError(spec, `port ${port} out of range`);
    return { kind: 'tcp', host: m[1] ?? m[2], port };
  }
  throw new QmpEndpointError(spec, "expected 'unix:PATH' or 'tcp:HOST:PORT'");
}

/** The canonical spelling of an endpoint, as `QmpServer.addresses` reports bound listeners. */
export function formatEndpoint(ep: QmpEndpoint): string {
  if (ep.kind === 'unix') return `unix:${ep.path}`;
  return `tcp:${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
}
