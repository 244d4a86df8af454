/**
 * Prometheus metrics (prom-client), fed by the gateway's events: one update per request, from its start and
 * from the summary of how it ended, never per chunk. Labels are bounded by configuration (groups,
 * deployments, providers, guardrails) or by the code (kinds, outcomes, error types, actions), never by what
 * a client sends: no prompt or completion text, no request id, and the client's model name only once mapped
 * to a configured group (`'unknown'` otherwise).
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type * as PromClient from 'prom-client';
import type { Registry } from 'prom-client';
import { requireDependency } from './require.cjs';
import type { Attempt } from './attempts.js';
import type { GatewayContext, GuardrailRecord } from './context.js';
import type { GatewayEvents, RequestSummary } from './events.js';
import { GatewayConfigError, assertCalledAsFactory, definedOnly, optionsValidator } from './options.js';

export interface PrometheusMetricsOptions {
  /**
   * Where the metrics are registered. Pass your app's registry to serve them with your own metrics; give
   * each gateway sharing it its own `prefix`.
   * @default a new `Registry` (not prom-client's global one, so two gateways in one process never clash)
   */
  registry?: Registry;
  /**
   * Prepended to every metric name.
   * @default 'llm_gateway_'
   */
  prefix?: string;
  /**
   * Bucket bounds, in seconds, of the latency histograms (request duration, time to first byte, upstream
   * attempts). LLM answers take seconds to minutes, hence the long tail.
   * @default [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320]
   */
  buckets?: number[];
  /**
   * Also collect prom-client's default process metrics (CPU, memory, event loop lag, GC) into `registry`,
   * with the same prefix.
   * @default false
   */
  collectDefaultMetrics?: boolean;
  /**
   * Maps the client's model name to the configured group serving it (aliases resolved), so the `model`
   * label stays bounded whatever names clients send; names it returns `undefined` for are labelled
   * `'unknown'`. `createGateway` passes its router's `canonicalGroup`.
   * @default the group of the request's first attempt; `'unknown'` when it made none (e.g. a 404)
   */
  canonicalGroup?: (model: string) => string | undefined;
}

export interface GatewayMetrics {
  /** Feed these to the gateway (`createGateway({ events })`, `gatewayContext({ events })`). */
  readonly events: GatewayEvents;
  readonly registry: Registry;
  /** Serves the registry in the Prometheus text format: `app.get('/metrics', metrics.handler)`. */
  readonly handler: RequestHandler;
}

interface ResolvedMetricsOptions {
  registry: Registry;
  prefix: string;
  buckets: number[];
  collectDefaultMetrics: boolean;
  canonicalGroup: ((model: string) => string | undefined) | undefined;
}

/** The `model` label of a name no configured group serves. */
const UNKNOWN_MODEL = 'unknown';

const DEFAULT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320];

const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    properties: {
      registry: { type: 'object' },
      prefix: { type: 'string', pattern: '^([a-zA-Z_:][a-zA-Z0-9_:]*)?$' },
      buckets: { type: 'array', minItems: 1, items: { type: 'number', exclusiveMinimum: 0 } },
      collectDefaultMetrics: { type: 'boolean' },
      canonicalGroup: {},
    },
  },
  'prometheusMetrics',
);

function parseMetricsOptions(options: PrometheusMetricsOptions | undefined): ResolvedMetricsOptions {
  const given = definedOnly(options);
  validateOptions(given);
  if (given.registry !== undefined && !isRegistry(given.registry)) {
    throw new GatewayConfigError('prometheusMetrics.registry', "expected a prom-client Registry (new Registry() from 'prom-client').");
  }
  if (given.canonicalGroup !== undefined && typeof given.canonicalGroup !== 'function') {
    throw new GatewayConfigError('prometheusMetrics.canonicalGroup', 'expected a function (model) => string | undefined.');
  }
  if (given.buckets?.some((b, i) => i > 0 && b <= given.buckets![i - 1]!)) {
    throw new GatewayConfigError('prometheusMetrics.buckets', 'expected increasing bounds in seconds, e.g. [0.1, 0.5, 1, 5].');
  }
  const prefix = given.prefix ?? 'llm_gateway_';
  const registry = given.registry ?? new (promClient().Registry)();
  if (registry.getSingleMetric(`${prefix}requests_total`)) {
    throw new GatewayConfigError('prometheusMetrics.registry', `it already holds gateway metrics with the prefix '${prefix}'; give each gateway its own prefix or registry.`);
  }
  return {
    registry,
    prefix,
    buckets: given.buckets ?? DEFAULT_BUCKETS,
    collectDefaultMetrics: given.collectDefaultMetrics ?? false,
    canonicalGroup: given.canonicalGroup,
  };
}

/** prom-client, loaded by the first `prometheusMetrics()` call rather than with the package. */
function promClient(): typeof PromClient {
  return requireDependency('prom-client') as typeof PromClient;
}

/** Duck-typed: the app's registry may come from its own copy of prom-client, which `instanceof` would reject. */
function isRegistry(value: unknown): value is Registry {
  const candidate = value as Partial<Registry>;
  return typeof candidate.registerMetric === 'function' && typeof candidate.metrics === 'function' && typeof candidate.getSingleMetric === 'function';
}

/** The instruments, created once per `prometheusMetrics()` call and registered in its registry only. */
function createInstruments({ registry, prefix, buckets }: ResolvedMetricsOptions) {
  const { Counter, Gauge, Histogram } = promClient();
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name: prefix + name, help, labelNames, registers });
  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Histogram<L>({ name: prefix + name, help, labelNames, buckets, registers });
  const gauge = (name: string, help: string) => new Gauge({ name: prefix + name, help, registers });
  return {
    requests: counter('requests_total', 'Chat requests, by requested model group, stream, status class and final error type.', ['model', 'stream', 'status', 'error_type']),
    duration: histogram('request_duration_seconds', 'Chat request duration, from the context to the response closing.', ['model', 'stream']),
    timeToFirstByte: histogram('time_to_first_byte_seconds', 'Time until the status line of an answer (2xx) went out.', ['model', 'stream']),
    activeRequests: gauge('active_requests', 'Chat requests in flight.'),
    activeStreams: gauge('active_streams', 'Streaming chat requests in flight.'),
    clientAborts: counter('client_aborts_total', 'Chat requests whose client left before the response finished.', ['model', 'stream']),
    attempts: counter('attempts_total', 'Upstream attempts, by group, deployment, provider, kind (first, retry, fallback) and outcome.', ['group', 'deployment', 'provider', 'kind', 'outcome']),
    attemptDuration: histogram('upstream_attempt_duration_seconds', 'Upstream attempt latency.', ['group', 'deployment', 'outcome']),
    retries: counter('retries_total', 'Retries inside a model group.', ['group']),
    fallbacks: counter('fallbacks_total', 'Fallbacks to another group, by that group and the error type that led to them.', ['group', 'reason']),
    malformedChunks: counter('malformed_chunks_total', "Malformed upstream stream events (not JSON, a broken chunk shape), by group and deployment: skipped under router.malformedChunks 'skip', each one ending its attempt under 'error'.", ['group', 'deployment']),
    guardrailChecks: counter('guardrail_checks_total', 'Guardrail checks, by guardrail, source (INPUT, OUTPUT) and action.', ['guardrail', 'source', 'action']),
    guardrailUnits: counter('guardrail_text_units_total', 'Guardrail text units billed (1 unit = up to 1,000 characters).', ['guardrail', 'source']),
    tokens: counter('tokens_total', 'Tokens used, by serving group, type (prompt, completion) and source (reported by the upstream, or estimated by the gateway).', ['group', 'type', 'source']),
  };
}

type Instruments = ReturnType<typeof createInstruments>;

/**
 * Prometheus metrics for a gateway. `createGateway({ metrics: true })` wires them for you; by hand, pass
 * `metrics.events` to the gateway (see `combineEvents` to keep your own) and mount `metrics.handler`.
 */
export function prometheusMetrics(options?: PrometheusMetricsOptions): GatewayMetrics {
  assertCalledAsFactory(options, 'prometheusMetrics');
  const config = parseMetricsOptions(options);
  const instruments = createInstruments(config);
  if (config.collectDefaultMetrics) promClient().collectDefaultMetrics({ register: config.registry, prefix: config.prefix });
  return {
    events: metricsEvents(instruments, config),
    registry: config.registry,
    handler: metricsHandler(config.registry),
  };
}

function metricsEvents(m: Instruments, config: ResolvedMetricsOptions): GatewayEvents {
  return {
    onRequestStart(ctx: GatewayContext): void {
      m.activeRequests.inc();
      if (ctx.stream) m.activeStreams.inc();
    },
    onRequestEnd(summary: RequestSummary): void {
      m.activeRequests.dec();
      if (summary.stream) m.activeStreams.dec();
      recordRequest(m, summary, modelLabel(summary, config.canonicalGroup));
      for (const [i, attempt] of summary.attempts.entries()) recordAttempt(m, attempt, summary.attempts[i - 1]);
      for (const record of summary.guardrails) recordGuardrail(m, record);
    },
  };
}

function recordRequest(m: Instruments, summary: RequestSummary, model: string): void {
  const stream = String(summary.stream);
  m.requests.inc({ model, stream, status: statusClass(summary), error_type: summary.errorType ?? 'none' });
  m.duration.observe({ model, stream }, summary.durationMs / 1000);
  if (summary.timeToFirstByteMs !== undefined && summary.status < 300) {
    m.timeToFirstByte.observe({ model, stream }, summary.timeToFirstByteMs / 1000);
  }
  if (summary.clientAborted) m.clientAborts.inc({ model, stream });
  if (summary.usage) {
    const group = summary.attempts.at(-1)?.group ?? model;
    // Estimates (client gone, stream broken, timeout, block) are counted too, apart, so a dashboard can
    // sum everything or keep to what the providers will bill.
    const source = summary.usage['estimated'] === true ? 'estimated' : 'reported';
    m.tokens.inc({ group, type: 'prompt', source }, summary.usage.prompt_tokens);
    m.tokens.inc({ group, type: 'completion', source }, summary.usage.completion_tokens);
  }
}

function recordAttempt(m: Instruments, attempt: Attempt, previous: Attempt | undefined): void {
  const { group, deployment, provider, kind, outcome } = attempt;
  m.attempts.inc({ group, deployment, provider, kind, outcome });
  m.attemptDuration.observe({ group, deployment, outcome }, attempt.latencyMs / 1000);
  if (attempt.malformedChunks) m.malformedChunks.inc({ group, deployment }, attempt.malformedChunks);
  if (kind === 'retry') m.retries.inc({ group });
  // A fallback with no attempt before it followed a failure outside the model call (an input guardrail).
  if (kind === 'fallback') m.fallbacks.inc({ group, reason: previous?.errorType ?? 'unknown' });
}

function recordGuardrail(m: Instruments, { guardrail, source, action, units }: GuardrailRecord): void {
  m.guardrailChecks.inc({ guardrail, source, action });
  if (units > 0) m.guardrailUnits.inc({ guardrail, source }, units);
}

/**
 * The client chooses `model`, so it is never a label as sent: only the configured group serving it is
 * (aliases resolved; `'*'` for every name a wildcard group serves).
 */
function modelLabel(summary: RequestSummary, canonicalGroup: ResolvedMetricsOptions['canonicalGroup']): string {
  if (canonicalGroup) return canonicalGroup(summary.model) ?? UNKNOWN_MODEL;
  return summary.attempts.find((a) => a.kind === 'first')?.group ?? UNKNOWN_MODEL;
}

/**
 * The class of the status line sent (`2xx`, `4xx`, …), not of the summary's 499 for a client that left:
 * `error_type` tells those apart already. `none` when the client left before any status line went out.
 */
function statusClass(summary: RequestSummary): string {
  const sent = summary.clientAborted ? summary.httpStatus : summary.status;
  if (sent === undefined) return 'none';
  return `${Math.floor(sent / 100)}xx`;
}

/** Serves `registry.metrics()`; a collection failure goes to `next(err)` (Express 4 does not catch it). */
function metricsHandler(registry: Registry): RequestHandler {
  return function llmGatewayMetrics(_req: Request, res: Response, next: NextFunction): void {
    registry.metrics().then((text) => {
      res.setHeader('content-type', registry.contentType);
      res.end(text);
    }, next);
  };
}

/**
 * One `GatewayEvents` calling each given handler set in order. Every handler runs even when an earlier one
 * throws (a broken accounting hook must not leave a metrics gauge unbalanced); the first error is rethrown
 * afterwards, for the context to log.
 */
export function combineEvents(...events: (GatewayEvents | undefined)[]): GatewayEvents {
  const present = events.filter((e): e is GatewayEvents => e !== undefined);
  const starts = present.flatMap((e) => (e.onRequestStart ? [e.onRequestStart.bind(e)] : []));
  const ends = present.flatMap((e) => (e.onRequestEnd ? [e.onRequestEnd.bind(e)] : []));
  // Only the hooks someone listens to: the context skips building a summary nobody reads.
  return {
    ...(starts.length > 0 ? { onRequestStart: (ctx: GatewayContext) => callEach(starts, ctx) } : {}),
    ...(ends.length > 0 ? { onRequestEnd: (summary: RequestSummary) => callEach(ends, summary) } : {}),
  };
}

function callEach<T>(handlers: ((arg: T) => void)[], arg: T): void {
  let firstError: unknown;
  let failed = false;
  for (const handler of handlers) {
    try {
      handler(arg);
    } catch (err) {
      if (!failed) firstError = err;
      failed = true;
    }
  }
  if (failed) throw firstError;
}
