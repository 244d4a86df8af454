/**
 * The fallback handler: an error middleware, mounted after the router, that re-dispatches a failed request
 * to the next configured model group through the router, so the whole pipeline (guardrail hooks, output
 * checks, the writer) applies to the fallback too.
 *
 * Parity by construction: before the first byte is committed, a streaming request is just a request. The
 * handler decides from the error's class and the context's attempt log alone, never from the `stream`
 * flag, so `stream: true` and `stream: false` fall back identically (LiteLLM's streaming path raises
 * every non-429 4xx straight to the client, so its content-policy and context-window fallbacks never fire
 * while streaming).
 *
 * Order of candidates (depth first): the failed group's own list (the specific list for its error kind,
 * then the general list when `generalForSpecific` is on; it is off by default), then the remaining entries of the list of the
 * group it fell back from, and so on up to the requested group. A group's list is its own entry, or the
 * `'*'` entry when it has none. Each group is served at most once per request.
 */
import type { ErrorRequestHandler, NextFunction, Request, Response } from 'express';
import type { GatewayContext } from './context.js';
import { continuationFailure, prepareContinuation } from './continuation.js';
import {
  ClientDisconnectedError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  type GatewayError,
  GuardrailViolationError,
  ServiceUnavailableError,
  toGatewayError,
} from './errors.js';
import { assertCalledAsFactory, definedOnly, GatewayConfigError, optionsValidator } from './options.js';
import type { FallbackProbe, GatewayRouter } from './router.js';

/** Fallback lists: group name (or `'*'` for every group without its own entry) → ordered fallback groups. */
export type FallbackMap = Record<string, string[]>;

export interface ContinuationOptions {
  /** The groups able to continue an answer another group started. Only these are used after commit. */
  groups: string[];
  /**
   * The instruction added after the partial answer.
   * @default 'Continue your previous answer exactly where it stopped. Do not repeat anything already written.'
   */
  instruction?: string;
}

export interface FallbackHandlerOptions {
  /** The router to re-dispatch through (the one mounted before this handler). */
  router: GatewayRouter;
  /** For rate limits, timeouts, 5xx and connection failures (after the group's own retries). */
  fallbacks?: FallbackMap;
  /** For content-policy violations (provider moderation, `content_filter` before any content). */
  contentPolicyFallbacks?: FallbackMap;
  /** For context-window errors. */
  contextWindowFallbacks?: FallbackMap;
  /**
   * Also use the general `fallbacks` for content-policy and context-window errors when their own list has
   * no (more) entries. Off by default: the general list is for outages (rate limits, 5xx, timeouts), and
   * sending a provider's moderation refusal there routes around moderation nobody asked to route around.
   * Turn it on for the behaviour LiteLLM users may expect (a general fallback also catching these).
   * @default false
   */
  generalForSpecific?: boolean;
  /**
   * Most fallback groups tried for one request, across nested fallbacks.
   * @default 3
   */
  maxFallbacks?: number;
  /**
   * A request header that turns fallbacks off for that request when it is `true`, `1`, `yes` or `on`.
   * @default 'x-gateway-disable-fallbacks'
   */
  disableHeader?: string;
  /**
   * Fall back on a guardrail block too (as on a content-policy violation). Off by default: a guardrail
   * block is the gateway's own decision, and another model would see the same blocked input.
   * @default false
   */
  fallbackOnGuardrail?: boolean;
  /**
   * Opt-in: after the first byte, resume on a continuation-capable fallback group with the partial answer
   * as context, without repeating text the client already has. Off: after commit the request ends with
   * the error frame and `[DONE]`, never splicing two answers.
   */
  continuation?: ContinuationOptions;
}

type FallbackKind = 'general' | 'contentPolicy' | 'contextWindow';

interface ResolvedFallbackOptions {
  router: GatewayRouter;
  lists: Record<FallbackKind, FallbackMap>;
  generalForSpecific: boolean;
  maxFallbacks: number;
  disableHeader: string;
  fallbackOnGuardrail: boolean;
  continuation: { groups: ReadonlySet<string>; instruction: string } | undefined;
}

interface FallbackState {
  /** Every group served so far, the requested one included. */
  readonly used: Set<string>;
  /** The group the last re-dispatch went to (it may have failed before any attempt: all cooling down). */
  current: string | undefined;
  /** For nested fallbacks: the group each fallback group was reached from. */
  readonly parent: Map<string, string>;
  count: number;
}

const states = new WeakMap<GatewayContext, FallbackState>();
const DISABLED_VALUES = new Set(['true', '1', 'yes', 'on']);
const DEFAULT_INSTRUCTION = 'Continue your previous answer exactly where it stopped. Do not repeat anything already written.';

/** Schema pieces shared with the gateway config file's schema. */
export const fallbackMapSchema = { type: 'object', additionalProperties: { type: 'array', items: { type: 'string', minLength: 1 } } } as const;
export const fallbackLimitsSchema = {
  generalForSpecific: { type: 'boolean' },
  maxFallbacks: { type: 'integer', minimum: 0, maximum: 20 },
  disableHeader: { type: 'string', pattern: '^[A-Za-z0-9-]+$' },
} as const;
export const continuationSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['groups'],
  properties: { groups: { type: 'array', items: { type: 'string', minLength: 1 } }, instruction: { type: 'string', minLength: 1 } },
} as const;
const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    required: ['router'],
    properties: {
      router: {},
      fallbacks: fallbackMapSchema,
      contentPolicyFallbacks: fallbackMapSchema,
      contextWindowFallbacks: fallbackMapSchema,
      ...fallbackLimitsSchema,
      fallbackOnGuardrail: { type: 'boolean' },
      continuation: continuationSchema,
    },
  },
  'fallbackHandler',
);

function parseFallbackOptions(options: FallbackHandlerOptions): ResolvedFallbackOptions {
  const given = definedOnly(options);
  validateOptions(given);
  const router = given.router;
  if (typeof router !== 'function' || typeof router.dispatch !== 'function') {
    throw new GatewayConfigError('fallbackHandler.router', 'expected the router returned by createRouter().');
  }
  const copy = (map: FallbackMap | undefined): FallbackMap => ({ ...map });
  const lists = { general: copy(given.fallbacks), contentPolicy: copy(given.contentPolicyFallbacks), contextWindow: copy(given.contextWindowFallbacks) };
  const names: [string, FallbackMap][] = [['fallbacks', lists.general], ['contentPolicyFallbacks', lists.contentPolicy], ['contextWindowFallbacks', lists.contextWindow]];
  for (const [option, map] of names) {
    for (const [from, targets] of Object.entries(map)) {
      if (from !== '*' && !router.hasGroup(from)) throw new GatewayConfigError(`fallbackHandler.${option}.${from}`, `'${from}' is not a configured model group or alias.`);
      targets.forEach((target, i) => {
        if (!router.hasGroup(target)) throw new GatewayConfigError(`fallbackHandler.${option}.${from}[${i}]`, `'${target}' is not a configured model group or alias.`);
      });
    }
  }
  // Work with canonical group names, so an alias or a name served by '*' cannot sneak a group in twice.
  for (const map of Object.values(lists)) {
    for (const [from, targets] of Object.entries(map)) map[from] = targets.map((t) => router.canonicalGroup(t) ?? t);
  }
  const continuation = given.continuation;
  continuation?.groups.forEach((group, i) => {
    if (!router.hasGroup(group)) throw new GatewayConfigError(`fallbackHandler.continuation.groups[${i}]`, `'${group}' is not a configured model group or alias.`);
  });
  return {
    router,
    lists,
    generalForSpecific: given.generalForSpecific ?? false,
    maxFallbacks: given.maxFallbacks ?? 3,
    disableHeader: (given.disableHeader ?? 'x-gateway-disable-fallbacks').toLowerCase(),
    fallbackOnGuardrail: given.fallbackOnGuardrail ?? false,
    continuation: continuation && {
      groups: new Set(continuation.groups.map((g) => router.canonicalGroup(g) ?? g)),
      instruction: continuation.instruction ?? DEFAULT_INSTRUCTION,
    },
  };
}

export function fallbackHandler(options: FallbackHandlerOptions): ErrorRequestHandler {
  assertCalledAsFactory(options, 'fallbackHandler');
  const config = parseFallbackOptions(options);
  // The router asks this before it skips a group whose every deployment is cooling down.
  const probe: FallbackProbe = (ctx, req, group, error) => planStep(config, ctx, req, error, group) !== undefined;
  config.router.attachFallbacks?.(probe);

  const handle = function llmGatewayFallbacks(err: unknown, req: Request, _res: Response, next: NextFunction): void {
    const ctx = req.llmGateway;
    if (!ctx) {
      next(err);
      return;
    }
    const error = toGatewayError(err);
    const target = nextStep(config, ctx, req, error);
    if (!target) {
      next(error);
      return;
    }
    // An answer that cannot be continued (a cut tool call) ends with the failure that cut it.
    if (target.continuation && !prepareContinuation(ctx, config.continuation!.instruction)) {
      next(error);
      return;
    }
    config.router.dispatch(ctx, target.group, 'fallback').then(
      () => undefined,
      (fallbackError: unknown) => handle(target.continuation ? continuationFailure(fallbackError, target.group) : fallbackError, req, _res, next),
    );
  };
  return handle;
}

/** The group to try next for this failure, or undefined when the error should go to the client. */
function nextStep(
  config: ResolvedFallbackOptions,
  ctx: GatewayContext,
  req: Request,
  error: GatewayError,
): { group: string; continuation: boolean } | undefined {
  const step = planStep(config, ctx, req, error);
  if (!step) return undefined;
  const state = stateOf(ctx);
  state.used.add(step.failed);
  state.used.add(step.group);
  state.parent.set(step.group, step.failed);
  state.current = step.group;
  state.count++;
  return step;
}

/**
 * Decides the next step without recording it (the router's probe asks the same question before it fails
 * a group whose deployments are all cooling down). `failedGroup` defaults to the group served last.
 */
function planStep(
  config: ResolvedFallbackOptions,
  ctx: GatewayContext,
  req: Request | undefined,
  error: GatewayError,
  failedGroup?: string,
): { group: string; failed: string; continuation: boolean } | undefined {
  if (error instanceof ClientDisconnectedError || ctx.signal.aborted) return undefined;
  // A draining instance starts no new upstream work: the client is told to come back (another instance).
  if (error instanceof ServiceUnavailableError) return undefined;
  if (req && isDisabled(req, config.disableHeader)) return undefined;
  const kind = fallbackKindOf(error, config.fallbackOnGuardrail);
  if (!kind) return undefined;
  const committed = ctx.writer.committed;
  if (committed && (!config.continuation || ctx.writer.finished || (ctx.body.n ?? 1) > 1 || ctx.writer.sentText() === '')) return undefined;
  const state = stateOf(ctx);
  if (state.count >= config.maxFallbacks) return undefined;
  const failed = failedGroup ?? state.current ?? config.router.canonicalGroup(ctx.model) ?? ctx.model;
  // `used` gains `failed` only when the step is taken; until then it counts as served for the search.
  const used = state.used.has(failed) ? state.used : new Set([...state.used, failed]);
  const group = nextFallbackGroup(config, { used, parent: state.parent }, failed, kind, committed ? config.continuation?.groups : undefined);
  return group === undefined ? undefined : { group, failed, continuation: committed };
}

function isDisabled(req: Request, header: string): boolean {
  const value = req.headers[header];
  return typeof value === 'string' && DISABLED_VALUES.has(value.trim().toLowerCase());
}

/** Which list applies: rate limits, timeouts, 5xx and connection failures use the general one. */
export function fallbackKindOf(error: GatewayError, onGuardrail: boolean): FallbackKind | undefined {
  if (error instanceof ContentPolicyViolationError) return 'contentPolicy';
  if (error instanceof ContextWindowExceededError) return 'contextWindow';
  if (error instanceof GuardrailViolationError) return onGuardrail && error.softMessage === undefined ? 'contentPolicy' : undefined;
  return error.retryable ? 'general' : undefined;
}

function stateOf(ctx: GatewayContext): FallbackState {
  let state = states.get(ctx);
  if (!state) {
    state = { used: new Set(), current: undefined, parent: new Map(), count: 0 };
    states.set(ctx, state);
  }
  return state;
}

/** Depth first: the failed group's own candidates, then those of the group it was reached from, and so on. */
export function nextFallbackGroup(
  config: Pick<ResolvedFallbackOptions, 'lists' | 'generalForSpecific'>,
  state: Pick<FallbackState, 'used' | 'parent'>,
  failed: string,
  kind: FallbackKind,
  allowed?: ReadonlySet<string>,
): string | undefined {
  const seen = new Set<string>();
  for (let group: string | undefined = failed; group !== undefined && !seen.has(group); group = state.parent.get(group)) {
    seen.add(group);
    for (const candidate of candidatesOf(config, group, kind)) {
      if (!state.used.has(candidate) && (!allowed || allowed.has(candidate))) return candidate;
    }
  }
  return undefined;
}

function candidatesOf(config: Pick<ResolvedFallbackOptions, 'lists' | 'generalForSpecific'>, group: string, kind: FallbackKind): string[] {
  const listFor = (map: FallbackMap): string[] => map[group] ?? map['*'] ?? [];
  const specific = listFor(config.lists[kind]);
  if (kind === 'general' || !config.generalForSpecific) return specific;
  return [...specific, ...listFor(config.lists.general)];
}

// The continuation logic lives in continuation.ts; these stay importable from here.
export { ContinuationFilter, repeatedPrefixLength } from './continuation.js';
