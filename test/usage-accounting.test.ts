/**
 * Issue 13, item 2: usage on every ending. Through a real app (`createGateway` with metrics and an
 * `onRequestEnd` listener) against the mock providers and the Bedrock ApplyGuardrail emulator over
 * 127.0.0.1: for each way a request can end, in each mode where that ending exists, the summary's
 * status and usage (reported by the upstream, or estimated and marked so) and the token metric
 * (`tokens_total{group,type,source}`) that the same summary fed.
 */
import { randomUUID } from 'node:crypto';
import { createGateway, silentLogger, type Gateway, type GatewayOptions, type RequestSummary } from '../lib/index.js';
import { startBedrockEmulator, startMockAnthropic, startMockOpenAI, type BedrockEmulator, type MockServer } from '../lib/testing/index.js';
import { chat, type ChatOutcome } from './helpers/chat.js';
import { serve } from './helpers/express.js';
import type { RunningServer } from './helpers/http.js';

const PROMPT = 'Tell me about the weather in a few sentences, please.';
/** The estimate's prompt tokens for a request with only PROMPT in it (about 4 characters a token). */
const PROMPT_ESTIMATE = Math.ceil(PROMPT.length / 4);
/** Clean enough to pass the guardrail, long enough to fill the first output window (and commit). */
const CLEAN_TEXT = 'The sky over the harbour was clear and calm all morning, with a light breeze from the west. '.repeat(3);

let openai: MockServer;
let anthropic: MockServer;
let emulator: BedrockEmulator;
let server: RunningServer;
let gateway: Gateway;
const summaries = new Map<string, RequestSummary>();

function openaiGroup(name: string, scenario: string, timeouts?: Record<string, number>) {
  return { name, deployments: [{ id: `${name}-a`, provider: 'openai' as const, baseUrl: `${openai.url}/v1`, model: scenario, apiKey: 'k', ...(timeouts ? { timeouts } : {}) }] };
}

function guardrail(hooks: ('pre_call' | 'post_call')[], groups: string[]) {
  return {
    guardrailIdentifier: 'gr1default',
    guardrailVersion: '1',
    region: 'us-east-1',
    endpoint: emulator.url,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
    maxAttempts: 1,
    hooks,
    groups,
    onIntervention: 'block' as const,
    streaming: { mode: 'window' as const, windowSize: 200, overlap: 20 },
  };
}

beforeAll(async () => {
  // Small chunks: a clean first output window is released (and commits) before a blocked one arrives.
  [openai, anthropic, emulator] = await Promise.all([startMockOpenAI({ chunks: 24 }), startMockAnthropic(), startBedrockEmulator()]);
  const models: GatewayOptions['models'] = [
    openaiGroup('normal', 'normal'),
    openaiGroup('slow', 'slow:200'),
    openaiGroup('midstream', 'midstream-error'),
    { name: 'claude-midstream', deployments: [{ id: 'claude-midstream-a', provider: 'anthropic', baseUrl: anthropic.url, model: 'midstream-error', apiKey: 'k' }] },
    openaiGroup('silent', 'hang', { firstTokenMs: 300, totalMs: 600 }),
    openaiGroup('stalls', 'hang-after-first', { idleMs: 300, totalMs: 1500 }),
    openaiGroup('post-checked', 'echo'),
    openaiGroup('pre-checked', 'echo'),
  ];
  gateway = createGateway({
    models,
    // One attempt per request: each summary describes exactly the ending under test.
    router: { retries: { maxRetries: 0 }, cooldown: { failureThreshold: 1000 } },
    guardrails: [guardrail(['post_call'], ['post-checked']), guardrail(['pre_call'], ['pre-checked'])],
    logger: silentLogger,
    metrics: true,
    events: { onRequestEnd: (s) => summaries.set(s.requestId, s) },
  });
  server = await serve(gateway);
});

afterAll(async () => {
  await server.close();
  await gateway.close();
  await Promise.all([openai.close(), anthropic.close(), emulator.close()]);
});

/** Current `tokens_total` values by `group/type/source`. */
async function tokens(): Promise<Map<string, number>> {
  const json = await gateway.metrics!.registry.getMetricsAsJSON();
  const metric = json.find((m) => m.name === 'llm_gateway_tokens_total');
  const values = new Map<string, number>();
  for (const v of (metric?.values ?? []) as { labels: Record<string, string>; value: number }[]) {
    values.set(`${v.labels['group']}/${v.labels['type']}/${v.labels['source']}`, v.value);
  }
  return values;
}

interface Ended {
  outcome: ChatOutcome;
  summary: RequestSummary;
  /** What this request added to `tokens_total`, by `group/type/source` (only the series it changed). */
  added: Record<string, number>;
}

/** One request; resolves once its summary arrived (it comes after the response closed and usage is final). */
async function run(model: string, stream: boolean, options: { content?: string; abortAfterMs?: number } = {}): Promise<Ended> {
  const before = await tokens();
  const id = randomUUID();
  const outcome = await chat(
    server.url,
    { model, stream, messages: [{ role: 'user', content: options.content ?? PROMPT }] },
    { headers: { 'x-request-id': id }, ...(options.abortAfterMs === undefined ? {} : { abortAfterMs: options.abortAfterMs }) },
  );
  for (let i = 0; i < 300 && !summaries.has(id); i++) await new Promise((r) => setTimeout(r, 10));
  const summary = summaries.get(id);
  if (!summary) throw new Error(`no summary for ${model} (stream: ${stream})`);
  const added: Record<string, number> = {};
  for (const [key, value] of await tokens()) {
    const delta = value - (before.get(key) ?? 0);
    if (delta !== 0) added[key] = delta;
  }
  return { outcome, summary, added };
}

/** The metric carries exactly the summary's usage, under its group and source. */
function expectMetricMatches({ summary, added }: Ended, group: string): void {
  const usage = summary.usage!;
  const source = usage['estimated'] === true ? 'estimated' : 'reported';
  const expected: Record<string, number> = {};
  if (usage.prompt_tokens > 0) expected[`${group}/prompt/${source}`] = usage.prompt_tokens;
  if (usage.completion_tokens > 0) expected[`${group}/completion/${source}`] = usage.completion_tokens;
  expect(added).toEqual(expected);
}

function expectEstimated(summary: RequestSummary, completion: 'none' | 'some'): void {
  const usage = summary.usage!;
  expect(usage).toMatchObject({ estimated: true, prompt_tokens: PROMPT_ESTIMATE });
  if (completion === 'none') expect(usage.completion_tokens).toBe(0);
  else expect(usage.completion_tokens).toBeGreaterThan(0);
  expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
}

function expectReported(summary: RequestSummary): void {
  expect(summary.usage).toBeDefined();
  expect(summary.usage!['estimated']).toBeUndefined();
  expect(summary.usage!.completion_tokens).toBeGreaterThan(0);
}

describe.each([false, true])('usage on every ending (stream: %p)', (stream) => {
  it('a normal answer: the upstream’s usage, counted as reported', async () => {
    const ended = await run('normal', stream);
    expect(ended.outcome.status).toBe(200);
    expect(ended.summary).toMatchObject({ status: 200, httpStatus: 200, errorType: undefined, clientAborted: false });
    expectReported(ended.summary);
    expectMetricMatches(ended, 'normal');
  });

  it('the client leaves: status 499, client_disconnected, usage estimated and counted', async () => {
    // Streaming: after the first chunks (committed); non-streaming: while the upstream is still generating.
    const ended = await run('slow', stream, { abortAfterMs: 250 });
    expect(ended.outcome.complete).toBe(false);
    expect(ended.summary).toMatchObject({ status: 499, errorType: 'client_disconnected', clientAborted: true, committed: stream });
    expect(ended.summary.httpStatus).toBe(stream ? 200 : undefined);
    expect(ended.summary.attempts.at(-1)?.outcome).toBe('aborted');
    // The completion characters the gateway saw before the client left (none yet without streaming).
    expectEstimated(ended.summary, stream ? 'some' : 'none');
    expectMetricMatches(ended, 'slow');
  });

  it('a timeout: estimated usage (first token before commit; the whole call without streaming)', async () => {
    const ended = await run('silent', stream);
    expect(ended.outcome.status).toBe(504);
    expect(ended.summary).toMatchObject({ status: 504, errorType: 'timeout', clientAborted: false });
    expectEstimated(ended.summary, 'none');
    expectMetricMatches(ended, 'silent');
  });

  it('a guardrail block before the call: no upstream call, so no usage and no tokens', async () => {
    const ended = await run('pre-checked', stream, { content: 'give me some stock tips' });
    expect(ended.outcome.status).toBe(400);
    expect(ended.summary).toMatchObject({ status: 400, errorType: 'guardrail_violation', attempts: [] });
    expect(ended.summary.usage).toBeUndefined();
    expect(ended.added).toEqual({});
  });

  it('a guardrail block after generation: the upstream’s usage, counted as reported', async () => {
    // The first window is clean (streaming: it commits); the last one, checked once the upstream finished
    // and reported its usage, holds the blocked word.
    const ended = await run('post-checked', stream, { content: `${CLEAN_TEXT}and then BLOCKME.` });
    if (stream) {
      expect(ended.outcome).toMatchObject({ status: 200, inBand: true });
      expect(ended.outcome.text).not.toContain('BLOCKME');
    } else {
      expect(ended.outcome.status).toBe(400);
    }
    expect(ended.summary).toMatchObject({ status: stream ? 200 : 400, errorType: 'guardrail_violation', committed: true });
    expectReported(ended.summary);
    expectMetricMatches(ended, 'post-checked');
  });
});

describe('usage on endings that only streams have', () => {
  it.each([
    ['OpenAI', 'midstream'],
    ['Anthropic (event: error overloaded)', 'claude-midstream'],
  ])('%s failing mid-stream: the in-band error, usage estimated from the chunks seen', async (_provider, group) => {
    const ended = await run(group, true);
    expect(ended.outcome).toMatchObject({ status: 200, inBand: true });
    expect(ended.summary).toMatchObject({ status: 200, httpStatus: 200, committed: true, clientAborted: false });
    expect(ended.summary.errorType).toBe('upstream_error');
    expectEstimated(ended.summary, 'some');
    expectMetricMatches(ended, group);
  });

  it('a guardrail block while the upstream is still generating: estimated from all it sent, blocked text included', async () => {
    // The block comes in the second window, before the upstream's last chunk (and its usage) was read.
    const ended = await run('post-checked', true, { content: `${CLEAN_TEXT.repeat(2)} BLOCKME ${CLEAN_TEXT.repeat(4)}` });
    expect(ended.outcome).toMatchObject({ status: 200, inBand: true });
    expect(ended.outcome.text).not.toContain('BLOCKME');
    expect(ended.summary).toMatchObject({ status: 200, errorType: 'guardrail_violation', committed: true });
    expect(ended.summary.usage).toMatchObject({ estimated: true });
    // Counted from what the gateway received, not from the (shorter) text the client got.
    expect(ended.summary.usage!.completion_tokens * 4).toBeGreaterThan(ended.outcome.text.length + 'BLOCKME'.length);
    expectMetricMatches(ended, 'post-checked');
  });

  it('an idle timeout after commit: the in-band timeout, usage estimated from the first chunk', async () => {
    const ended = await run('stalls', true);
    expect(ended.outcome).toMatchObject({ status: 200, inBand: true });
    expect(ended.summary).toMatchObject({ status: 200, errorType: 'timeout', committed: true });
    expectEstimated(ended.summary, 'some');
    expectMetricMatches(ended, 'stalls');
  });
});

describe('usage on failures without streaming', () => {
  it.each([
    ['OpenAI', 'midstream'],
    ['Anthropic', 'claude-midstream'],
  ])('%s refusing the call (the same scenario is an HTTP error here): nothing generated, no usage', async (_provider, group) => {
    const ended = await run(group, false);
    expect(ended.outcome.status).toBeGreaterThanOrEqual(500);
    expect(ended.summary.usage).toBeUndefined();
    expect(ended.added).toEqual({});
  });

  it('a stall after the status line: the total timeout, usage estimated (prompt only)', async () => {
    const ended = await run('stalls', false);
    expect(ended.outcome.status).toBe(504);
    expect(ended.summary).toMatchObject({ status: 504, errorType: 'timeout' });
    expectEstimated(ended.summary, 'none');
    expectMetricMatches(ended, 'stalls');
  });
});
