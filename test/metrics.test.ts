/**
 * Issue #8 item 3: Prometheus metrics through a real app (`createGateway({ metrics })`, the mock OpenAI
 * server, the Bedrock ApplyGuardrail emulator), read by scraping the handler over HTTP, in both modes.
 */
import { Registry, register } from 'prom-client';
import {
  GatewayConfigError,
  combineEvents,
  createGateway,
  prometheusMetrics,
  silentLogger,
  validateGatewayConfig,
  type Gateway,
  type GatewayOptions,
  type RequestSummary,
} from '../lib/index.js';
import { startBedrockEmulator, startMockOpenAI, type BedrockEmulator, type MockServer } from '../lib/testing/index.js';
import { chat } from './helpers/chat.js';
import { createApp } from './helpers/express.js';
import { listen, rawRequest } from './helpers/http.js';

const PROMPT = 'my secret prompt about the quarterly numbers';
const REQUEST_ID = 'req-7f3a9c-metrics-test';
const UNKNOWN_NAME = 'client-invented-model-name';

let mock: MockServer;
let emulator: BedrockEmulator;
/** Apps started by the current test, closed after it. */
const running: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  [mock, emulator] = await Promise.all([startMockOpenAI(), startBedrockEmulator()]);
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await Promise.all([mock.close(), emulator.close()]);
});

// ---- the app and the scrape ----

function deployment(group: string, scenario: string) {
  return { id: `${group}-a`, provider: 'openai' as const, baseUrl: `${mock.url}/v1`, model: scenario, apiKey: 'k' };
}

/** Groups named after what their one deployment does (the mock scenario it asks for). */
function models(): GatewayOptions['models'] {
  return [
    { name: 'chat', aliases: ['chat-alias'], deployments: [deployment('chat', 'normal')] },
    { name: 'flaky', deployments: [deployment('flaky', 'error-500')] },
    { name: 'main', deployments: [deployment('main', 'content-policy')] },
    { name: 'backup', deployments: [deployment('backup', 'normal')] },
    { name: 'midstream', deployments: [deployment('midstream', 'midstream-error')] },
    { name: 'slow', deployments: [deployment('slow', 'slow:200')] },
  ];
}

interface App {
  url: string;
  gateway: Gateway;
  summaries: RequestSummary[];
}

/** Starts an app; `owner` closes it (by default: after the current test). */
async function startApp(extra: Partial<GatewayOptions> = {}, owner = running): Promise<App> {
  const summaries: RequestSummary[] = [];
  const gateway = createGateway({
    models: models(),
    router: { retries: { maxRetries: 1, backoff: { initialMs: 1, maxMs: 1 } }, cooldown: { failureThreshold: 1000 } },
    fallbacks: { contentPolicy: { main: ['backup'] } },
    logger: silentLogger,
    metrics: true,
    events: { onRequestEnd: (s) => summaries.push(s) },
    ...extra,
  });
  const app = createApp();
  app.get('/metrics', gateway.metrics!.handler);
  app.use(gateway);
  const server = await listen(app);
  owner.push({ close: async () => (await server.close(), await gateway.close()) });
  return { url: server.url, gateway, summaries };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(app: App): Promise<{ text: string; samples: Sample[]; contentType: string }> {
  const res = await rawRequest(app.url, { method: 'GET', path: '/metrics' });
  expect(res.status).toBe(200);
  return { text: res.text, samples: parseExposition(res.text), contentType: String(res.headers['content-type']) };
}

/** The samples of a Prometheus text exposition (label values here never contain `"` or `,`). */
function parseExposition(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not a sample line: ${line}`);
      const labels: Record<string, string> = {};
      for (const pair of match[2] ? match[2].split(',') : []) {
        const [key, quoted] = pair.split('=') as [string, string];
        labels[key] = quoted.slice(1, -1);
      }
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

/** The value of the sample with exactly these labels (0 when absent, as Prometheus reads a missing series). */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  const found = samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === wanted);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${wanted}`);
  return found[0]?.value ?? 0;
}

/** The sum over every series of `name` whose labels include `labels`. */
function sumOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Requests end (and are counted) when their response closes, which the client may see a moment earlier. */
async function settled(app: App, requests: number): Promise<Sample[]> {
  for (let i = 0; i < 200; i++) {
    const { samples } = await scrape(app);
    if (sumOf(samples, 'llm_gateway_requests_total') >= requests && valueOf(samples, 'llm_gateway_active_requests') === 0) return samples;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the gateway did not settle on ${requests} requests`);
}

function ask(app: App, model: string, stream: boolean, options: { abortAfterMs?: number } = {}) {
  return chat(app.url, { model, stream, messages: [{ role: 'user', content: PROMPT }] }, { headers: { 'x-request-id': REQUEST_ID }, ...options });
}

// ---- the tests ----

describe.each([false, true])('metrics after a known sequence of requests (stream: %p)', (stream) => {
  let app: App;
  let samples: Sample[];
  let text: string;
  const s = String(stream);
  const shared: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    app = await startApp({}, shared);
    expect((await ask(app, 'chat', stream)).status).toBe(200);
    expect((await ask(app, 'chat', stream)).status).toBe(200);
    expect((await ask(app, 'chat-alias', stream)).status).toBe(200);
    expect((await ask(app, 'flaky', stream)).status).toBeGreaterThanOrEqual(500);
    expect((await ask(app, 'main', stream)).status).toBe(200);
    expect((await ask(app, UNKNOWN_NAME, stream)).status).toBe(404);
    samples = await settled(app, 6);
    ({ text } = await scrape(app));
  });
  afterAll(async () => {
    await Promise.all(shared.map((r) => r.close()));
  });

  it('counts requests by canonical model group (aliases resolved), stream, status class and error type', () => {
    expect(valueOf(samples, 'llm_gateway_requests_total', { model: 'chat', stream: s, status: '2xx', error_type: 'none' })).toBe(3);
    expect(valueOf(samples, 'llm_gateway_requests_total', { model: 'flaky', stream: s, status: '5xx', error_type: 'upstream_error' })).toBe(1);
    expect(valueOf(samples, 'llm_gateway_requests_total', { model: 'main', stream: s, status: '2xx', error_type: 'none' })).toBe(1);
    expect(valueOf(samples, 'llm_gateway_requests_total', { model: 'unknown', stream: s, status: '4xx', error_type: 'not_found_error' })).toBe(1);
    expect(sumOf(samples, 'llm_gateway_requests_total')).toBe(6);
    expect(valueOf(samples, 'llm_gateway_request_duration_seconds_count', { model: 'chat', stream: s })).toBe(3);
  });

  it('counts attempts, retries and fallbacks by the reason that led to them', () => {
    const attempt = (group: string, kind: string, outcome: string) => ({ group, deployment: `${group}-a`, provider: 'openai', kind, outcome });
    expect(valueOf(samples, 'llm_gateway_attempts_total', attempt('chat', 'first', 'success'))).toBe(3);
    expect(valueOf(samples, 'llm_gateway_attempts_total', attempt('flaky', 'first', 'error'))).toBe(1);
    expect(valueOf(samples, 'llm_gateway_attempts_total', attempt('flaky', 'retry', 'error'))).toBe(1);
    expect(valueOf(samples, 'llm_gateway_attempts_total', attempt('main', 'first', 'error'))).toBe(1);
    expect(valueOf(samples, 'llm_gateway_attempts_total', attempt('backup', 'fallback', 'success'))).toBe(1);
    expect(sumOf(samples, 'llm_gateway_attempts_total')).toBe(7);
    expect(valueOf(samples, 'llm_gateway_upstream_attempt_duration_seconds_count', { group: 'flaky', deployment: 'flaky-a', outcome: 'error' })).toBe(2);
    expect(valueOf(samples, 'llm_gateway_retries_total', { group: 'flaky' })).toBe(1);
    expect(sumOf(samples, 'llm_gateway_retries_total')).toBe(1);
    expect(valueOf(samples, 'llm_gateway_fallbacks_total', { group: 'backup', reason: 'content_policy_violation' })).toBe(1);
    expect(sumOf(samples, 'llm_gateway_fallbacks_total')).toBe(1);
  });

  it('observes time to first byte for answers only, and counts tokens by the group that served them', () => {
    expect(valueOf(samples, 'llm_gateway_time_to_first_byte_seconds_count', { model: 'chat', stream: s })).toBe(3);
    expect(valueOf(samples, 'llm_gateway_time_to_first_byte_seconds_count', { model: 'main', stream: s })).toBe(1);
    expect(sumOf(samples, 'llm_gateway_time_to_first_byte_seconds_count')).toBe(4);
    expect(valueOf(samples, 'llm_gateway_time_to_first_byte_seconds_sum', { model: 'chat', stream: s })).toBeGreaterThan(0);
    const usage = app.summaries.filter((x) => x.attempts.at(-1)?.group === 'backup').map((x) => x.usage!);
    expect(usage).toHaveLength(1);
    expect(valueOf(samples, 'llm_gateway_tokens_total', { group: 'backup', type: 'prompt', source: 'reported' })).toBe(usage[0]!.prompt_tokens);
    expect(valueOf(samples, 'llm_gateway_tokens_total', { group: 'backup', type: 'completion', source: 'reported' })).toBe(usage[0]!.completion_tokens);
    expect(sumOf(samples, 'llm_gateway_tokens_total', { group: 'main' })).toBe(0);
    // Every answer here was reported by the upstream; the 'flaky' 500s generated nothing.
    expect(sumOf(samples, 'llm_gateway_tokens_total', { source: 'estimated' })).toBe(0);
  });

  it('has the active gauges back at 0 and no client-controlled text in any label', () => {
    expect(valueOf(samples, 'llm_gateway_active_requests')).toBe(0);
    expect(valueOf(samples, 'llm_gateway_active_streams')).toBe(0);
    for (const secret of [PROMPT, 'secret', REQUEST_ID, UNKNOWN_NAME, 'chat-alias', 'Hello! This is a mock answer']) expect(text).not.toContain(secret);
    const values = new Set(samples.flatMap((x) => Object.values(x.labels)));
    for (const v of values) expect(v).toMatch(/^[\w.+:*-]+$/); // slugs, names from the config, bucket bounds
  });
});

describe('metrics: streams, aborts and the gauges', () => {
  it('a failure after commit is a 2xx with its in-band error type, and an answer (TTFB observed)', async () => {
    const app = await startApp();
    const outcome = await ask(app, 'midstream', true);
    expect(outcome).toMatchObject({ status: 200, inBand: true });
    const samples = await settled(app, 1);
    expect(valueOf(samples, 'llm_gateway_requests_total', { model: 'midstream', stream: 'true', status: '2xx', error_type: 'upstream_error' })).toBe(1);
    expect(valueOf(samples, 'llm_gateway_attempts_total', { group: 'midstream', deployment: 'midstream-a', provider: 'openai', kind: 'first', outcome: 'error' })).toBe(1);
    expect(sumOf(samples, 'llm_gateway_retries_total')).toBe(0);
    expect(valueOf(samples, 'llm_gateway_time_to_first_byte_seconds_count', { model: 'midstream', stream: 'true' })).toBe(1);
  });

  it('counts requests in flight while they run, streams separately, and both go back to 0', async () => {
    const app = await startApp();
    const streaming = ask(app, 'slow', true);
    const plain = ask(app, 'slow', false);
    let during: Sample[] = [];
    for (let i = 0; i < 100 && valueOf(during, 'llm_gateway_active_requests') < 2; i++) {
      ({ samples: during } = await scrape(app));
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(valueOf(during, 'llm_gateway_active_requests')).toBe(2);
    expect(valueOf(during, 'llm_gateway_active_streams')).toBe(1);
    expect(sumOf(during, 'llm_gateway_requests_total')).toBe(0);
    expect((await streaming).status).toBe(200);
    expect((await plain).status).toBe(200);
    const after = await settled(app, 2);
    expect(valueOf(after, 'llm_gateway_active_requests')).toBe(0);
    expect(valueOf(after, 'llm_gateway_active_streams')).toBe(0);
    expect(sumOf(after, 'llm_gateway_client_aborts_total')).toBe(0);
  });

  it.each([false, true])('a client that leaves is counted once, and the gauges go back to 0 (stream: %p)', async (stream) => {
    const app = await startApp();
    // Streaming: after the first chunks (committed); non-streaming: before the answer (never committed).
    await ask(app, 'slow', stream, { abortAfterMs: 250 });
    const samples = await settled(app, 1);
    const status = stream ? '2xx' : 'none';
    expect(valueOf(samples, 'llm_gateway_requests_total', { model: 'slow', stream: String(stream), status, error_type: 'client_disconnected' })).toBe(1);
    expect(valueOf(samples, 'llm_gateway_client_aborts_total', { model: 'slow', stream: String(stream) })).toBe(1);
    expect(valueOf(samples, 'llm_gateway_active_requests')).toBe(0);
    expect(valueOf(samples, 'llm_gateway_active_streams')).toBe(0);
    expect(sumOf(samples, 'llm_gateway_attempts_total', { group: 'slow' })).toBe(1);
  });
});

describe('metrics: guardrails', () => {
  const guardrail = () => ({
    guardrailIdentifier: 'gr1default',
    guardrailVersion: '1',
    region: 'us-east-1',
    endpoint: emulator.url,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
    maxAttempts: 1,
  });

  it.each([false, true])('counts checks by guardrail, source and action, and the text units billed (stream: %p)', async (stream) => {
    const app = await startApp({ guardrails: [guardrail()] });
    const ok = await ask(app, 'chat', stream);
    expect(ok.status).toBe(200);
    const blocked = await chat(app.url, { model: 'chat', stream, messages: [{ role: 'user', content: 'give me some stock tips' }] });
    expect(blocked.status).toBe(400);
    const samples = await settled(app, 2);
    const s = String(stream);
    expect(valueOf(samples, 'llm_gateway_guardrail_checks_total', { guardrail: 'gr1default', source: 'INPUT', action: 'NONE' })).toBe(1);
    expect(valueOf(samples, 'llm_gateway_guardrail_checks_total', { guardrail: 'gr1default', source: 'INPUT', action: 'BLOCKED' })).toBe(1);
    expect(valueOf(samples, 'llm_gateway_guardrail_checks_total', { guardrail: 'gr1default', source: 'OUTPUT', action: 'NONE' })).toBe(1);
    expect(sumOf(samples, 'llm_gateway_guardrail_checks_total')).toBe(3);
    // The emulator bills a unit a configured text policy for each text under 1,000 characters: 4 on input
    // (topics, content filters, words, sensitive information), 3 on output (no content filter there).
    expect(valueOf(samples, 'llm_gateway_guardrail_text_units_total', { guardrail: 'gr1default', source: 'INPUT' })).toBe(2 * 4);
    expect(valueOf(samples, 'llm_gateway_guardrail_text_units_total', { guardrail: 'gr1default', source: 'OUTPUT' })).toBe(3);
    const billed = app.summaries.flatMap((x) => x.guardrails).reduce((sum, g) => sum + g.units, 0);
    expect(sumOf(samples, 'llm_gateway_guardrail_text_units_total')).toBe(billed);
    // An input block happens before any upstream call: the model label still names its group.
    expect(valueOf(samples, 'llm_gateway_requests_total', { model: 'chat', stream: s, status: '4xx', error_type: 'guardrail_violation' })).toBe(1);
    expect(sumOf(samples, 'llm_gateway_attempts_total')).toBe(1);
  });
});

describe('metrics: wiring', () => {
  it('serves the Prometheus text format', async () => {
    const app = await startApp();
    const { contentType, text } = await scrape(app);
    expect(contentType).toBe(new Registry().contentType);
    expect(text).toContain('# TYPE llm_gateway_requests_total counter');
    expect(text).toContain('# TYPE llm_gateway_time_to_first_byte_seconds histogram');
  });

  it('two gateways in one process keep their own registries (and stay off the global one)', async () => {
    const a = await startApp();
    const b = await startApp();
    expect(a.gateway.metrics!.registry).not.toBe(b.gateway.metrics!.registry);
    await ask(a, 'chat', false);
    const samplesA = await settled(a, 1);
    const samplesB = (await scrape(b)).samples;
    expect(sumOf(samplesA, 'llm_gateway_requests_total')).toBe(1);
    expect(sumOf(samplesB, 'llm_gateway_requests_total')).toBe(0);
    expect(register.getSingleMetric('llm_gateway_requests_total')).toBeUndefined();
  });

  it('shares an app registry under another prefix, and refuses the same prefix twice with a clear error', async () => {
    const registry = new Registry();
    const first = prometheusMetrics({ registry });
    const second = prometheusMetrics({ registry, prefix: 'second_' });
    expect(second.registry).toBe(first.registry);
    expect(() => prometheusMetrics({ registry })).toThrow(GatewayConfigError);
    expect(() => createGateway({ models: models(), metrics: { registry }, logger: silentLogger })).toThrow(/'metrics\.registry'.*own prefix or registry/);
    expect(registry.getSingleMetric('second_requests_total')).toBeDefined();
  });

  it('collects the default process metrics into its own registry only when asked', async () => {
    const withDefaults = await prometheusMetrics({ collectDefaultMetrics: true }).registry.metrics();
    const without = await prometheusMetrics().registry.metrics();
    expect(withDefaults).toContain('llm_gateway_process_cpu_user_seconds_total');
    expect(without).not.toContain('process_cpu');
    expect(await register.metrics()).not.toContain('process_cpu');
  });

  it.each([
    [{ prefix: 'bad prefix' }, 'prometheusMetrics.prefix'],
    [{ buckets: [1, 0.5] }, 'prometheusMetrics.buckets'],
    [{ buckets: [] }, 'prometheusMetrics.buckets'],
    [{ registry: {} }, 'prometheusMetrics.registry'],
    [{ colour: 'red' }, 'prometheusMetrics.colour'],
  ])('rejects bad options naming the field: %j', (options, field) => {
    expect(() => prometheusMetrics(options as never)).toThrow(expect.objectContaining({ field }));
  });

  it('keeps metrics out of the config-file schema: `metrics` is a programmatic option', () => {
    expect(() => validateGatewayConfig({ models: models(), metrics: true })).toThrow(/metrics/);
  });

  it('without a group resolver, labels by the first attempt and collapses a request without one to unknown', () => {
    const metrics = prometheusMetrics();
    const summary = (model: string, attempts: RequestSummary['attempts']): RequestSummary => ({
      requestId: REQUEST_ID, model, stream: false, protocol: 'chat', status: attempts.length ? 200 : 404, httpStatus: attempts.length ? 200 : 404, errorType: attempts.length ? undefined : 'not_found_error',
      clientAborted: false, committed: true, timeToFirstByteMs: 5, durationMs: 10, attempts, guardrails: [], usage: undefined,
    });
    metrics.events.onRequestEnd!(summary('an-alias', [{ group: 'chat', deployment: 'd', provider: 'openai', kind: 'first', outcome: 'success', latencyMs: 3 }]));
    metrics.events.onRequestEnd!(summary(UNKNOWN_NAME, []));
    return metrics.registry.getMetricsAsJSON().then((json) => {
      const requests = json.find((m) => m.name === 'llm_gateway_requests_total')!;
      expect((requests.values as { labels: Record<string, string> }[]).map((v) => v.labels['model'])).toEqual(['chat', 'unknown']);
    });
  });

  it('combineEvents runs every handler even when one throws, then rethrows the first error', () => {
    const calls: string[] = [];
    const combined = combineEvents(
      { onRequestEnd: () => (calls.push('a'), undefined) },
      undefined,
      {
        onRequestEnd: () => {
          calls.push('b');
          throw new Error('first');
        },
      },
      {
        onRequestEnd: () => {
          calls.push('c');
          throw new Error('second');
        },
      },
    );
    expect(combined.onRequestStart).toBeUndefined();
    expect(() => combined.onRequestEnd!({} as RequestSummary)).toThrow('first');
    expect(calls).toEqual(['a', 'b', 'c']);
  });
});
