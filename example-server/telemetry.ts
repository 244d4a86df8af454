/**
 * `OTEL=console npm start`: the gateway's OpenTelemetry spans (see `express-llm-gateway/otel`), printed
 * to the console by the SDK's `ConsoleSpanExporter` as each span ends: a request's attempt and guardrail
 * spans first, then its request span, all with the same `traceId` (try the `flaky` step of the
 * walkthrough: a failed attempt, its retry, and the fallback that answers). The upstream calls carry
 * `traceparent`. A real deployment would register an OTLP exporter with the SDK instead and call
 * `instrumentGateway()` with no options.
 */
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, ConsoleSpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { instrumentGateway } from '../lib/otel.js';

/** Starts printing spans; the returned function stops it. */
export function startConsoleTelemetry(): () => Promise<void> {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())] });
  const telemetry = instrumentGateway({ tracerProvider, propagateTraceContext: new W3CTraceContextPropagator() });
  return async () => {
    telemetry.stop();
    await tracerProvider.shutdown();
  };
}
