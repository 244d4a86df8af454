/**
 * The logger the pieces write to: four levels, pino-compatible (`logger.warn(obj, msg)`), so a pino or
 * pino-http logger can be passed straight in. Nothing logs prompts or completions; entries carry the
 * request id, the error class and status, and (for internal errors) the original error.
 */
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
