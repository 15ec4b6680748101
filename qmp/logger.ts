// The logging surface the QMP layer uses; a winston Logger satisfies it.

/** Leveled logger; `meta` carries structured fields (session id, command, error stack). */
export interface QmpLogger {
  error(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  debug(message: string, meta?: Record<string, unknown>): unknown;
}

/** Drops everything; the default when no logger is injected. */
export const silentLogger: QmpLogger = Object.freeze({
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
});
