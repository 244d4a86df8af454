/**
 * The router: picks a deployment of the requested model group, calls it through its provider adapter,
 * retries inside the group, and streams the answer out through the context's writer. It never writes an
 * error itself: every failure goes to `next(err)` as a classified error (the fallback handler and the SSE
 * error writer take it from there).
 *
 * Lazy commit in practice: leading chunks without content (the role chunk) are held back, so an upstream
 * that fails before its first content (an in-band error, an empty stream, `content_filter` before any
 * text, a first-token timeout) is still a pre-commit failure, retried and answered exactly as without
 * streaming.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { type Attempt, type AttemptKind } from './attempts.js';
import { AttemptRequest, type RequestAbortSource, UpstreamAttempt, lazySignalAdapters } from './attempt-control.js';
import { Balancer, type Choice, deploymentKey } from './balancer.js';
import {
  type GatewayContext,
  type OutputFilter,
  RequestAbort,
  contextRequirement,
  holdSummaryUntil,
  keepRouterState,
  requestAbortOf,
  routerStateOf,
} from './context.js';
import {
  ClientDisconnectedError,
  ContentPolicyViolationError,
  type GatewayError,
  NotFoundError,
  RateLimitError,
  TimeoutError,
  UpstreamCredentialsError,
  UpstreamError,
  toGatewayError,
} from './errors.js';
import { assertCalledAsFactory } from './options.js';
import { type MaybePromise, isPending } from './store.js';
import { echoRequestId } from './request-id.js';
import { malformedChunkReporter } from './malformed-chunks.js';
import { attemptChannel, traceAttempt } from './diagnostics.js';
import { createAdapter } from './providers/index.js';
import type { Deployment, ProviderAdapter } from './providers/types.js';
import { type ModelGroup, type ResolvedRouterConfig, type RouterOptions, parseRouterOptions } from './router-config.js';
import { type LeadingKind, RawChunk, type StreamChunk, rawBodyOf } from './raw-chunk.js';
import { type AnthropicDeltaExtras, type ChatCompletion, type ChatCompletionChunk, type Usage, anthropicExtras } from './types.js';

export interface GatewayRouter extends RequestHandler {
  /**
   * Serves the request's context from `group` (used by the fallback handler to re-dispatch). Resolves when
   * the answer was written; rejects with a classified error otherwise.
   */
  dispatch(ctx: GatewayContext, group: string, kind: AttemptKind): Promise<void>;
  /** `GET /v1/models`: the configured groups and aliases in OpenAI's list format. */
  readonly listModels: RequestHandler;
  /** Whether `name` is a configured group or alias (a wildcard group accepts every name). */
  hasGroup(name: string): boolean;
  /** The group that serves `name` (aliases resolved; `'*'` when the wildcard group would), if any. */
  canonicalGroup(name: string): string | undefined;
  /** Releases the adapters' connection pools. */
  close(): Promise<void>;
  /**
   * Called by `fallbackHandler()` when it is created with this router, so the router can ask, when every
   * deployment of a group is cooling down, whether a fallback would serve the request instead (then the
   * group is skipped at once) or nothing else is left (then its deployment is tried anyway). The last
   * handler attached wins. Not needed in application code.
   */
  attachFallbacks(probe: FallbackProbe): void;
}

/**
 * Whether the fallback handler would re-dispatch the request to another group if `group` failed now with
 * `error`. Pure: it answers without using up anything (fallback count, groups served).
 */
export type FallbackProbe = (ctx: GatewayContext, req: Request | undefined, group: string, error: GatewayError) => boolean;


/** Per-request router state, kept across re-dispatches (fallbacks) of the same request. */
interface RequestState {
  /**
   * Aborts every attempt of the request: client gone, or a during-call check failed. Without during-call
   * checks that is the request's own signal (no controller of its own).
   */
  readonly abort: RequestAbortSource;
  duringStarted: boolean;
  /** Epoch ms after which no new attempt starts (each attempt is bounded by its own total timeout). */
  readonly deadline: number;
  /** The request the context came from (the fallback probe reads its headers, e.g. the disable header). */
  req: Request | undefined;
}

/** The state of contexts `gatewayContext()` did not make (theirs is kept in the context: `keepRouterState`). */
const states = new WeakMap<GatewayContext, RequestState>();

export function createRouter(options: RouterOptions): GatewayRouter {
  assertCalledAsFactory(options, 'createRouter');
  const config = parseRouterOptions(options);
  const adapters = createAdapters(config, options.adapterFactory);
  const balancer = new Balancer(config);
  const engine = new RouterEngine(config, adapters, balancer);
  const contextOf = contextRequirement('createRouter()', config.logger);

  const router = function llmGatewayRouter(req: Request, res: Response, next: NextFunction): void {
    const ctx = contextOf(req, res);
    if (!ctx) return;
    engine.stateOf(ctx).req = req;
    dispatch(ctx, ctx.model, 'first').catch(next);
  } as GatewayRouter;
  // The request's summary waits for every dispatch (the first and each fallback's) to settle: the usage of
  // an attempt cut short (client gone, timeout, block) is only known once it unwound.
  const dispatch = (ctx: GatewayContext, group: string, kind: AttemptKind): Promise<void> => {
    const work = engine.dispatch(ctx, group, kind);
    holdSummaryUntil(ctx, work);
    return work;
  };
  router.dispatch = dispatch;
  router.hasGroup = (name) => config.byName.has(name) || config.wildcard !== undefined;
  router.canonicalGroup = (name) => (config.byName.get(name) ?? config.wildcard)?.name;
  router.attachFallbacks = (probe) => {
    engine.fallbackProbe = probe;
  };
  router.close = async () => {
    await Promise.all([...adapters.values()].map((a) => a.close()));
  };
  const modelList = JSON.stringify({
    object: 'list',
    data: [...config.byName.keys()].filter((n) => n !== '*').map((id) => ({ id, object: 'model', created: 0, owned_by: 'express-llm-gateway' })),
  });
  Object.defineProperty(router, 'listModels', {
    value: function llmGatewayModels(req: Request, res: Response): void {
      echoRequestId(req, res);
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.end(modelList);
    },
  });
  return router;
}

function createAdapters(
  config: ResolvedRouterConfig,
  factory: RouterOptions['adapterFactory'],
): Map<string, ProviderAdapter> {
  const adapters = new Map<string, ProviderAdapter>();
  for (const group of config.groups.values()) {
    for (const deployment of group.deployments) {
      adapters.set(deploymentKey(deployment), factory?.(deployment) ?? createAdapter(deployment));
    }
  }
  return adapters;
}

class RouterEngine {
  /** Set by the fallback handler mounted after the router; absent, no fallback ever exists. */
  fallbackProbe: FallbackProbe | undefined;

  constructor(
    private readonly config: ResolvedRouterConfig,
    private readonly adapters: Map<string, ProviderAdapter>,
    private readonly balancer: Balancer,
  ) {}

  async dispatch(ctx: GatewayContext, groupName: string, kind: AttemptKind): Promise<void> {
    const group = this.config.byName.get(groupName) ?? this.config.wildcard;
    if (!group) {
      throw new NotFoundError(`The model '${groupName}' does not exist on this gateway.`, { param: 'model' });
    }
    const state = this.stateOf(ctx);
    const tried = new Set<string>();
    // Deployments that timed out in this request: a silent deployment is not waited for twice (made on the first).
    let silent: Set<string> | undefined;
    let attemptKind = kind;
    let retries = 0;
    let lastError: GatewayError | undefined;
    for (;;) {
      if (lastError && Date.now() >= state.deadline) throw lastError;
      const chosen = this.balancer.choose(group, tried, Date.now(), silent);
      // The in-memory store answers synchronously: no await (and no microtask) then.
      const found = isPending(chosen) ? await chosen : chosen;
      let choice: Choice;
      if ('deployment' in found) {
        choice = found;
      } else {
        const failure = lastError ?? noDeploymentError(group, found.cooldownEndsAt);
        // Every deployment is cooling down: a fallback group serves the request at once when there is one;
        // the cooling deployment is tried only when nothing else is left.
        if (!found.lastResort || this.fallbackProbe?.(ctx, state.req, group.name, failure)) throw failure;
        choice = { deployment: found.lastResort, untried: !tried.has(deploymentKey(found.lastResort)) };
      }
      if (!choice.untried && lastError) {
        // The same credentials would be refused again: only another deployment or a fallback group can help.
        if (lastError instanceof UpstreamCredentialsError) throw lastError;
        await this.backoff(retries, state, lastError);
      }
      tried.add(deploymentKey(choice.deployment));
      try {
        await this.attempt(ctx, state, choice.deployment, group, attemptKind);
        return;
      } catch (err) {
        const error = toGatewayError(err);
        if (ctx.writer.committed || requestAbortOf(ctx).aborted || !this.isRetryable(error) || retries >= this.config.maxRetries) {
          throw error;
        }
        if (error instanceof TimeoutError && !this.config.retryTimeoutsOnSameDeployment) (silent ??= new Set()).add(deploymentKey(choice.deployment));
        retries++;
        attemptKind = 'retry';
        lastError = error;
      }
    }
  }

  stateOf(ctx: GatewayContext): RequestState {
    let state = (routerStateOf(ctx) as RequestState | undefined) ?? states.get(ctx);
    if (state) return state;
    state = { abort: requestAbort(ctx), duringStarted: false, deadline: Date.now() + this.config.deadlineMs, req: undefined };
    if (!keepRouterState(ctx, state)) states.set(ctx, state);
    return state;
  }

  private isRetryable(error: GatewayError): boolean {
    return error.retryable && this.config.retryOn.has(error.type);
  }

  /** Full-jitter exponential backoff, never past the request deadline (then the last error stands). */
  private async backoff(retries: number, state: RequestState, lastError: GatewayError): Promise<void> {
    const { backoffInitialMs, backoffMaxMs } = this.config;
    const ceiling = Math.min(backoffMaxMs, backoffInitialMs * 2 ** (retries - 1));
    const wait = Math.max(Math.random() * ceiling, lastError.retryAfterMs ?? 0);
    if (Date.now() + wait >= state.deadline) throw lastError;
    await sleep(wait, state.abort.signal);
  }

  private async attempt(
    ctx: GatewayContext,
    state: RequestState,
    deployment: Deployment,
    group: ModelGroup,
    kind: AttemptKind,
  ): Promise<void> {
    const key = deploymentKey(deployment);
    const record: Attempt = { group: group.name, deployment: deployment.id, provider: deployment.provider, kind, outcome: 'pending', latencyMs: 0 };
    ctx.attempts.push(record);
    const trace = attemptChannel.hasSubscribers ? traceAttempt(ctx, record, deployment) : undefined;
    const adapter = trace ? trace.observe(this.adapters.get(key)!) : this.adapters.get(key)!;
    const started = performance.now();
    this.balancer.callStarted(key);
    const control = new UpstreamAttempt(state.abort, deployment, ctx.stream);
    this.startDuringHooks(ctx, state);
    if (deployment.rpm !== undefined || deployment.tpm !== undefined) {
      void this.safely(this.config.store.addUsage(key, 1, 0, Date.now()));
    }
    try {
      const firstTokenMs = ctx.stream
        ? await streamAnswer(ctx, adapter, control, malformedChunkReporter(ctx, record, this.config.logger))
        : await completeAnswer(ctx, adapter, control);
      record.outcome = 'success';
      record.latencyMs = performance.now() - started;
      this.recordSuccess(deployment, key, firstTokenMs ?? record.latencyMs, ctx.usage);
    } catch (err) {
      const error = toGatewayError(control.aborted ? (control.reason ?? err) : err);
      record.latencyMs = performance.now() - started;
      record.outcome = error instanceof ClientDisconnectedError ? 'aborted' : 'error';
      record.status = error.status;
      record.errorType = error.type;
      this.recordFailure(key, error);
      throw error;
    } finally {
      trace?.end(record, ctx.usage);
      control.dispose();
      this.balancer.callFinished(key);
    }
  }

  /** `during_call` checks start with the first upstream call of the request, once. */
  private startDuringHooks(ctx: GatewayContext, state: RequestState): void {
    if (state.duringStarted || ctx.hooks.duringCall.length === 0) return;
    state.duringStarted = true;
    for (const hook of ctx.hooks.duringCall) {
      const check = hook(ctx, state.abort.signal);
      ctx.writer.holdCommitUntil(check);
      check.catch((err: unknown) => state.abort.abort(toGatewayError(err)));
    }
  }

  private recordSuccess(deployment: Deployment, key: string, latencyMs: number, usage: Usage | undefined): void {
    const { store } = this.config;
    void this.safely(store.resetFailures(key));
    if (this.config.strategy === 'lowest-latency') void this.safely(store.recordLatency(key, latencyMs));
    if (deployment.tpm !== undefined && usage) void this.safely(store.addUsage(key, 0, usage.total_tokens, Date.now()));
  }

  /** Only failures that say something about the deployment's health count towards a cooldown. */
  private recordFailure(key: string, error: GatewayError): void {
    if (!error.retryable) return;
    const { store } = this.config;
    const now = Date.now();
    // A rate limit says when to come back; rejected credentials will fail every request until someone
    // fixes them, so neither waits for the failure count.
    if (error instanceof RateLimitError || error instanceof UpstreamCredentialsError) {
      void this.safely(store.setCooldown(key, now + (error.retryAfterMs ?? this.config.cooldownMs)));
      return;
    }
    void this.safely(
      Promise.resolve(store.recordFailure(key, this.config.failureWindowMs, now)).then((failures) => {
        if (failures >= this.config.failureThreshold) return store.setCooldown(key, now + this.config.cooldownMs);
        return undefined;
      }),
    );
  }

  /** Store writes never fail a request: a broken store only costs shared state. */
  private safely(result: MaybePromise<unknown>): void {
    // A synchronous store (the in-memory one) answered already: no promise to make per write.
    if (isPending(result)) result.then(undefined, this.storeWriteFailed);
  }

  private readonly storeWriteFailed = (err: unknown): void => {
    this.config.logger.warn({ err: (err as Error).message }, 'state store write failed');
  };
}

/**
 * What ends every attempt of a request. Only a during-call check (registered by a middleware before the
 * router, so known here) needs to end them without the client leaving; the other requests use their signal.
 */
function requestAbort(ctx: GatewayContext): RequestAbortSource {
  const parent = requestAbortOf(ctx);
  if (ctx.hooks.duringCall.length === 0) return parent;
  const abort = new RequestAbort();
  if (parent.aborted) abort.abort(parent.reason);
  else parent.onAbort({ requestAborted: (reason) => abort.abort(reason) });
  return abort;
}

function noDeploymentError(group: ModelGroup, cooldownEndsAt: number | undefined): GatewayError {
  const retryAfterMs = cooldownEndsAt === undefined ? undefined : Math.max(0, cooldownEndsAt - Date.now());
  return new RateLimitError(`No deployment of '${group.name}' is available right now (cooling down or over its rate limit).`, {
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

/**
 * Streams one attempt to the client. Resolves with the time to first content (ms) once the stream finished
 * normally; throws a classified error otherwise (the writer decides whether that is still pre-commit).
 */
async function streamAnswer(
  ctx: GatewayContext,
  adapter: ProviderAdapter,
  control: UpstreamAttempt,
  onMalformedChunk: (reason: string, skipped: boolean) => void,
): Promise<number | undefined> {
  const started = performance.now();
  const filters = ctx.hooks.output.length === 0 ? undefined : ctx.hooks.output.map((hook) => hook(ctx, control));
  const wantsUsage = ctx.body.stream_options?.include_usage === true;
  const request = lazySignalAdapters.has(adapter)
    ? new AttemptRequest(ctx.body, control, ctx.id, onMalformedChunk)
    : { body: ctx.body, signal: control.signal, requestId: ctx.id, onMalformedChunk };
  // No output filter reads the chunks: the adapter may forward what needs no change as the upstream's text
  // (in arrays, one per network read).
  const stream: AsyncIterable<StreamChunk | readonly StreamChunk[]> =
    filters === undefined && adapter.streamRaw ? adapter.streamRaw(request, wantsUsage) : adapter.stream(request);
  let held: StreamChunk[] | undefined = [];
  let firstTokenMs: number | undefined;
  // This attempt's usage: the upstream's when it reports it, else estimated from the output it sent (all of
  // it, held or blocked text included: the upstream generated it whether or not the client got it).
  let reported: Usage | undefined;
  let chunks = 0;
  let completionChars = 0;
  ctx.usage = undefined;
  try {
    for await (const item of stream) {
      // A read's chunks (raw path) or one chunk (parsed path: no array made for it).
      const batch = isBatch(item) ? item : undefined;
      const count = batch === undefined ? 1 : batch.length;
      for (let n = 0; n < count; n++) {
        const chunk = batch === undefined ? (item as StreamChunk) : batch[n]!;
        // A read's later chunks go no further once the attempt was aborted while an earlier one waited (client
        // gone, timeout): the adapter throws the reason before its next chunk the same way.
        if (control.aborted) throw control.reason;
        control.chunk();
        chunks++;
        if (chunk instanceof RawChunk) {
          // Never a usage chunk, and already without `"usage":null` unless the client asked for usage.
          completionChars += chunk.outputChars;
        } else {
          completionChars += outputLength(chunk);
          if (chunk.usage) reported = chunk.usage;
          if (!wantsUsage && chunk.usage !== undefined) {
            // Usage is always requested upstream (for accounting); the client did not ask for it.
            if (chunk.choices.length === 0) continue;
            chunk.usage = undefined;
          }
        }
        if (held !== undefined) {
          const kind = chunk instanceof RawChunk ? chunk.leading : classifyLeadingChunk(chunk);
          if (kind === 'blocked') throw contentFilteredError();
          if (kind !== 'content') {
            held.push(chunk);
            // Thinking is the model's output already: the first-token bound is met (a long thinking budget must
            // not time out before the text), and the idle bound watches the gaps from here. Still held: the
            // commit waits for the answer's content, so a failure before it can fall back.
            if (firstTokenMs === undefined && !(chunk instanceof RawChunk) && thinkingLength(chunk) > 0) control.firstContent();
            continue;
          }
          firstTokenMs = performance.now() - started;
          control.firstContent();
          const release = held;
          held = undefined;
          for (const leading of release) {
            const sent = filters ? emit(ctx, filters, leading) : send(ctx, leading);
            if (sent) await sent;
          }
        }
        // Without filters, only a slow client (backpressure) or the commit makes this wait.
        const sent = filters ? emit(ctx, filters, chunk) : send(ctx, chunk);
        if (sent) await sent;
      }
    }
    // An answer without any content or tool call is a provider failure (an engine glitch, a dropped
    // generation), handled before commit like any other, the same way without streaming.
    if (held !== undefined) throw emptyAnswerError();
    if (filters) {
      for (const chunk of await endFilters(filters)) {
        const sent = send(ctx, chunk);
        if (sent) await sent;
      }
    }
    ctx.writer.finish();
    return firstTokenMs;
  } finally {
    // Set before the outcome leaves this function, so the summary (which waits for the dispatch) sees it.
    // An upstream that refused outright (nothing streamed, not cut by us) generated nothing to account.
    ctx.usage = reported ?? (chunks > 0 || control.aborted ? estimatedUsage(ctx, completionChars) : undefined);
  }
}

async function completeAnswer(ctx: GatewayContext, adapter: ProviderAdapter, control: UpstreamAttempt): Promise<undefined> {
  ctx.usage = undefined;
  let answer: ChatCompletion | undefined;
  try {
    const request = lazySignalAdapters.has(adapter) ? new AttemptRequest(ctx.body, control, ctx.id) : { body: ctx.body, signal: control.signal, requestId: ctx.id };
    answer = await adapter.complete(request);
    if (!answer.choices.some((c) => hasMessageContent(c.message))) {
      if (answer.choices.some((c) => c.finish_reason === 'content_filter')) throw contentFilteredError();
      throw emptyAnswerError();
    }
    let completion = answer;
    for (const hook of ctx.hooks.output) completion = await hook(ctx, control).completion(completion);
    // Nothing changed the answer: the upstream's own body goes out (when its adapter kept it).
    await ctx.writer.json(completion, completion === answer && ctx.hooks.output.length === 0 ? rawBodyOf(answer) : undefined);
    return undefined;
  } finally {
    // The upstream's usage whenever it answered (a guardrail may still block the answer); an estimate when
    // it answered without one, or when we cut the call (client gone, timeout) while it was generating.
    ctx.usage = answer?.usage ?? (answer !== undefined || control.aborted ? estimatedUsage(ctx, answer ? completionLength(answer) : 0) : undefined);
  }
}

function isBatch(item: StreamChunk | readonly StreamChunk[]): item is readonly StreamChunk[] {
  return Array.isArray(item);
}

function contentFilteredError(): ContentPolicyViolationError {
  return new ContentPolicyViolationError('The provider filtered the answer before any content (finish_reason: content_filter).');
}

function emptyAnswerError(): UpstreamError {
  return new UpstreamError('The provider answered without any content.');
}

/** What a chunk before the first content means for the commit decision. */
function classifyLeadingChunk(chunk: ChatCompletionChunk): LeadingKind {
  for (const choice of chunk.choices) {
    const delta = choice.delta;
    if (delta.content || delta.tool_calls?.length || delta.refusal) return 'content';
    if (choice.finish_reason === 'content_filter') return 'blocked';
  }
  return 'other';
}

function hasMessageContent(message: ChatCompletion['choices'][number]['message']): boolean {
  const content = message.content;
  return Boolean(
    (typeof content === 'string' ? content.length > 0 : Array.isArray(content) && content.length > 0) ||
      message.tool_calls?.length ||
      message.refusal,
  );
}

/** Characters the model generated in a chunk (text, refusal, tool-call arguments), for the usage estimate. */
function outputLength(chunk: ChatCompletionChunk): number {
  let n = 0;
  for (const choice of chunk.choices) {
    const delta = choice.delta;
    n += (delta.content?.length ?? 0) + (delta.refusal?.length ?? 0);
    if (delta.tool_calls) for (const call of delta.tool_calls) n += call.function?.arguments?.length ?? 0;
  }
  return n + thinkingLength(chunk);
}

/** Characters of thinking (Anthropic-family extras) a chunk carries: generated output, though not the answer's content. */
function thinkingLength(chunk: ChatCompletionChunk): number {
  const extras = anthropicExtras<AnthropicDeltaExtras>(chunk.choices[0]?.delta);
  return extras === undefined ? 0 : (extras.thinking?.length ?? 0) + (extras.redacted?.length ?? 0);
}

/** The same for a whole completion. */
function completionLength(completion: ChatCompletion): number {
  let n = 0;
  for (const { message } of completion.choices) {
    const content = message.content;
    n += typeof content === 'string' ? content.length : content ? JSON.stringify(content).length : 0;
    n += message.refusal?.length ?? 0;
    if (message.tool_calls) for (const call of message.tool_calls) n += call.function.arguments.length;
  }
  return n;
}

/**
 * Usage when the upstream reported none (the client left, the stream broke, a timeout, a block, or a
 * provider that never reports it): about 4 characters a token, marked as an estimate.
 */
function estimatedUsage(ctx: GatewayContext, completionChars: number): Usage {
  let promptChars = 0;
  for (const m of ctx.body.messages) promptChars += typeof m.content === 'string' ? m.content.length : JSON.stringify(m.content ?? '').length;
  const prompt = Math.ceil(promptChars / 4);
  const completion = Math.ceil(completionChars / 4);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, estimated: true };
}

/** Passes a chunk through the output filters (in order) and sends what comes out. */
async function emit(ctx: GatewayContext, filters: OutputFilter[] | undefined, chunk: StreamChunk): Promise<void> {
  // Raw chunks only come when there is no filter (see `streamAnswer`).
  if (!filters || chunk instanceof RawChunk) return send(ctx, chunk);
  let batch = [chunk];
  for (const filter of filters) {
    const next: ChatCompletionChunk[] = [];
    for (const c of batch) next.push(...(await filter.chunk(c)));
    batch = next;
  }
  for (const c of batch) {
    const sent = send(ctx, c);
    if (sent) await sent;
  }
}

/** Ends the filters in order: what one releases at its end still goes through the ones after it. */
async function endFilters(filters: OutputFilter[]): Promise<ChatCompletionChunk[]> {
  let carried: ChatCompletionChunk[] = [];
  for (const filter of filters) {
    const next: ChatCompletionChunk[] = [];
    for (const c of carried) next.push(...(await filter.chunk(c)));
    next.push(...(await filter.end()));
    carried = next;
  }
  return carried;
}

function send(ctx: GatewayContext, chunk: StreamChunk): Promise<void> | undefined {
  return ctx.writer.send(chunk);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
