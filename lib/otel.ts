/**
 * `express-llm-gateway/otel`: OpenTelemetry spans and metrics made from the gateway's tracing channels
 * (`lib/diagnostics.ts`), on their own entry point so that only apps using them need `@opentelemetry/api`
 * (an optional peer dependency). It follows the GenAI semantic conventions of OpenTelemetry semantic
 * conventions v1.41.0 (status: Development), names pinned here so a later version of the conventions does
 * not silently change what operators see.
 *
 * Per request (after validation), a span `chat {requested model group}`: SERVER when no span is active (the
 * gateway is where the trace starts), INTERNAL under the span the host's HTTP instrumentation already made.
 * Under it, a CLIENT span `chat {upstream model}` per upstream attempt (first, retry, fallback) with the GenAI
 * attributes, and a CLIENT span `guardrail {name}` per ApplyGuardrail call. Token usage is on the attempt
 * spans only, so a backend that sums `gen_ai.usage.*` counts each upstream call once. No prompt, completion
 * or credential is ever recorded: the channels carry none (content capture is not offered).
 */
import {
  type Attributes,
  type Context,
  type Histogram,
  type MeterProvider,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapPropagator,
  type TracerProvider,
  context,
  defaultTextMapSetter,
  metrics,
  propagation,
  trace,
} from '@opentelemetry/api';
import {
  type AttemptMessage,
  type GuardrailMessage,
  type RequestMessage,
  type TracedUsage,
  attemptChannel,
  guardrailChannel,
  requestChannel,
} from './diagnostics.js';
import type { ProviderName } from './providers/types.js';
import { definedOnly, optionsValidator } from './options.js';

export { ATTEMPT_CHANNEL, GUARDRAIL_CHANNEL, REQUEST_CHANNEL, TracedFailure } from './diagnostics.js';
export type { AttemptMessage, GuardrailMessage, RequestMessage, TracedUsage } from './diagnostics.js';

/** The semantic conventions version the names below follow. */
export const SEMCONV_VERSION = '1.41.0';
const SCHEMA_URL = `https://opentelemetry.io/schemas/${SEMCONV_VERSION}`;
const INSTRUMENTATION_NAME = 'express-llm-gateway';

export interface GatewayTelemetryOptions {
  /** Where spans go. @default the global tracer provider (`trace.getTracerProvider()`) */
  tracerProvider?: TracerProvider;
  /** Where the GenAI metrics go. @default the global meter provider (`metrics.getMeterProvider()`) */
  meterProvider?: MeterProvider;
  /**
   * Send the attempt span's trace context (`traceparent`, `tracestate`) to the upstream, so a provider or a
   * model server that traces too continues the same trace. `true` uses the global propagator
   * (`propagation.inject`); or pass a propagator. Only OpenAI-compatible and Anthropic deployments send it
   * (the AWS SDK builds Bedrock's requests). Off by default: the trace ids would go to a third party.
   * @default false
   */
  propagateTraceContext?: boolean | TextMapPropagator;
  /**
   * The request span's kind: `'auto'` makes it SERVER when no span is active when the request starts, and
   * INTERNAL under the host's HTTP server span otherwise (an HTTP instrumentation already made one).
   * @default 'auto'
   */
  requestSpanKind?: 'auto' | 'server' | 'internal';
}

export interface GatewayTelemetry {
  /** Unsubscribes from the channels and ends the spans still open. */
  stop(): void;
}

/** `gen_ai.provider.name` of each provider (an OpenAI-compatible server is reported as `openai`: its API). */
const PROVIDER_NAMES: Record<ProviderName, string> = {
  openai: 'openai',
  azure: 'azure.ai.openai',
  anthropic: 'anthropic',
  bedrock: 'aws.bedrock',
};

/** The conventions' advised buckets for `gen_ai.client.operation.duration` (also used for time to first chunk). */
const SECONDS_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/** The conventions' advised buckets for `gen_ai.client.token.usage`. */
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    properties: {
      tracerProvider: { type: 'object' },
      meterProvider: { type: 'object' },
      propagateTraceContext: { type: ['boolean', 'object'] },
      requestSpanKind: { enum: ['auto', 'server', 'internal'] },
    },
  },
  'instrumentGateway',
);

interface Instruments {
  duration: Histogram;
  tokens: Histogram;
  firstChunk: Histogram;
}

/**
 * Subscribes to the gateway's tracing channels and turns them into spans and GenAI metrics. Call it once, at
 * start-up (every call subscribes again); it instruments every gateway in the process, loaded as CommonJS or
 * as an ES module.
 */
export function instrumentGateway(options?: GatewayTelemetryOptions): GatewayTelemetry {
  const given = definedOnly(options);
  validateOptions(given);
  const tracer = (given.tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION_NAME, undefined, { schemaUrl: SCHEMA_URL });
  const meter = (given.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_NAME, undefined, { schemaUrl: SCHEMA_URL });
  const propagator = given.propagateTraceContext === true ? propagation : given.propagateTraceContext || undefined;
  const spanKind = given.requestSpanKind ?? 'auto';
  const instruments: Instruments = {
    duration: meter.createHistogram('gen_ai.client.operation.duration', {
      unit: 's',
      description: 'GenAI operation duration.',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    }),
    tokens: meter.createHistogram('gen_ai.client.token.usage', {
      unit: '{token}',
      description: 'Number of input and output tokens used.',
      advice: { explicitBucketBoundaries: TOKEN_BUCKETS },
    }),
    firstChunk: meter.createHistogram('gen_ai.client.operation.time_to_first_chunk', {
      unit: 's',
      description: 'Time to receive the first chunk in a streaming operation.',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    }),
  };

  /** Each traced request's context, holding its span: the parent of its attempts and guardrail calls. */
  const requests = new WeakMap<RequestMessage, Context>();
  const attempts = new WeakMap<AttemptMessage, Span>();
  const guardrails = new WeakMap<GuardrailMessage, Span>();
  const open = new Set<Span>();
  const started = (span: Span): Span => {
    open.add(span);
    return span;
  };
  const ended = (span: Span | undefined): void => {
    if (!span) return;
    open.delete(span);
    span.end();
  };
  const parentOf = (request: RequestMessage | undefined): Context => (request && requests.get(request)) ?? context.active();

  const onRequestStart = (m: RequestMessage): void => {
    const parent = context.active();
    const kind = spanKind === 'server' || (spanKind === 'auto' && trace.getSpan(parent) === undefined) ? SpanKind.SERVER : SpanKind.INTERNAL;
    const span = tracer.startSpan(`chat ${m.model}`, { kind, attributes: requestStartAttributes(m) }, parent);
    requests.set(m, trace.setSpan(parent, started(span)));
  };
  const onRequestEnd = (m: RequestMessage): void => {
    const traced = requests.get(m);
    const span = traced && trace.getSpan(traced);
    if (!span || !open.has(span)) return;
    span.setAttributes(requestEndAttributes(m));
    if (m.errorType !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: m.errorType });
    ended(span);
  };

  const onAttemptStart = (m: AttemptMessage): void => {
    const parent = parentOf(m.request);
    const span = started(tracer.startSpan(`chat ${m.model}`, { kind: SpanKind.CLIENT, attributes: attemptStartAttributes(m) }, parent));
    attempts.set(m, span);
    propagator?.inject(trace.setSpan(parent, span), m.headers, defaultTextMapSetter);
  };
  const onAttemptEnd = (m: AttemptMessage): void => {
    const span = attempts.get(m);
    if (span) {
      span.setAttributes(attemptEndAttributes(m));
      if (m.outcome !== 'success') span.setStatus({ code: SpanStatusCode.ERROR, message: m.errorType });
      ended(span);
    }
    recordAttemptMetrics(instruments, m);
  };

  const onGuardrailStart = (m: GuardrailMessage): void => {
    const attributes: Attributes = {
      'llm_gateway.guardrail.name': m.guardrail,
      'llm_gateway.guardrail.source': m.source,
      'llm_gateway.guardrail.texts': m.texts,
      'llm_gateway.request.id': m.requestId,
    };
    guardrails.set(m, started(tracer.startSpan(`guardrail ${m.guardrail}`, { kind: SpanKind.CLIENT, attributes }, parentOf(m.request))));
  };
  const onGuardrailEnd = (m: GuardrailMessage): void => {
    const span = guardrails.get(m);
    if (!span) return;
    span.setAttributes(definedAttributes({ 'llm_gateway.guardrail.action': m.action, 'llm_gateway.guardrail.text_units': m.units }));
    if (m.error) {
      span.setAttribute('error.type', m.error.type);
      span.setStatus({ code: SpanStatusCode.ERROR, message: m.error.type });
    }
    ended(span);
  };

  const subscriptions: [{ subscribe(fn: (m: unknown) => void): void; unsubscribe(fn: (m: unknown) => void): unknown }, (m: unknown) => void][] = [
    [requestChannel.start, guarded(onRequestStart)],
    [requestChannel.asyncEnd, guarded(onRequestEnd)],
    [attemptChannel.start, guarded(onAttemptStart)],
    [attemptChannel.asyncEnd, guarded(onAttemptEnd)],
    [guardrailChannel.start, guarded(onGuardrailStart)],
    [guardrailChannel.asyncEnd, guarded(onGuardrailEnd)],
  ];
  for (const [channel, handler] of subscriptions) channel.subscribe(handler);
  return {
    stop() {
      for (const [channel, handler] of subscriptions) channel.unsubscribe(handler);
      for (const span of [...open]) ended(span);
    },
  };
}

/**
 * A subscriber that throws would surface as an uncaught exception (Node rethrows it on the next tick):
 * tracing must never take a request, or the process, down with it.
 */
function guarded<T>(handler: (message: T) => void): (message: unknown) => void {
  return (message) => {
    try {
      handler(message as T);
    } catch {
      // A broken exporter or SDK costs this span, nothing else.
    }
  };
}

function requestStartAttributes(m: RequestMessage): Attributes {
  return {
    'gen_ai.operation.name': 'chat',
    'gen_ai.request.model': m.model,
    'llm_gateway.protocol': m.protocol,
    'llm_gateway.request.id': m.requestId,
    'llm_gateway.stream': m.stream,
  };
}

function requestEndAttributes(m: RequestMessage): Attributes {
  return definedAttributes({
    'llm_gateway.status': m.status,
    'http.response.status_code': m.httpStatus,
    'error.type': m.errorType,
    'llm_gateway.client_aborted': m.clientAborted,
    'llm_gateway.committed': m.committed,
    'llm_gateway.time_to_first_byte': seconds(m.timeToFirstByteMs),
    'llm_gateway.attempts': m.attempts,
    'llm_gateway.retries': m.retries,
    'llm_gateway.fallbacks': m.fallbacks,
    'llm_gateway.guardrail_calls': m.guardrailCalls,
    ...usageAttributes('llm_gateway.usage', m.usage),
  });
}

function attemptStartAttributes(m: AttemptMessage): Attributes {
  return {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': PROVIDER_NAMES[m.provider],
    'gen_ai.request.model': m.model,
    'server.address': m.serverAddress,
    'server.port': m.serverPort,
    'llm_gateway.group': m.group,
    'llm_gateway.deployment': m.deployment,
    'llm_gateway.attempt.kind': m.kind,
    'llm_gateway.request.id': m.requestId,
    'llm_gateway.stream': m.stream,
  };
}

function attemptEndAttributes(m: AttemptMessage): Attributes {
  // The conventions want usage as the provider reported it; an estimate goes under the gateway's own names.
  const usage = m.usage && !m.usage.estimated ? usageAttributes('gen_ai.usage', m.usage) : usageAttributes('llm_gateway.usage.estimated', m.usage);
  return definedAttributes({
    'gen_ai.response.model': m.responseModel,
    'error.type': m.outcome === 'success' ? undefined : m.errorType,
    'llm_gateway.attempt.outcome': m.outcome,
    'llm_gateway.time_to_first_chunk': seconds(m.timeToFirstChunkMs),
    ...usage,
  });
}

function usageAttributes(prefix: string, usage: TracedUsage | undefined): Attributes {
  if (!usage) return {};
  return { [`${prefix}.input_tokens`]: usage.inputTokens, [`${prefix}.output_tokens`]: usage.outputTokens };
}

/** The GenAI client metrics of one upstream attempt (the gateway is the GenAI client). */
function recordAttemptMetrics(instruments: Instruments, m: AttemptMessage): void {
  const attributes: Attributes = {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': PROVIDER_NAMES[m.provider],
    'gen_ai.request.model': m.model,
    'server.address': m.serverAddress,
    'server.port': m.serverPort,
  };
  if (m.responseModel !== undefined) attributes['gen_ai.response.model'] = m.responseModel;
  if (m.outcome !== 'success') attributes['error.type'] = m.errorType ?? 'upstream_error';
  if (m.latencyMs !== undefined) instruments.duration.record(m.latencyMs / 1000, attributes);
  if (m.stream && m.timeToFirstChunkMs !== undefined) instruments.firstChunk.record(m.timeToFirstChunkMs / 1000, attributes);
  // Only counts the provider reported: the conventions forbid reporting guessed counts on this metric.
  if (m.usage && !m.usage.estimated) {
    instruments.tokens.record(m.usage.inputTokens, { ...attributes, 'gen_ai.token.type': 'input' });
    instruments.tokens.record(m.usage.outputTokens, { ...attributes, 'gen_ai.token.type': 'output' });
  }
}

/** Attributes without the ones a message left unset (an SDK may keep an `undefined` value as is). */
function definedAttributes(attributes: Record<string, Attributes[string]>): Attributes {
  const out: Attributes = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out[key] = value;
  return out;
}

function seconds(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : ms / 1000;
}
