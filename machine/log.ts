// The process logger: winston (to stderr or the -D file, level from TSVIRT_LOG) when logging is asked for, else warnings to stderr.

/** The small logging surface the rest of tsvirt uses. */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

const line = (level: string, message: string) => `${new Date().toISOString()} tsvirt ${level}: ${message}\n`;

/**
 * Errors and warnings to stderr, nothing else. Used when neither -D nor TSVIRT_LOG asks for more: loading winston
 * costs about 120 ms of start-up, longer than the whole guest boot, so it is only loaded when it has work to do.
 */
export const STDERR_WARNINGS: Logger = {
  error: (m) => void process.stderr.write(line('error', m)),
  warn: (m) => void process.stderr.write(line('warn', m)),
  info() {},
  debug() {},
};

/** Creates the logger the command line and environment ask for. */
export async function createLogger(file?: string | null): Promise<Logger> {
  const level = process.env.TSVIRT_LOG;
  if (file === undefined && (level === undefined || level === 'warn')) return STDERR_WARNINGS;
  const { default: winston } = await import('winston');
  const format = winston.format.combine(
    winston.format.timestamp(),
    winston.format.printf((i) => `${i.timestamp} tsvirt ${i.level}: ${i.message}`),
  );
  const transport = file
    ? new winston.transports.File({ filename: file })
    : new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] });
  return winston.createLogger({ level: level ?? 'info', format, transports: [transport] });
}

/** A logger that drops everything (unit tests). */
export const SILENT: Logger = { error() {}, warn() {}, info() {}, debug() {} };
