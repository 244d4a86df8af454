/**
 * The request context: created once per request by the `gatewayContext()` middleware, the only state the
 * pieces share. It validates the body first (a bad request never reaches a provider or a guardrail), wires
 * the client's disconnect to an `AbortSignal`, and owns the response writer.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { RequestAbortListener, RequestAbortSource } from './attempt-control.js';
import { type Attempt, HEADER_REQUEST_ID, attemptHeaders } from './attempts.js';
import { type BodyReadOptions, readJsonBody } from './body.js';
import { endRequestTrace, isTracedRequest, requestChannel, traceRequest } from './diagnostics.js';
import { type GatewayEvents, type ResponseEnding, summarize } from './events.js';
import { type Logger, consoleLogger, withRedaction } from './logger.js';
import { guardrailHeaders } from './guardrail/headers.js';
import { ClientDisconnectedError, InternalError } from './errors.js';
import { GatewayConfigError, assertCalledAsFactory, definedOnly, optionsValidator, parseSize } from './options.js';
import { type RequestIdPolicy, echoRequestId, requestIdOf } from './request-id.js';
import { PROTOCOL_NAMES, protocolNamed } from './protocols/index.js';
import type { Protocol, ProtocolName } from './protocols/types.js';
import { ResponseWriter } from './response-writer.js';
import { LazyAbort } from './lazy-abort.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage } from './types.js';

/**
 * Checks the input while the model is called (a `during_call` guardrail). Started once per request with the
 * first upstream call; nothing is committed until it resolves, and a rejection aborts the upstream call and
 * fails the request with that error.
 */
export type InputHook = (ctx: GatewayContext, signal: AbortSignal) => Promise<void>;

/**
 * Sees the output before the client does. Streaming: `chunk` returns the chunks to release now (none while
 * it holds text back to check it; order is kept: a held chunk also holds every later one), `end` releases
 * what is left. Non-streaming: `completion` gets the whole answer. Throwing (a guardrail block) ends the
 * response with that error, in-band if already committed.
 */
export interface OutputFilter {
  chunk(chunk: ChatCompletionChunk): ChatCompletionChunk[] | Promise<ChatCompletionChunk[]>;
  end(): ChatCompletionChunk[] | Promise<ChatCompletionChunk[]>;
  completion(completion: ChatCompletion): ChatCompletion | Promise<ChatCompletion>;
}

/** The upstream attempt an output filter belongs to. */
export interface AttemptControl {
  /** Aborts when the attempt ends early (client gone, timeout, another filter's block). */
  readonly signal: AbortSignal;
  /**
   * Stops the attempt from outside the chunk flow (a check running behind the stream found a violation):
   * the upstream call is aborted and the request fails with `reason`.
   */
  abort(reason: Error): void;
}

/** Creates the per-attempt state of an output check (each upstream attempt starts from a clean slate). */
export type OutputHook = (ctx: GatewayContext, attempt: AttemptControl) => OutputFilter;

export interface ContextHooks {
  /** Input checks run alongside the upstream call (see `InputHook`). */
  readonly duringCall: InputHook[];
  /** Output checks, applied in order to every answer (a `post_call` guardrail). */
  readonly output: OutputHook[];
}

/** One guardrail decision, for accounting and the response headers. */
export interface GuardrailRecord {
  guardrail: string;
  /** Which side was checked. */
  source: 'INPUT' | 'OUTPUT';
  action: 'NONE' | 'BLOCKED' | 'MASKED' | 'ERROR';
  /** Text units billed (1 unit = up to 1,000 characters). */
  units: number;
  latencyMs: number;
}

export interface GatewayContext {
  /** The request id: the client's `x-request-id` when it sent a usable one, otherwise a new UUID. */
  readonly id: string;
  /** The validated request body. Input masking may replace `messages`; the rest is as the client sent it. */
  body: ChatCompletionRequest;
  /** The model group the client asked for (`body.model` as received). */
  readonly model: string;
  /** Whether the client asked for a stream. */
  readonly stream: boolean;
  /**
   * The wire protocol the client speaks (`chat`, `responses`, `messages`). `body` is always the internal
   * chat-completions form of its request; the protocol writes the answer back in its own form.
   */
  readonly protocol: ProtocolName;
  /** Aborts when the client goes away (or `cancel` is called); every upstream and guardrail call listens to it. */
  readonly signal: AbortSignal;
  /**
   * Stops the request from outside (a server shutting down): in-flight upstream and guardrail calls are
   * aborted and the client gets `error`, as JSON before commit or as the in-band frame after it.
   */
  cancel(error: Error): void;
  /** `performance.now()` when the context was created. */
  readonly startedAt: number;
  /** Every upstream call made for this request, in order. */
  readonly attempts: Attempt[];
  /** Every guardrail decision made for this request, in order. */
  readonly guardrails: GuardrailRecord[];
  readonly hooks: ContextHooks;
  readonly writer: ResponseWriter;
  /**
   * Token usage of the upstream attempt that ended the request: reported by the upstream, or estimated
   * (`estimated: true`) when it did not report any (the client left, the stream broke, a timeout, a block).
   */
  usage: Usage | undefined;
}

export interface GatewayContextOptions {
  /**
   * Largest accepted request body, in bytes or as a string such as `'10mb'`. Applies when this middleware
   * reads the body itself; a body parser mounted earlier enforces its own limit.
   * @default '10mb'
   */
  bodyLimit?: number | string;
  /**
   * Milliseconds for the whole request body to arrive, counted from when this middleware starts reading it;
   * 0 turns the deadline off. A slower upload is answered with a 408 (`RequestTimeoutError`) and the
   * connection is closed, so a client trickling bytes cannot hold a request open until Node's own
   * `server.requestTimeout` (5 minutes, answered in Node's bare format). Applies when this middleware reads
   * the body itself; a body parser mounted earlier has no deadline of its own beyond the server's.
   * @default 30000
   */
  bodyTimeoutMs?: number;
  /**
   * Use the client's `x-request-id` header as the request id when it is a usable value (1 to 128 visible
   * ASCII characters). Turn off when clients are not trusted to choose ids.
   * @default true
   */
  trustRequestId?: boolean;
  /**
   * Makes a new request id.
   * @default crypto.randomUUID
   */
  generateRequestId?: (req: IncomingMessage) => string;
  /**
   * Called when a request starts (after validation) and when it ended (its response closed and the router's
   * work for it settled, so the usage is final), with a summary for accounting and metrics (see
   * `RequestSummary`). A throwing handler is logged, never fails a request.
   */
  events?: GatewayEvents;
  /** @default console, warnings and errors only */
  logger?: Logger;
  /**
   * The protocol of the route this middleware is mounted on: `'chat'` (`POST /v1/chat/completions`),
   * `'responses'` (`POST /v1/responses`) or `'messages'` (`POST /v1/messages`). The body is validated and
   * mapped to the internal chat-completions request by this protocol, and every answer and error of the
   * request is written in its form.
   * @default 'chat'
   */
  protocol?: ProtocolName;
}

interface ResolvedContextOptions {
  bodyLimit: number;
  bodyTimeoutMs: number;
  trustRequestId: boolean;
  generateRequestId: (req: IncomingMessage) => string;
  events: GatewayEvents | undefined;
  logger: Logger;
  protocol: Protocol;
}

export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

/** `bodyTimeoutMs` (also `context.bodyTimeoutMs` in the config file): up to the largest delay a Node timer takes. */
export const BODY_TIMEOUT_SCHEMA = { type: 'integer', minimum: 0, maximum: 2_147_483_647 } as const;

const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    properties: {
      bodyLimit: { type: ['number', 'string'] },
      bodyTimeoutMs: BODY_TIMEOUT_SCHEMA,
      trustRequestId: { type: 'boolean' },
      generateRequestId: {},
      events: { type: 'object' },
      logger: { type: 'object' },
      protocol: { enum: PROTOCOL_NAMES },
    },
  },
  'gatewayContext',
);

function parseContextOptions(options: GatewayContextOptions | undefined): ResolvedContextOptions {
  const given = definedOnly(options);
  validateOptions(given);
  if (given.generateRequestId !== undefined && typeof given.generateRequestId !== 'function') {
    throw new GatewayConfigError('gatewayContext.generateRequestId', 'expected a function (req) => string.');
  }
  return {
    bodyLimit: parseSize(given.bodyLimit ?? '10mb', 'gatewayContext.bodyLimit'),
    bodyTimeoutMs: given.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
    trustRequestId: given.trustRequestId ?? true,
    generateRequestId: given.generateRequestId ?? (() => randomUUID()),
    events: given.events,
    logger: withRedaction(given.logger ?? consoleLogger),
    protocol: protocolNamed(given.protocol ?? 'chat'),
  };
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The gateway's request context, set by the `gatewayContext()` middleware. Prefer `getContext(req)`. */
      llmGateway?: GatewayContext;
    }
  }
}

/**
 * Requests the gateway owns: those that reached `gatewayContext()`, even when it failed before the context
 * existed (a bad body). Error middlewares answer these and pass every other request's error on. The value is
 * `true` for a claimed request, or (from `gatewayContext()`) what its response's 'close' listener needs.
 *
 * A weak map rather than a property on the request: in a profile of the benchmark's router, adding any
 * property to Express's request or response objects cost about 1 µs per request (the objects' shapes vary
 * between requests, so each add takes V8's slow path), a weak map's entry about half of that.
 */
const claims = new WeakMap<IncomingMessage, true | ResponseWatch>();

/** Marks a request as the gateway's (an error on one of its paths that arose before `gatewayContext()` ran). */
export function claimRequest(req: IncomingMessage): void {
  claims.set(req, true);
}

/** Whether this request is the gateway's (it went through `gatewayContext()`, or was claimed). */
export function isGatewayRequest(req: IncomingMessage): boolean {
  return claims.has(req);
}

/**
 * The protocol of a request that reached `gatewayContext()`, even when it failed before its context existed
 * (a bad body is answered in the protocol's error shape); undefined for any other request.
 */
export function protocolOfRequest(req: IncomingMessage): Protocol | undefined {
  const claim = claims.get(req);
  return claim === undefined || claim === true ? undefined : claim.setup.config.protocol;
}

/**
 * The context middleware. Mount it first on the chat-completions route: it reads and validates the body
 * (a bad one goes to `next()` as a 400 naming the field), then creates the request context.
 */
export function gatewayContext(options?: GatewayContextOptions): RequestHandler {
  assertCalledAsFactory(options, 'gatewayContext');
  const config = parseContextOptions(options);
  // The validator is compiled now, at start-up, not on the first request.
  config.protocol.compile?.();
  const idPolicy: RequestIdPolicy = { trust: config.trustRequestId, generate: config.generateRequestId };

  const setup: ContextSetup = { config, bodyOptions: { limit: config.bodyLimit, timeoutMs: config.bodyTimeoutMs } };

  return function llmGatewayContext(req: Request, res: Response, next: NextFunction): void {
    const abort = new RequestAbort();
    // The claim carries what the 'close' listener needs (it finds the request as `res.req`).
    claims.set(req, { abort, setup });
    const id = requestIdOf(req, idPolicy);
    res.setHeader(HEADER_REQUEST_ID, id);
    // Listen before the first await: a client that leaves while the body is read must still abort.
    res.on('close', onResponseClose); // emitted once: no once-wrapper needed
    // A client that left before this middleware ran (a slow auth middleware earlier) has no 'close' left to
    // tell us: stop here, before any upstream call or request accounting starts.
    if (res.destroyed || req.destroyed) {
      abort.abort(new ClientDisconnectedError());
      next(new ClientDisconnectedError());
      return;
    }
    void startRequest(req, res, next, id, abort, setup);
  };
}

/** What one `gatewayContext()` middleware was made with, shared by its requests. */
interface ContextSetup {
  config: ResolvedContextOptions;
  bodyOptions: BodyReadOptions;
}

/** A request `gatewayContext()` took: its abort state and setup, for the 'close' listener (a module function). */
interface ResponseWatch {
  abort: RequestAbort;
  setup: ContextSetup;
}

/** Reads and validates the body, then creates the context and hands over to the next middleware. */
async function startRequest(req: Request, res: Response, next: NextFunction, id: string, abort: RequestAbort, { config, bodyOptions }: ContextSetup): Promise<void> {
  try {
    const raw = await readJsonBody(req, bodyOptions);
    if (abort.aborted) throw new ClientDisconnectedError();
    const body = config.protocol.toChatRequest(raw);
    const ctx = new RequestContext(id, body, abort, res, config.protocol);
    const traced = requestChannel.hasSubscribers;
    if (config.events?.onRequestEnd || traced) pipelines.set(ctx, { pending: 0, onSettled: undefined });
    req.llmGateway = ctx;
    if (config.events?.onRequestStart) notify(config, 'onRequestStart', () => config.events?.onRequestStart?.(ctx));
    if (traced) traceRequest(ctx, next);
    else next();
  } catch (err) {
    // A body refused before it fully arrived (too slow, too large, undecodable) leaves the connection
    // in the middle of a request: it cannot carry another one, and the client may still be sending.
    // Node ends (and then destroys) the socket once an answer with `Connection: close` is written.
    if (!req.complete && !res.headersSent) res.setHeader('connection', 'close');
    next(err);
  }
}

/** The response closed: a client that left aborts the request; the summary goes out once the router settled. */
function onResponseClose(this: ServerResponse): void {
  const res = this;
  const req = res.req as IncomingMessage | undefined;
  const watch = req === undefined ? undefined : claims.get(req);
  if (watch === undefined || watch === true) return;
  const { abort, setup } = watch;
  const { config } = setup;
  if (!res.writableFinished) abort.abort(new ClientDisconnectedError());
  const ctx = (res.req as Request | undefined)?.llmGateway;
  if (ctx && (config.events?.onRequestEnd || isTracedRequest(ctx))) {
    const ending: ResponseEnding = { statusCode: res.statusCode, headersSent: res.headersSent, finished: res.writableFinished, at: performance.now() };
    // The abort above only starts the router's unwinding: the usage of the cut attempt is recorded once
    // it settled, so the summary waits for that (no timer: the abort makes every upstream call end).
    whenPipelineSettled(ctx, () => {
      const summary = summarize(ctx, ending);
      endRequestTrace(ctx, summary);
      notify(config, 'onRequestEnd', () => config.events?.onRequestEnd?.(summary));
    });
  }
}

/**
 * The router work of a request that has not settled yet, for the requests someone summarizes (kept out of
 * the context itself, which is logged and handed to users).
 */
interface PipelineState {
  pending: number;
  /** Set when the response closed while work was still pending: emits the summary. */
  onSettled: (() => void) | undefined;
}

const pipelines = new WeakMap<GatewayContext, PipelineState>();

/**
 * Makes the request's summary (`onRequestEnd`) wait until `work` settled, so what `work` records on the
 * context (the usage of an attempt cut short by the client leaving) is in it. The router registers each
 * dispatch (the first and every fallback's). Nothing is tracked when nobody listens to `onRequestEnd` and
 * nobody traces the request.
 */
export function holdSummaryUntil(ctx: GatewayContext, work: Promise<unknown>): void {
  const state = pipelines.get(ctx);
  if (!state) return;
  state.pending++;
  const settled = (): void => {
    state.pending--;
    if (state.pending > 0 || !state.onSettled) return;
    const emit = state.onSettled;
    state.onSettled = undefined;
    emit();
  };
  work.then(settled, settled);
}

/** Runs `emit` now when no registered work is pending, otherwise once the last of it settled. */
function whenPipelineSettled(ctx: GatewayContext, emit: () => void): void {
  const state = pipelines.get(ctx);
  if (!state || state.pending === 0) emit();
  else state.onSettled = emit;
}

/** Users' event handlers never break a request. */
function notify(config: ResolvedContextOptions, event: string, call: () => void): void {
  try {
    call();
  } catch (err) {
    config.logger.warn({ event, err: (err as Error).message }, 'event handler threw');
  }
}

/**
 * Whether the request was aborted, and why, without an `AbortSignal` until someone asks for one: most
 * requests end without anybody reading `ctx.signal`, and creating a signal (an EventTarget) costs more than
 * the rest of this object. The gateway's own pieces listen here (`onAbort`); `signal` is made on first use,
 * already aborted when the request was. Internal: not part of the context users see.
 */
export class RequestAbort extends LazyAbort implements RequestAbortSource {
  private listeners: RequestAbortListener[] | undefined = undefined;

  /** Aborts once: the signal (when it exists) first, then the listeners, in the order they were added. */
  abort(reason: unknown): void {
    if (!this.abortOnce(reason)) return;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const listener of listeners) listener.requestAborted(reason);
  }

  /** Tells `listener` when the request aborts (never when it already has: check `aborted` first). */
  onAbort(listener: RequestAbortListener): void {
    if (!this.aborted) (this.listeners ??= []).push(listener);
  }
}

/** The context `gatewayContext()` creates: its internals (the abort state) are private fields, out of logs. */
class RequestContext implements GatewayContext {
  readonly id: string;
  body: ChatCompletionRequest;
  readonly model: string;
  readonly stream: boolean;
  readonly protocol: ProtocolName;
  readonly startedAt: number;
  readonly attempts: Attempt[] = [];
  readonly guardrails: GuardrailRecord[] = [];
  readonly hooks: ContextHooks = { duringCall: [], output: [] };
  readonly writer: ResponseWriter;
  usage: Usage | undefined = undefined;
  readonly #abort: RequestAbort;

  constructor(id: string, body: ChatCompletionRequest, abort: RequestAbort, res: ServerResponse, protocol: Protocol) {
    this.id = id;
    this.body = body;
    this.model = body.model;
    this.stream = body.stream === true;
    this.protocol = protocol.name;
    this.startedAt = performance.now();
    this.#abort = abort;
    // The request as mapped, kept for the answer (masking may replace `body` later).
    this.writer = new ResponseWriter(res, this.#responseHeaders.bind(this), { freshHeaders: true, protocol, answer: { id, model: body.model, request: body } });
  }

  /** A new object on every call (the writer completes it in place): no intermediate object without guardrail records. */
  #responseHeaders(): Record<string, string> {
    const { attempts, guardrails } = this;
    return guardrails.length === 0 ? attemptHeaders(attempts) : { ...attemptHeaders(attempts), ...guardrailHeaders(guardrails) };
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  cancel(error: Error): void {
    this.#abort.abort(error);
  }

  static abortOf(ctx: GatewayContext): RequestAbort | undefined {
    return #abort in ctx ? (ctx as RequestContext).#abort : undefined;
  }

  static routerStateOf(ctx: GatewayContext): unknown {
    return #routerState in ctx ? (ctx as RequestContext).#routerState : undefined;
  }

  static keepRouterState(ctx: GatewayContext, state: unknown): boolean {
    if (!(#routerState in ctx)) return false;
    (ctx as RequestContext).#routerState = state;
    return true;
  }

  /** The router's per-request state (see `keepRouterState`). */
  #routerState: unknown = undefined;
}

/** The router's state for this request, when it keeps it in the context (see `keepRouterState`). */
export function routerStateOf(ctx: GatewayContext): unknown {
  return RequestContext.routerStateOf(ctx);
}

/**
 * Keeps the router's per-request state in the context, out of sight (a private field: never logged or
 * serialized) and without a weak map's entry per request. False for a context `gatewayContext()` did not make.
 */
export function keepRouterState(ctx: GatewayContext, state: unknown): boolean {
  return RequestContext.keepRouterState(ctx, state);
}

/**
 * The request's abort state, for the gateway's pieces (the router's attempts listen to it without making
 * the request's `AbortSignal`). A context not made by `gatewayContext()` is served through its `signal`.
 */
export function requestAbortOf(ctx: GatewayContext): RequestAbortSource {
  return RequestContext.abortOf(ctx) ?? signalAbort(ctx);
}

function signalAbort(ctx: GatewayContext): RequestAbortSource {
  const signal = ctx.signal;
  return {
    get aborted() {
      return signal.aborted;
    },
    get reason() {
      return signal.reason as unknown;
    },
    signal,
    abort: (reason) => ctx.cancel(reason as Error),
    onAbort: (listener) => {
      if (!signal.aborted) signal.addEventListener('abort', () => listener.requestAborted(signal.reason), { once: true });
    },
  };
}

/**
 * The request's context. Throws a clear error when the `gatewayContext()` middleware did not run before
 * the caller (a mounting-order mistake worth failing loudly on).
 */
export function getContext(req: Request): GatewayContext {
  const ctx = req.llmGateway;
  if (!ctx) {
    throw new Error(
      'express-llm-gateway: no request context on this request. Mount gatewayContext() before the other gateway middlewares on this route.',
    );
  }
  return ctx;
}

/**
 * For the middlewares that only work after `gatewayContext()` (the router, the guardrail): returns a function
 * that gives the request's context or, when there is none (the middleware was mounted without
 * `gatewayContext()` before it), answers a JSON 500 itself and returns undefined. The mistake is logged once
 * per middleware, without a stack: it is a mounting error, the same on every request. The answer is written
 * here rather than passed to `next(err)`, because an app composed this way may well have no error writer
 * either, and Express's default handler would send an HTML page.
 */
export function contextRequirement(middleware: string, logger: Logger): (req: Request, res: Response) => GatewayContext | undefined {
  let reported = false;
  return (req, res) => {
    const ctx = req.llmGateway;
    if (ctx) return ctx;
    if (!reported) {
      reported = true;
      logger.error(
        { middleware, path: req.path },
        `express-llm-gateway: ${middleware} ran on a request without a gateway context. Mount gatewayContext() before it on this route; every such request gets a 500.`,
      );
    }
    echoRequestId(req, res);
    new ResponseWriter(res).fail(new InternalError('The gateway is not set up correctly on this route.'), 'gateway');
    return undefined;
  };
}
