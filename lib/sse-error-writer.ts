/**
 * The SSE error writer: the one place where an error becomes a response. Mount it last, after the other
 * gateway middlewares, on the gateway's routes or app-wide: it answers only the requests that went through
 * `gatewayContext()` and passes every other error on, untouched, to the host app's handlers. Before commit it sends JSON with the error's real status; after commit (a stream is
 * under way) it sends exactly one in-band error frame, then `data: [DONE]`, then ends the response cleanly:
 * never a destroyed socket, never a silent end, never Express's default HTML error page.
 */
import type { ErrorRequestHandler, NextFunction, Request, Response } from 'express';
import { type Attempt, attemptHeaders, attemptSummary } from './attempts.js';
import {
  ClientDisconnectedError,
  type ErrorBodyForm,
  ERROR_BODY_FORMS,
  type GatewayError,
  GuardrailViolationError,
  InternalError,
  ServiceUnavailableError,
  fromBodyParserError,
  toGatewayError,
} from './errors.js';
import { claimRequest, isGatewayRequest, protocolOfRequest } from './context.js';
import { type Logger, consoleLogger, withRedaction } from './logger.js';
import { assertCalledAsFactory, definedOnly, optionsValidator } from './options.js';
import { echoRequestId } from './request-id.js';
import { PROTOCOLS } from './protocols/index.js';
import type { Protocol } from './protocols/types.js';
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
  /**
   * The gateway's POST paths, relative to where this writer is mounted, on which it also answers a body
   * parser's failure (bad JSON, too large) in the gateway's shape. Express skips routes while an error is
   * pending, so when `express.json()` runs before the gateway and fails, no gateway middleware on the
   * route ever sees the request: only this writer can. Every other error of a request that did not reach
   * `gatewayContext()` goes on to the host app's handlers. A path that ends with `/v1/responses` or
   * `/v1/messages` is answered in that protocol's error shape, any other in the chat-completions shape.
   * (`createGateway` passes the paths of the protocols it serves.)
   * @default ['/v1/chat/completions']
   */
  paths?: string[];
}

interface ResolvedSseErrorWriterOptions {
  errorBodyForm: ErrorBodyForm;
  logger: Logger;
  /** Lower-case, without a trailing slash: compared as Express matches routes. */
  paths: ReadonlySet<string>;
}

export { CHAT_COMPLETIONS_PATH } from './protocols/chat/index.js';

const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    properties: {
      errorBodyForm: { enum: ERROR_BODY_FORMS },
      logger: { type: 'object' },
      paths: { type: 'array', items: { type: 'string', pattern: '^/' } },
    },
  },
  'sseErrorWriter',
);

function parseSseErrorWriterOptions(options: SseErrorWriterOptions | undefined): ResolvedSseErrorWriterOptions {
  const given = definedOnly(options);
  validateOptions(given);
  return {
    errorBodyForm: given.errorBodyForm ?? 'gateway',
    logger: withRedaction(given.logger ?? consoleLogger),
    paths: new Set((given.paths ?? [PROTOCOLS.chat.path]).map(routeKey)),
  };
}

/** Creates the terminal error middleware (four parameters: that is how Express recognises error handlers). */
export function sseErrorWriter(options?: SseErrorWriterOptions): ErrorRequestHandler {
  assertCalledAsFactory(options, 'sseErrorWriter');
  const config = parseSseErrorWriterOptions(options);

  return function llmGatewayErrorWriter(err: unknown, req: Request, res: Response, next: NextFunction): void {
    // Mounted app-wide, it sees the host app's errors too: those are the host's to answer.
    if (!isGatewayRequest(req)) {
      if (!isBodyParserErrorOnOwnPath(config, err, req, res)) {
        next(err);
        return;
      }
      claimRequest(req);
      echoRequestId(req, res);
    }
    const error = toGatewayError(err);
    const ctx = req.llmGateway;
    logError(config.logger, error, ctx?.id ?? headerRequestId(res));
    const writer = ctx?.writer ?? new ResponseWriter(res, () => attemptHeaders([]), { freshHeaders: true, protocol: protocolOfRequest(req) ?? protocolOfPath(req.path) });
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
    writer.fail(error, config.errorBodyForm, attempts && attempts.length > 1 ? { attempts: attemptSummary(attempts) } : undefined, {
      [HEADER_SHOULD_RETRY]: String(shouldClientRetry(error, attempts ?? [])),
    });
  };
}

/** Read by openai-node (and Anthropic's SDKs) before their own retry rules: `false` means no retry. */
export const HEADER_SHOULD_RETRY = 'x-should-retry';

/**
 * Whether the client should send the same request again (the `x-should-retry` header of a JSON error).
 * - A shutdown drain: yes, another instance can answer (with `Retry-After` and `Connection: close`).
 * - A deterministic failure (bad request, auth, content policy, context window, guardrail…): no, the same
 *   request fails the same way.
 * - A failure the gateway could retry, once it made upstream attempts: no. The gateway already ran its
 *   retry and fallback policy on it; a client retry would repeat the whole policy (openai-node's 2 retries
 *   turned one failing request into 3 requests and 6 upstream calls).
 * - A retryable failure without any upstream attempt (every deployment cooling down or over its limits,
 *   with no fallback): yes, nothing was spent on it; `Retry-After` says when, when the wait is known.
 */
export function shouldClientRetry(error: GatewayError, attempts: readonly Attempt[]): boolean {
  if (error instanceof ServiceUnavailableError) return true;
  if (!error.retryable) return false;
  return attempts.length === 0;
}

function isBodyParserErrorOnOwnPath(config: ResolvedSseErrorWriterOptions, err: unknown, req: Request, res: Response): boolean {
  return req.method === 'POST' && !res.headersSent && config.paths.has(routeKey(req.path)) && fromBodyParserError(err) !== undefined;
}

/** The protocol whose error shape answers a request that never reached `gatewayContext()`, by its path. */
function protocolOfPath(path: string): Protocol {
  const key = routeKey(path);
  for (const protocol of Object.values(PROTOCOLS)) if (protocol && (key === protocol.path || key.endsWith(protocol.path))) return protocol;
  return PROTOCOLS.chat;
}

function routeKey(path: string): string {
  return path.replace(/\/+$/, '').toLowerCase();
}

function headerRequestId(res: Response): string | undefined {
  const id = res.getHeader('x-request-id');
  return typeof id === 'string' ? id : undefined;
}

function logError(logger: Logger, error: GatewayError, requestId: string | undefined): void {
  const entry = { requestId, status: error.status, type: error.type, message: error.message };
  if (error instanceof ClientDisconnectedError) logger.debug(entry, 'client disconnected');
  else if (error instanceof ServiceUnavailableError) logger.info(entry, 'request ended by the shutdown');
  // Only the gateway's own failures (bugs) are logged with the original error and its stack; an upstream's
  // failure is not a bug, and its message (already redacted) says what happened.
  else if (error instanceof InternalError) logger.error({ ...entry, err: error.cause ?? error }, 'request failed');
  else if (error.status >= 500) logger.error(entry, 'request failed');
  else logger.info(entry, 'request failed');
}
