/**
 * The logger the pieces write to: four levels, pino-compatible (`logger.warn(obj, msg)`), so a pino or
 * pino-http logger can be passed straight in. Nothing logs prompts or completions; entries carry the
 * request id, the error class and status, and (for internal errors) the original error.
 */
import { redact, redactFields } from './redact.js';

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => {};

/** Logs nothing. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** The default: warnings and errors to the console, nothing on the per-request happy path. */
export const consoleLogger: Logger = {
  debug: noop,
  info: noop,
  warn: (obj, msg) => console.warn(`[express-llm-gateway] ${msg ?? ''}`, obj),
  error: (obj, msg) => console.error(`[express-llm-gateway] ${msg ?? ''}`, obj),
};

const redacting = new WeakSet<Logger>();

/**
 * The logger the pieces write to: every entry's message and fields go through the redactor first (no
 * credential, internal address or stack frame of an upstream in a log line, whatever a piece logs).
 * Wrapping twice is a no-op.
 */
export function withRedaction(logger: Logger): Logger {
  if (redacting.has(logger)) return logger;
  // A level that logs nothing costs nothing: no redaction for entries nobody keeps.
  const at = (level: keyof Logger): Logger[keyof Logger] =>
    logger[level] === noop
      ? noop
      : (obj: object, msg?: string): void => {
          logger[level](redactFields(obj) as object, msg === undefined ? undefined : redact(msg));
        };
  const wrapped: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  redacting.add(wrapped);
  return wrapped;
}
