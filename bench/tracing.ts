/**
 * What the tracing setups of `bench/setups.ts` subscribe with (issue #15), loaded only inside their gateway
 * child process:
 *
 * - `noopChannelSubscribers()`: a plain subscriber that does nothing on every event of the three tracing
 *   channels. Its cost is the gateway's publishing alone (messages built, stores run), nothing an APM adds.
 * - `benchTelemetry()`: `instrumentGateway()` with a real OpenTelemetry SDK, wired as an app would wire it
 *   (as `test/otel.test.ts` and `example-server/telemetry.ts` do): the AsyncLocalStorage context manager as
 *   the global one, a `BasicTracerProvider` with a `BatchSpanProcessor`, a `MeterProvider` with a periodic
 *   reader. Both exporters discard what they are given, so spans and metric points are dropped once
 *   exported: the cost measured is the SDK's (span objects, attributes, batching, histogram aggregation),
 *   not an exporter's serialization or network.
 */
import { tracingChannel } from 'node:diagnostics_channel';
import type { ExportResult } from '@opentelemetry/core';
import type { PushMetricExporter, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { gatewayPackage, otelPackage } from './package.js';

/** `ExportResultCode.SUCCESS` of `@opentelemetry/core` (0), without loading it for a constant. */
const SUCCESS: ExportResult = { code: 0 };

/** Accepts every batch and keeps nothing. Counts what it dropped (shown nowhere; a debugger can look). */
export class DiscardingSpanExporter implements SpanExporter {
  dropped = 0;
  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.dropped += spans.length;
    resultCallback(SUCCESS);
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

export class DiscardingMetricExporter implements PushMetricExporter {
  exports = 0;
  export(_metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    this.exports++;
    resultCallback(SUCCESS);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** The three tracing channels' names, as the built package exports them. */
export function tracingChannels(): readonly string[] {
  const { REQUEST_CHANNEL, ATTEMPT_CHANNEL, GUARDRAIL_CHANNEL } = gatewayPackage();
  return [REQUEST_CHANNEL, ATTEMPT_CHANNEL, GUARDRAIL_CHANNEL];
}

/** Subscribes a do-nothing handler to every event of the three channels; returns the unsubscribe. */
export function noopChannelSubscribers(): () => void {
  const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop };
  const channels = tracingChannels().map((name) => tracingChannel(name));
  for (const channel of channels) channel.subscribe(handlers);
  return () => {
    for (const channel of channels) channel.unsubscribe(handlers);
  };
}

function noop(): void {
  // a subscriber that does nothing: what the channels cost on their own
}

/** How often the periodic reader collects and exports (the SDK's default is 60 s; cells are seconds long). */
export const METRIC_EXPORT_INTERVAL_MS = 5_000;

/** `instrumentGateway()` with the OpenTelemetry SDK and discarding exporters; returns what stops it. */
export async function benchTelemetry(): Promise<() => Promise<void>> {
  const [{ context }, { AsyncLocalStorageContextManager }, { BasicTracerProvider, BatchSpanProcessor }, { MeterProvider, PeriodicExportingMetricReader }] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/sdk-metrics'),
  ]);
  const { instrumentGateway } = otelPackage();
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(new DiscardingSpanExporter())] });
  const meterProvider = new MeterProvider({
    readers: [new PeriodicExportingMetricReader({ exporter: new DiscardingMetricExporter(), exportIntervalMillis: METRIC_EXPORT_INTERVAL_MS, exportTimeoutMillis: 1_000 })],
  });
  const telemetry = instrumentGateway({ tracerProvider, meterProvider });
  return async () => {
    telemetry.stop();
    await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
    context.disable();
  };
}
