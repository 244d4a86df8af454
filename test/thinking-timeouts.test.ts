/**
 * Thinking and the first-token bound (issue 16): thinking is the model's output already, so a long thinking
 * phase meets `firstTokenMs` and the idle bound watches the gaps after it; the answer's text, when it comes,
 * commits the response as before. Through createGateway, a Messages client on a Bedrock Claude deployment
 * whose reasoning takes longer than `firstTokenMs` (mock deltas 60 ms apart, a 250 ms first-token bound).
 */
import Anthropic from '@anthropic-ai/sdk';
import { createGateway, silentLogger, type Gateway } from '../lib/index.js';
import { MOCK_BEDROCK_REASONING, startMockBedrock, type MockBedrock } from '../lib/testing/mock-bedrock.js';
import { EXPRESS_MAJOR, serve } from './helpers/express.js';
import type { RunningServer } from './helpers/http.js';

let bedrock: MockBedrock;
let server: RunningServer;
let gateway: Gateway;

beforeAll(async () => {
  bedrock = await startMockBedrock({ chunks: 8, chunkDelayMs: 60 });
  const deployment = (firstTokenMs: number) => ({
    provider: 'bedrock' as const,
    baseUrl: bedrock.url,
    model: 'anthropic.claude-sonnet-4',
    awsCredentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
    timeouts: { firstTokenMs, idleMs: 5_000 },
  });
  gateway = createGateway({
    models: [{ name: 'thinker', deployments: [deployment(250)] }],
    router: { retries: { maxRetries: 0 } },
    logger: silentLogger,
  });
  server = await serve(gateway);
});

afterAll(async () => {
  await server.close();
  await gateway.close();
  await bedrock.close();
});

describe(`thinking longer than firstTokenMs (Express ${EXPRESS_MAJOR})`, () => {
  const params = { model: 'thinker', max_tokens: 4096, thinking: { type: 'enabled' as const, budget_tokens: 2048 }, messages: [{ role: 'user' as const, content: 'Hi there' }] };

  it('streaming: no first-token timeout; the thinking block, then the text', async () => {
    const client = new Anthropic({ baseURL: server.url, apiKey: 'test', maxRetries: 0 });
    const started = performance.now();
    const message = await client.messages.stream(params).finalMessage();
    // The reasoning alone took longer than the 250 ms bound.
    expect(performance.now() - started).toBeGreaterThan(400);
    expect(message.content.map((block) => block.type)).toEqual(['thinking', 'text']);
    expect((message.content[0] as Anthropic.ThinkingBlock).thinking).toBe(MOCK_BEDROCK_REASONING);
    expect(message.stop_reason).toBe('end_turn');
    expect(bedrock.callCount()).toBe(1);
  });
});
