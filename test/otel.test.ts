/**
 * Issue 15: `express-llm-gateway/otel` with the OpenTelemetry SDK's in-memory span exporter and a metric
 * reader. For a plain answer, a retry, a content-policy fallback, a guardrail block after commit and a
 * client abort, in both modes: the span tree (request → attempts and guardrail calls), the GenAI attributes,
 * `traceparent` on the upstream calls, the GenAI metrics, and no prompt or answer text in any attribute.
 * A host span made by the app's own middleware (as an HTTP instrumentation would) becomes the request
 * span's parent, and the request span is INTERNAL then. Real HTTP against the mocks on 127.0.0.1.
 */
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { type CollectionResult, type HistogramMetricData, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { requestChannel } from '../lib/diagnostics.js';
import { type GatewayTelemetry, SEMCONV_VERSION, instrumentGateway } from '../lib/otel.js';
import { ANTHROPIC_KEY, BLOCKED_PROMPT, CLEAN_TEXT, OPENAI_KEY, PROMPT, startTracedGateway, type Case, type Played } from './helpers/traced-gateway.js';

class TestReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const reader = new TestReader();
const meterProvider = new MeterProvider({ readers: [reader] });
const contextManager = new AsyncLocalStorageContextManager();
let telemetry: GatewayTelemetry;
let gateway: Awaited<ReturnType<typeof startTracedGateway>>;
/** Every attempt span seen, for the metric totals. */
const attemptSpans: ReadableSpan[] = [];

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  // Plays an HTTP instrumentation: a server span active around the rest of the app, when asked for.
  gateway = await startTracedGateway((req, res, next) => {
    if (req.headers['x-host-span'] === undefined) return next();
    const host = tracerProvider.getTracer('host').startSpan('host request', { kind: SpanKind.SERVER });
    res.on('close', () => host.end());
    context.with(trace.setSpan(context.active(), host), next);
  });
  telemetry = instrumentGateway({ tracerProvider, meterProvider, propagateTraceContext: new W3CTraceContextPropagator() });
});

afterAll(async () => {
  telemetry.stop();
  await gateway.close();
  await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
  context.disable();
});

interface Tree {
  played: Played;
  request: ReadableSpan;
  attempts: ReadableSpan[];
  guardrails: ReadableSpan[];
}

async function play(kase: Case, stream: boolean): Promise<Tree> {
  const played = await gateway.play(kase, stream);
  const mine = spans.getFinishedSpans().filter((s) => s.attributes['llm_gateway.request.id'] === played.requestId);
  const requests = mine.filter((s) => s.name === `chat ${kase}`);
  expect(requests).toHaveLength(1);
  const request = requests[0]!;
  const children = mine.filter((s) => s !== request);
  // Every other span of the request is a direct child of the request span, in its trace.
  for (const child of children) {
    expect(child.spanContext().traceId).toBe(request.spanContext().traceId);
    expect(child.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
  }
  const byStart = (a: ReadableSpan, b: ReadableSpan): number => hrMs(a.startTime) - hrMs(b.startTime);
  const attempts = children.filter((s) => s.name.startsWith('chat ')).sort(byStart);
  const guardrails = children.filter((s) => s.name.startsWith('guardrail ')).sort(byStart);
  expect(attempts.length + guardrails.length).toBe(children.length);
  expect(attempts.map((a) => a.attributes['llm_gateway.deployment'])).toEqual(played.summary.attempts.map((a) => a.deployment));
  expect(guardrails).toHaveLength(played.summary.guardrails.length);
  attemptSpans.push(...attempts);
  expectNoContent(mine, played);
  return { played, request, attempts, guardrails };
}

function hrMs([s, ns]: [number, number]): number {
  return s * 1000 + ns / 1e6;
}

/** No attribute, name or status message of the request's spans holds prompt or answer text, or a key. */
function expectNoContent(list: ReadableSpan[], played: Played): void {
  const all = JSON.stringify(list.map((s) => [s.name, s.attributes, s.status, s.events]));
  for (const secret of [OPENAI_KEY, ANTHROPIC_KEY, 'Zanzibar', 'quokka', 'BLOCKME', CLEAN_TEXT.slice(0, 30), BLOCKED_PROMPT.slice(0, 30), PROMPT.slice(0, 30)]) {
    expect(all).not.toContain(secret);
  }
  const text = played.outcome.text;
  for (let i = 0; i + 16 <= text.length; i += 4) expect(all).not.toContain(text.slice(i, i + 16));
}

/** The attempt went upstream with its own span's trace context. */
function expectTraceparent(attempt: ReadableSpan, sent: string | string[] | undefined): void {
  const { traceId, spanId } = attempt.spanContext();
  expect(sent).toBe(`00-${traceId}-${spanId}-01`);
}

function openaiCallOf(played: Played, model: string): string | string[] | undefined {
  const call = gateway.openai.calls.find((c) => c.headers['x-request-id'] === played.requestId && c.model === model);
  return call?.headers['traceparent'];
}

function expectGenAI(span: ReadableSpan, provider: string, model: string): void {
  expect(span.kind).toBe(SpanKind.CLIENT);
  expect(span.name).toBe(`chat ${model}`);
  expect(span.attributes).toMatchObject({
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': provider,
    'gen_ai.request.model': model,
    'server.address': '127.0.0.1',
    'server.port': expect.any(Number),
  });
}

function expectReportedUsage(span: ReadableSpan): void {
  expect(span.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
  expect(span.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
}

describe.each([false, true])('OpenTelemetry spans (stream: %p)', (stream) => {
  it('a plain answer: a SERVER request span, one CLIENT attempt span with usage, traceparent upstream', async () => {
    const { played, request, attempts, guardrails } = await play('plain', stream);
    expect(request.kind).toBe(SpanKind.SERVER);
    expect(request.parentSpanContext).toBeUndefined();
    expect(request.status.code).toBe(SpanStatusCode.UNSET);
    expect(request.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'plain',
      'llm_gateway.stream': stream,
      'llm_gateway.status': 200,
      'http.response.status_code': 200,
      'llm_gateway.attempts': 1,
      'llm_gateway.usage.input_tokens': played.summary.usage!.prompt_tokens,
    });
    expect(request.attributes['llm_gateway.time_to_first_byte']).toEqual(expect.any(Number));
    // Usage is counted on the attempt spans only.
    expect(request.attributes['gen_ai.usage.input_tokens']).toBeUndefined();
    expect(request.attributes['error.type']).toBeUndefined();
    expect(request.instrumentationScope).toMatchObject({ name: 'express-llm-gateway', schemaUrl: `https://opentelemetry.io/schemas/${SEMCONV_VERSION}` });

    const [attempt] = attempts;
    expectGenAI(attempt!, 'openai', 'normal');
    expect(attempt!.attributes).toMatchObject({ 'gen_ai.response.model': 'normal', 'llm_gateway.attempt.kind': 'first', 'llm_gateway.attempt.outcome': 'success' });
    expect(attempt!.status.code).toBe(SpanStatusCode.UNSET);
    expect(attempt!.attributes['gen_ai.usage.input_tokens']).toBe(played.summary.usage!.prompt_tokens);
    expect(attempt!.attributes['gen_ai.usage.output_tokens']).toBe(played.summary.usage!.completion_tokens);
    if (stream) expect(attempt!.attributes['llm_gateway.time_to_first_chunk']).toBeGreaterThan(0);
    expect(guardrails).toEqual([]);
    expectTraceparent(attempt!, openaiCallOf(played, 'normal'));
  });

  it('a retry: the failed attempt span has status ERROR and error.type, the retry span succeeds', async () => {
    const { played, request, attempts } = await play('retry', stream);
    const [failed, retry] = attempts;
    expectGenAI(failed!, 'openai', 'error-503');
    expect(failed!.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed!.attributes['error.type']).toBe(played.summary.attempts[0]!.errorType);
    expect(failed!.attributes['gen_ai.usage.input_tokens']).toBeUndefined();
    expectGenAI(retry!, 'openai', 'normal');
    expect(retry!.attributes['llm_gateway.attempt.kind']).toBe('retry');
    expectReportedUsage(retry!);
    expect(request.attributes).toMatchObject({ 'llm_gateway.attempts': 2, 'llm_gateway.retries': 1 });
    expect(request.status.code).toBe(SpanStatusCode.UNSET);
    expectTraceparent(failed!, openaiCallOf(played, 'error-503'));
    expectTraceparent(retry!, openaiCallOf(played, 'normal'));
  });

  it('a content-policy fallback: the refused OpenAI span, then an Anthropic span with its traceparent', async () => {
    const { played, request, attempts } = await play('policy', stream);
    const [refused, fallback] = attempts;
    expectGenAI(refused!, 'openai', 'stream-error:content-policy');
    expect(refused!.attributes['error.type']).toBe('content_policy_violation');
    expect(refused!.status.code).toBe(SpanStatusCode.ERROR);
    expectGenAI(fallback!, 'anthropic', 'normal');
    expect(fallback!.attributes).toMatchObject({ 'llm_gateway.group': 'backup', 'llm_gateway.attempt.kind': 'fallback' });
    expectReportedUsage(fallback!);
    expect(request.attributes).toMatchObject({ 'llm_gateway.fallbacks': 1, 'llm_gateway.status': 200 });
    const { traceId, spanId } = fallback!.spanContext();
    expect(gateway.anthropic.calls.some((c) => c.headers['traceparent'] === `00-${traceId}-${spanId}-01`)).toBe(true);
    expectTraceparent(refused!, openaiCallOf(played, 'stream-error:content-policy'));
  });

  it('a guardrail block after commit: guardrail spans under the request, the request span ends in error', async () => {
    const { played, request, attempts, guardrails } = await play('guarded', stream);
    expect(guardrails.map((g) => g.attributes['llm_gateway.guardrail.action'])).toEqual(played.summary.guardrails.map((g) => g.action));
    expect(guardrails.at(-1)!.attributes['llm_gateway.guardrail.action']).toBe('BLOCKED');
    for (const g of guardrails) {
      expect(g.name).toBe('guardrail bedrock-guard');
      expect(g.kind).toBe(SpanKind.CLIENT);
      expect(g.attributes).toMatchObject({ 'llm_gateway.guardrail.source': 'OUTPUT', 'llm_gateway.guardrail.text_units': expect.any(Number) });
      // A block is the guardrail doing its job, not a failed call.
      expect(g.status.code).toBe(SpanStatusCode.UNSET);
    }
    expect(attempts[0]!.attributes['error.type']).toBe('guardrail_violation');
    expectReportedUsage(attempts[0]!);
    expect(request.status.code).toBe(SpanStatusCode.ERROR);
    expect(request.attributes).toMatchObject({ 'error.type': 'guardrail_violation', 'llm_gateway.committed': true, 'http.response.status_code': stream ? 200 : 400 });
  });

  it('a client abort: the attempt span ends with client_disconnected and only estimated usage', async () => {
    const { request, attempts } = await play('abort', stream);
    const [attempt] = attempts;
    expect(attempt!.attributes).toMatchObject({ 'error.type': 'client_disconnected', 'llm_gateway.attempt.outcome': 'aborted' });
    expect(attempt!.attributes['gen_ai.usage.input_tokens']).toBeUndefined();
    expect(attempt!.attributes['llm_gateway.usage.estimated.input_tokens']).toBeGreaterThan(0);
    expect(request.attributes).toMatchObject({ 'error.type': 'client_disconnected', 'llm_gateway.status': 499, 'llm_gateway.client_aborted': true });
    expect(request.status.code).toBe(SpanStatusCode.ERROR);
  });
});

describe('GenAI metrics', () => {
  it('one duration per attempt, reported token counts by type, time to first chunk for streamed attempts', async () => {
    // Per mode: plain 1, retry 2, fallback 2, guarded 1, abort 1.
    expect(attemptSpans).toHaveLength(14);
    const { resourceMetrics }: CollectionResult = await reader.collect();
    const all = resourceMetrics.scopeMetrics.filter((s) => s.scope.name === 'express-llm-gateway').flatMap((s) => s.metrics);
    const metric = (name: string): HistogramMetricData => {
      const found = all.find((m) => m.descriptor.name === name);
      if (!found) throw new Error(`no ${name}`);
      return found as HistogramMetricData;
    };
    const count = (m: HistogramMetricData, where: (attrs: Record<string, unknown>) => boolean = () => true): number =>
      m.dataPoints.filter((p) => where(p.attributes)).reduce((n, p) => n + p.value.count, 0);

    const duration = metric('gen_ai.client.operation.duration');
    expect(duration.descriptor.unit).toBe('s');
    expect(count(duration)).toBe(attemptSpans.length);
    for (const point of duration.dataPoints) {
      expect(point.attributes).toMatchObject({ 'gen_ai.operation.name': 'chat', 'server.address': '127.0.0.1', 'server.port': expect.any(Number) });
      expect(['openai', 'anthropic']).toContain(point.attributes['gen_ai.provider.name']);
      // Bounded attributes only: no request id.
      expect(Object.keys(point.attributes).some((k) => k.startsWith('llm_gateway.'))).toBe(false);
    }
    const failedSpans = attemptSpans.filter((s) => s.attributes['error.type'] !== undefined);
    expect(count(duration, (a) => a['error.type'] !== undefined)).toBe(failedSpans.length);
    expect(count(duration, (a) => a['error.type'] === 'content_policy_violation' && a['gen_ai.request.model'] === 'stream-error:content-policy')).toBe(2);

    const tokens = metric('gen_ai.client.token.usage');
    expect(tokens.descriptor.unit).toBe('{token}');
    const reported = attemptSpans.filter((s) => s.attributes['gen_ai.usage.input_tokens'] !== undefined);
    expect(count(tokens, (a) => a['gen_ai.token.type'] === 'input')).toBe(reported.length);
    expect(count(tokens, (a) => a['gen_ai.token.type'] === 'output')).toBe(reported.length);
    const inputSum = tokens.dataPoints.filter((p) => p.attributes['gen_ai.token.type'] === 'input').reduce((n, p) => n + p.value.sum!, 0);
    expect(inputSum).toBe(reported.reduce((n, s) => n + (s.attributes['gen_ai.usage.input_tokens'] as number), 0));
    expect(count(tokens, (a) => a['gen_ai.provider.name'] === 'anthropic' && a['gen_ai.token.type'] === 'output')).toBe(2);

    const firstChunk = metric('gen_ai.client.operation.time_to_first_chunk');
    expect(firstChunk.descriptor.unit).toBe('s');
    const streamedWithChunk = attemptSpans.filter((s) => s.attributes['llm_gateway.stream'] === true && s.attributes['llm_gateway.time_to_first_chunk'] !== undefined);
    expect(streamedWithChunk.length).toBeGreaterThanOrEqual(5);
    expect(count(firstChunk)).toBe(streamedWithChunk.length);
  });
});

describe('under a host span', () => {
  it('the request span is an INTERNAL child of the span active in the app (as an HTTP instrumentation makes)', async () => {
    const played = await gateway.play('plain', true, { 'x-host-span': '1' });
    const finished = spans.getFinishedSpans();
    const host = finished.find((s) => s.name === 'host request');
    const request = finished.find((s) => s.attributes['llm_gateway.request.id'] === played.requestId && s.name === 'chat plain');
    const attempt = finished.find((s) => s.attributes['llm_gateway.request.id'] === played.requestId && s.name === 'chat normal');
    expect(host).toBeDefined();
    expect(request!.kind).toBe(SpanKind.INTERNAL);
    expect(request!.parentSpanContext?.spanId).toBe(host!.spanContext().spanId);
    expect(attempt!.parentSpanContext?.spanId).toBe(request!.spanContext().spanId);
    expect(attempt!.spanContext().traceId).toBe(host!.spanContext().traceId);
  });
});

describe('stop()', () => {
  it('unsubscribes: no span afterwards, and the channels have no subscriber left', async () => {
    telemetry.stop();
    expect(requestChannel.hasSubscribers).toBe(false);
    const before = spans.getFinishedSpans().length;
    await gateway.play('plain', false);
    expect(spans.getFinishedSpans().length).toBe(before);
    telemetry = instrumentGateway({ tracerProvider, meterProvider });
  });
});
