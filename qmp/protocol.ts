// QMP wire messages (greeting, command, return, error, event), their builders and the line encoder.
import type { QmpErrorClass } from '../machine/errors.js';

/** Any JSON value; `id` members are echoed untouched. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** The version triple and package, as in the greeting and `query-version`. */
export interface QmpVersion {
  qemu: { micro: number; minor: number; major: number };
  package: string;
}

/** First message on every connection. */
export interface QmpGreeting {
  QMP: { version: QmpVersion; capabilities: string[] };
}

/** A client request after envelope checks (`arguments` defaults to {}). */
export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
}

/** A successful response; `return` is {} for commands without data. */
export interface QmpReturn {
  return: unknown;
  id?: unknown;
}

/** A failed command or unreadable input; `id` is absent when the input carried none (or was not an object). */
export interface QmpErrorResponse {
  error: { class: QmpErrorClass; desc: string };
  id?: unknown;
}

/** Seconds and microseconds since the Unix epoch, as QEMU stamps events. */
export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

/** An asynchronous event; `data` is absent for events without members (STOP, RESUME, POWERDOWN). */
export interface QmpEventMessage {
  timestamp: QmpTimestamp;
  event: string;
  data?: Record<string, unknown>;
}

/** Anything the server writes. */
export type QmpServerMessage = QmpGreeting | QmpReturn | QmpErrorResponse | QmpEventMessage;

/** The greeting; `capabilities` lists what qmp_capabilities may enable. */
export function greeting(version: QmpVersion, capabilities: readonly string[]): QmpGreeting {
  return { QMP: { version, capabilities: [...capabilities] } };
}

/** A success response; `id` is present only when the request carried one. */
export function returnResponse(value: unknown, id?: unknown): QmpReturn {
  const msg: QmpReturn = { return: value === undefined ? {} : value };
  if (id !== undefined) msg.id = id;
  return msg;
}

/** An error response; QEMU puts `id` first in these. */
export function errorResponse(cls: QmpErrorClass, desc: string, id?: unknown): QmpErrorResponse {
  const error = { class: cls, desc };
  return id === undefined ? { error } : { id, error };
}

/** Wall-clock time with microsecond resolution. */
export function nowTimestamp(): QmpTimestamp {
  const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  return { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 };
}

/** An event; `data` is omitted when the event has none (QEMU sends STOP without `data`). */
export function eventMessage(event: string, data: Record<string, unknown> | undefined, timestamp: QmpTimestamp): QmpEventMessage {
  const msg: QmpEventMessage = { timestamp, event };
  if (data !== undefined) msg.data = data;
  return msg;
}

function hex4(code: number): string {
  return '\\u' + code.toString(16).toUpperCase().padStart(4, '0');
}

const SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A JSON string literal in ASCII: QEMU escapes control and non-ASCII characters as \uXXXX (upper-case hex). */
function quote(s: string): string {
  return '"' + s.replace(/["\\\u0000-\u001f\u007f-\uffff]/g, (c) => SHORT_ESCAPES[c] ?? hex4(c.charCodeAt(0))) + '"';
}

function serialise(value: unknown, depth: number): string | undefined {
  if (depth > 4096) throw new RangeError('value nested too deeply to encode');
  switch (typeof value) {
    case 'string':
      return quote(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'bigint':
      return value.toString(); // exact 64-bit guest values
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
  }
  if (value === null) return 'null';
  const json = (value as { toJSON?: () => unknown }).toJSON;
  if (typeof json === 'function') return serialise(json.call(value), depth + 1);
  if (Array.isArray(value)) return '[' + value.map((v) => serialise(v, depth + 1) ?? 'null').join(', ') + ']';
  const members: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const s = serialise(v, depth + 1);
    if (s !== undefined) members.push(`${quote(k)}: ${s}`);
  }
  return '{' + members.join(', ') + '}';
}

/**
 * One wire line, formatted as QEMU formats it: `{"return": {}, "id": 1}` (", " and ": " separators), ASCII only
 * (the spec says the server sends ASCII), terminated by CRLF. A bigint is written as its exact digits.
 */
export function encodeMessage(message: unknown): string {
  return (serialise(message, 0) ?? 'null') + '\r\n';
}

/** `downtimeLimit` -> `downtime-limit`, applied to the keys of nested objects and arrays. */
export function toWire(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toWire);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) out[k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())] = toWire(v);
    }
    return out;
  }
  return value;
}

/** `downtime-limit` -> `downtimeLimit`, for the top-level keys of validated arguments. */
export function fromWire(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) out[k.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase())] = v;
  return out;
}
