/**
 * The gateway the tracing tests (diagnostics channels, OpenTelemetry) run against: `createGateway` over
 * 127.0.0.1 with the mock providers and the Bedrock ApplyGuardrail emulator, one model group per case the
 * issue names: a plain answer, a retry, a content-policy fallback, a guardrail block after commit, a client
 * abort. Each case is played through `play`, which waits for the request's summary (the channels' request
 * end comes with it).
 */
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { createGateway, silentLogger, type Gateway, type GatewayOptions, type RequestSummary } from '../../lib/index.js';
import { startBedrockEmulator, startMockAnthropic, startMockOpenAI, type BedrockEmulator, type MockServer } from '../../lib/testing/index.js';
import { chat, type ChatOutcome } from './chat.js';
import { createApp } from './express.js';
import { listen, type RunningServer } from './http.js';

/** Words that appear only in the prompts: none may show up in a trace. */
export const PROMPT = 'Zanzibar quokka marmalade: tell me about the weather, please.';
/** Clean enough to pass the guardrail, long enough to fill the first output window (and commit). */
export const CLEAN_TEXT = 'The sky over the harbour was clear and calm all morning, with a light breeze from the west. '.repeat(3);
export const BLOCKED_PROMPT = `${CLEAN_TEXT}and then BLOCKME.`;
/** Keys the deployments use: none may show up in a trace either. */
export const OPENAI_KEY = 'sk-trace-test-openai-4f1c9a';
export const ANTHROPIC_KEY = 'sk-ant-trace-test-77d0e2';

export type Case = 'plain' | 'retry' | 'policy' | 'guarded' | 'abort';
export const CASES: Case[] = ['plain', 'retry', 'policy', 'guarded', 'abort'];

export interface TracedGateway {
  openai: MockServer;
  anthropic: MockServer;
  url: string;
  close(): Promise<void>;
}

export interface Played {
  requestId: string;
  outcome: ChatOutcome;
  summary: RequestSummary;
}

const summaries = new Map<string, RequestSummary>();

/** `host`: a middleware mounted before the gateway (the app's own, e.g. one making a span active). */
export async function startTracedGateway(
  host?: RequestHandler,
): Promise<TracedGateway & { play(kase: Case, stream: boolean, headers?: Record<string, string>): Promise<Played> }> {
  // Small chunks: a clean first output window is released (and commits) before the blocked one arrives.
  const [openai, anthropic, emulator]: [MockServer, MockServer, BedrockEmulator] = await Promise.all([
    startMockOpenAI({ chunks: 24 }),
    startMockAnthropic(),
    startBedrockEmulator(),
  ]);
  const openaiDeployment = (id: string, model: string) => ({ id, provider: 'openai' as const, baseUrl: `${openai.url}/v1`, model, apiKey: OPENAI_KEY });
  const models: GatewayOptions['models'] = [
    { name: 'plain', deployments: [openaiDeployment('plain-a', 'normal')] },
    // Ordered: the failing deployment first, then the retry on the healthy one.
    { name: 'retry', deployments: [openaiDeployment('retry-a', 'error-503'), openaiDeployment('retry-b', 'normal')] },
    // Streaming: the refusal is the stream's first event (HTTP 200); without streaming, a 400.
    { name: 'policy', deployments: [openaiDeployment('policy-a', 'stream-error:content-policy')] },
    { name: 'backup', deployments: [{ id: 'backup-a', provider: 'anthropic', baseUrl: anthropic.url, model: 'normal', apiKey: ANTHROPIC_KEY }] },
    { name: 'guarded', deployments: [openaiDeployment('guarded-a', 'echo')] },
    { name: 'abort', deployments: [openaiDeployment('abort-a', 'slow:200')] },
  ];
  const gateway: Gateway = createGateway({
    models,
    router: { strategy: 'ordered', retries: { maxRetries: 1, backoff: { initialMs: 5, maxMs: 10 } }, cooldown: { failureThreshold: 1000 } },
    fallbacks: { contentPolicy: { policy: ['backup'] } },
    guardrails: [
      {
        name: 'bedrock-guard',
        guardrailIdentifier: 'gr1default',
        guardrailVersion: '1',
        region: 'us-east-1',
        endpoint: emulator.url,
        credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
        maxAttempts: 1,
        hooks: ['post_call'],
        groups: ['guarded'],
        onIntervention: 'block',
        streaming: { mode: 'window', windowSize: 200, overlap: 20 },
      },
    ],
    logger: silentLogger,
    events: { onRequestEnd: (s) => summaries.set(s.requestId, s) },
  });
  const app = createApp();
  if (host) app.use(host);
  app.use(gateway);
  const server: RunningServer = await listen(app);

  async function play(kase: Case, stream: boolean, headers: Record<string, string> = {}): Promise<Played> {
    const requestId = randomUUID();
    const outcome = await chat(
      server.url,
      { model: kase, stream, messages: [{ role: 'user', content: kase === 'guarded' ? BLOCKED_PROMPT : PROMPT }] },
      { headers: { ...headers, 'x-request-id': requestId }, ...(kase === 'abort' ? { abortAfterMs: 250 } : {}) },
    );
    for (let i = 0; i < 300 && !summaries.has(requestId); i++) await new Promise((r) => setTimeout(r, 10));
    const summary = summaries.get(requestId);
    if (!summary) throw new Error(`no summary for ${kase} (stream: ${stream})`);
    return { requestId, outcome, summary };
  }

  return {
    openai,
    anthropic,
    url: server.url,
    play,
    close: async () => {
      await server.close();
      await gateway.close();
      await Promise.all([openai.close(), anthropic.close(), emulator.close()]);
    },
  };
}
