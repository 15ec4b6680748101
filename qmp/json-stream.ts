// Incremental splitter of a QMP byte stream into top-level JSON values, modelled on QEMU's json-streamer.
//
// Bytes go in as they arrive; complete values (or errors) come out. Several values per chunk and one value spread
// over many chunks are both fine. The splitter tracks only structure (depth, strings, escapes); each complete value
// is then decoded as UTF-8 and handed to JSON.parse, so the grammar is checked in one well-tested place.
//
// Errors never wedge the stream:
// - a byte that cannot appear in JSON outside a string (or a control byte inside one) is a lexical error: the
//   partial value is dropped, one error is reported, and bytes are skipped until a resynchronisation point: a
//   control character other than TAB (newline included), 0xFE or 0xFF (consumed), or '{' / '[' (which starts the
//   next value). QEMU resynchronises the same way; its spec tells clients to send a control character to reset,
//   and a control byte in the middle of a value is such a lexical error.
// - a value over `maxMessageBytes` or nested deeper than `maxNesting` is reported once and then skipped to its end
//   (structure is still tracked, bytes are not kept), or to the next newline or control character, whichever is first.
// - JSON.parse failures (a complete but invalid value, e.g. `{"a" 1}`) cost only that value.
// - a lone '}' or ']' is reported as "JSON parse error, expecting value", like QEMU.
// An unclosed '{' legitimately swallows what follows (JSON allows newlines inside values); a control byte resets it.

/** Limits on one top-level value. */
export interface JsonStreamLimits {
  /** Largest value in bytes (QEMU: 64 MiB of tokens). */
  maxMessageBytes: number;
  /** Deepest nesting of objects and arrays (QEMU: 1024). */
  maxNesting: number;
}

/**
 * Defaults: 16 MiB per message (a quarter of QEMU's 64 MiB: the largest real QMP request is a few KiB, and each
 * client may buffer this much) and QEMU's nesting limit of 1024.
 */
export const DEFAULT_JSON_STREAM_LIMITS: Readonly<JsonStreamLimits> = Object.freeze({
  maxMessageBytes: 16 * 1024 * 1024,
  maxNesting: 1024,
});

/** One output of the splitter: a parsed value, or a message saying why input was dropped. */
export type JsonStreamItem = { kind: 'value'; value: unknown } | { kind: 'error'; message: string };

const enum Mode {
  Idle,
  Value,
  Bare,
  Skip,
  Recover,
}

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const TAB = 0x09;

function isWhitespace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === TAB;
}

/** Bytes that end a partial message: control characters except TAB, and 0xFE/0xFF (never valid in UTF-8). */
function isResync(b: number): boolean {
  return (b < 0x20 && b !== TAB) || b >= 0xfe;
}

/** Characters of a bare literal or number: true, false, null, -1.5e+3. */
function isBareChar(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2b || b === 0x2e
  );
}

/** Bytes allowed between tokens inside a container, besides brackets, quotes and whitespace. */
function isStructuralOrBare(b: number): boolean {
  return b === 0x2c || b === 0x3a || isBareChar(b);
}

function describe(b: number): string {
  return b < 0x80 ? String.fromCharCode(b) : '\ufffd';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Turns V8's JSON.parse message into a short QEMU-style description, without echoing the input. */
function parseErrorMessage(e: unknown): string {
  let msg = e instanceof Error ? e.message : String(e);
  msg = msg.replace(/, ".*" is not valid JSON$/s, '');
  if (msg.length > 200) msg = msg.slice(0, 200) + '...';
  return `JSON parse error, ${msg}`;
}

/** Splits a byte stream into JSON values; see the file comment for the recovery rules. */
export class JsonStream {
  readonly limits: Readonly<JsonStreamLimits>;
  private mode = Mode.Idle;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private size = 0;
  private parts: Uint8Array[] = [];

  constructor(limits: Partial<JsonStreamLimits> = {}) {
    this.limits = Object.freeze({ ...DEFAULT_JSON_STREAM_LIMITS, ...limits });
  }

  /** Feeds bytes; returns the values and errors they complete, in input order. */
  push(chunk: Uint8Array): JsonStreamItem[] {
    const out: JsonStreamItem[] = [];
    const n = chunk.length;
    let start = this.mode === Mode.Value || this.mode === Mode.Bare ? 0 : -1;
    let i = 0;
    while (i < n) {
      const b = chunk[i];
      switch (this.mode) {
        case Mode.Idle: {
          if (isWhitespace(b)) {
            i++;
          } else if (b === LBRACE || b === LBRACKET || b === QUOTE) {
            this.begin(b === QUOTE ? 0 : 1, b === QUOTE);
            start = i++;
          } else if (isBareChar(b)) {
            this.mode = Mode.Bare;
            this.size = 1;
            start = i++;
          } else if (isResync(b)) {
            i++; // nothing pending: a reset byte is silently accepted
          } else if (b === RBRACE || b === RBRACKET || b === 0x2c || b === 0x3a) {
            out.push({ kind: 'error', message: 'JSON parse error, expecting value' });
            i++;
          } else {
            out.push({ kind: 'error', message: `JSON parse error, stray '${describe(b)}'` });
            this.mode = Mode.Recover;
            i++;
          }
          break;
        }
        case Mode.Bare: {
          if (isBareChar(b)) {
            if (++this.size > this.limits.maxMessageBytes) {
              out.push({ kind: 'error', message: 'JSON token size limit exceeded' });
              this.drop(Mode.Recover);
              start = -1;
            }
            i++;
          } else {
            // The delimiter is not part of the literal; it is looked at again in Idle mode.
            out.push(this.finish(chunk, start, i));
            start = -1;
          }
          break;
        }
        case Mode.Value:
        case Mode.Skip: {
          if (this.inString) {
            if (this.escaped) {
              // The byte after a backslash is taken verbatim (JSON.parse judges the escape) unless it is a resync byte.
              this.escaped = false;
              if (!isResync(b)) {
                this.count(out, 1);
                i++;
                break;
              }
            } else {
              const from = i;
              while (i < n) {
                const c = chunk[i];
                if (c === QUOTE || c === BACKSLASH || c < 0x20 || c >= 0xfe) break;
                i++;
              }
              if (i > from && !this.count(out, i - from)) start = -1;
              if (i >= n) break;
            }
            const c = chunk[i++];
            if (!this.count(out, 1)) start = -1;
            if (c === BACKSLASH) {
              this.escaped = true;
            } else if (c === QUOTE) {
              this.inString = false;
              if (this.depth === 0) {
                if (this.mode === Mode.Value) out.push(this.finish(chunk, start, i));
                else this.mode = Mode.Idle;
                start = -1;
              }
            } else {
              // A control byte (newline included) or 0xFE/0xFF inside a string is a lexical error.
              if (this.mode === Mode.Value) out.push({ kind: 'error', message: `JSON parse error, stray '${describe(c)}'` });
              this.drop(Mode.Recover);
              start = -1;
            }
            break;
          }
          i++;
          if (!this.count(out, 1)) start = -1;
          if (isWhitespace(b)) {
            // While skipping an over-limit value, a line end is taken as the start of the client's next message.
            if (this.mode === Mode.Skip && (b === 0x0a || b === 0x0d)) this.drop(Mode.Idle);
          } else if (b === LBRACE || b === LBRACKET) {
            if (++this.depth > this.limits.maxNesting && this.mode === Mode.Value) {
              out.push({ kind: 'error', message: 'JSON nesting depth limit exceeded' });
              this.drop(Mode.Skip);
              start = -1;
            }
          } else if (b === RBRACE || b === RBRACKET) {
            if (--this.depth === 0) {
              if (this.mode === Mode.Value) out.push(this.finish(chunk, start, i));
              else this.mode = Mode.Idle;
              start = -1;
            }
          } else if (b === QUOTE) {
            this.inString = true;
          } else if (!isStructuralOrBare(b)) {
            if (this.mode === Mode.Value) out.push({ kind: 'error', message: `JSON parse error, stray '${describe(b)}'` });
            this.drop(Mode.Recover);
            start = -1;
          }
          break;
        }
        case Mode.Recover: {
          if (isResync(b)) {
            this.mode = Mode.Idle;
            i++;
          } else if (b === LBRACE || b === LBRACKET) {
            this.mode = Mode.Idle; // the bracket starts the next value
          } else {
            i++;
          }
          break;
        }
      }
    }
    if (start >= 0 && (this.mode === Mode.Value || this.mode === Mode.Bare)) {
      this.parts.push(chunk.slice(start));
    }
    return out;
  }

  /** End of input: a pending bare literal (`42`) completes; a partial value is reported and dropped. */
  end(): JsonStreamItem[] {
    const out: JsonStreamItem[] = [];
    if (this.mode === Mode.Bare) out.push(this.finish(new Uint8Array(0), 0, 0));
    else if (this.mode === Mode.Value) out.push({ kind: 'error', message: 'JSON parse error, premature end of input' });
    this.drop(Mode.Idle);
    return out;
  }

  /** True when no partial value is buffered or being skipped. */
  get idle(): boolean {
    return this.mode === Mode.Idle;
  }

  /**
   * Adds `bytes` to the size of the value being kept; past the limit, reports it and switches to skipping.
   * Returns false when the value stopped being kept (the caller forgets its start offset).
   */
  private count(out: JsonStreamItem[], bytes: number): boolean {
    if (this.mode !== Mode.Value) return this.mode === Mode.Skip ? false : true;
    this.size += bytes;
    if (this.size <= this.limits.maxMessageBytes) return true;
    out.push({ kind: 'error', message: 'JSON token size limit exceeded' });
    this.drop(Mode.Skip);
    return false;
  }

  private begin(depth: number, inString: boolean): void {
    this.mode = Mode.Value;
    this.depth = depth;
    this.inString = inString;
    this.escaped = false;
    this.size = 1;
    this.parts = [];
  }

  private drop(next: Mode): void {
    this.parts = [];
    this.size = 0;
    this.mode = next;
    if (next !== Mode.Skip) {
      this.depth = 0;
      this.inString = false;
      this.escaped = false;
    }
  }

  /** Completes the current value with chunk[start, end) appended to what earlier chunks held. */
  private finish(chunk: Uint8Array, start: number, end: number): JsonStreamItem {
    let bytes: Uint8Array;
    if (this.parts.length === 0) {
      bytes = chunk.subarray(start, end);
    } else {
      const tail = chunk.subarray(start, end);
      bytes = new Uint8Array(this.parts.reduce((s, p) => s + p.length, 0) + tail.length);
      let off = 0;
      for (const p of this.parts) {
        bytes.set(p, off);
        off += p.length;
      }
      bytes.set(tail, off);
    }
    this.drop(Mode.Idle);
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return { kind: 'error', message: 'JSON parse error, invalid UTF-8 sequence' };
    }
    try {
      return { kind: 'value', value: JSON.parse(text) };
    } catch (e) {
      return { kind: 'error', message: parseErrorMessage(e) };
    }
  }
}
