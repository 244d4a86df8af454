/**
 * The SSE error writer: the one place where an error becomes a response. Mount it last, after the other
 * gateway middlewares. Before commit it sends JSON with the error's real status; after commit (a stream is
 * under way) it sends exactly one in-band error frame, then `data: [DONE]`, then ends the response cleanly:
 * never a destroyed socket, never a silent end, never Express's default HTML error page.
 */
import type { ErrorRequestHandler, NextFunction, Request, Response } from 'express';
import { attemptHeaders, attemptSummary } from './attempts.js';
import {
  ClientDisconnectedError,
  type ErrorBodyForm,
  ERROR_BODY_FORMS,
  type GatewayError,
  GuardrailViolationError,
  toGatewayError,
} from './errors.js';
import { type Logger, consoleLogger } from './logger.js';
import { assertCalledAsFactory, definedOnly, optionsValidator } from './options.js';
import { ResponseWriter } from './response-writer.js';

export interface SseErrorWriterOptions {
  /**
   * The wire form of every error body, JSON and in-band alike: `'gateway'` sends
   * `{"error":{"message","code":400,"type"}}`; `'openai'` sends OpenAI's typed
   * `{"error":{"message","type","param":null,"code":"400"}}` for strictly typed clients.
   * @default 'gateway'
   */
  errorBodyForm?: ErrorBodyForm;
  /**
   * Where errors are logged (pino-compatible): 5xx at `error` (with the original error), 4xx at `info`
   * (they are the client's or the provider's answer, not the gateway's failure), client disconnects at
   * `debug`. Prompts and completions are never logged.
   * @default console, for warnings and errors only
   */
  logger?: Logger;
}

interface ResolvedSseErrorWriterOptions {
  errorBodyForm: ErrorBodyForm;
  logger: Logger;
}

const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    properties: { errorBodyForm: { enum: ERROR_BODY_FORMS }, logger: { type: 'object' } },
  },
  'sseErrorWriter',
);

function parseSseErrorWriterOptions(options: SseErrorWriterOptions | undefined): ResolvedSseErrorWriterOptions {
  const given = definedOnly(options);
  validateOptions(given);
  return { errorBodyForm: given.errorBodyForm ?? 'gateway', logger: given.logger ?? consoleLogger };
}

/** Creates the terminal error middleware (four parameters: that is how Express recognises error handlers). */
export function sseErrorWriter(options?: SseErrorWriterOptions): ErrorRequestHandler {
  assertCalledAsFactory(options, 'sseErrorWriter');
  const config = parseSseErrorWriterOptions(options);

  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  return function llmGatewayErrorWriter(err: unknown, req: Request, res: Response, _next: NextFunction): void {
    const error = toGatewayError(err);
    const ctx = req.llmGateway;
    logError(config.logger, error, ctx?.id ?? headerRequestId(res));
    const writer = ctx?.writer ?? new ResponseWriter(res, () => attemptHeaders([]));
    if (error instanceof ClientDisconnectedError) {
      if (!res.writableEnded) res.end(); // nobody is listening; just release the response
      return;
    }
    if (error instanceof GuardrailViolationError && error.softMessage !== undefined && ctx) {
      writer.softStop(error.softMessage, { stream: ctx.stream, model: ctx.model, id: ctx.id });
      return;
    }
    // After several attempts (retries, fallbacks) the final error carries the list, so the client can see
    // what was tried; a failure on the first and only attempt keeps the plain error object.
    const attempts = ctx?.attempts;
    writer.fail(error, config.errorBodyForm, attempts && attempts.length > 1 ? { attempts: attemptSummary(attempts) } : undefined);
  };
}

function headerRequestId(res: Response): string | undefined {
  const id = res.getHeader('x-request-id');
  return typeof id === 'string' ? id : undefined;
}

function logError(logger: Logger, error: GatewayError, requestId: string | undefined): void {
  const entry = { requestId, status: error.status, type: error.type, message: error.message };
  if (error instanceof ClientDisconnectedError) logger.debug(entry, 'client disconnected');
  else if (error.status >= 500) logger.error({ ...entry, err: error.cause ?? error }, 'request failed');
  else logger.info(entry, 'request failed');
}
