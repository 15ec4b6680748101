// The process logger (winston): to stderr or the -D file, level from TSVIRT_LOG (error, warn, info, debug).

import winston from 'winston';

/** The small logging surface the rest of tsvirt uses. */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

export function createLogger(file?: string | null): Logger {
  const level = process.env.TSVIRT_LOG ?? 'warn';
  const format = winston.format.combine(
    winston.format.timestamp(),
    winston.format.printf((i) => `${i.timestamp} tsvirt ${i.level}: ${i.message}`),
  );
  const transport = file
    ? new winston.transports.File({ filename: file })
    : new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] });
  return winston.createLogger({ level, format, transports: [transport] });
}

/** A logger that drops everything (unit tests). */
export const SILENT: Logger = { error() {}, warn() {}, info() {}, debug() {} };
