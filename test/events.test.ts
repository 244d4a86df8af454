import { createGateway, silentLogger, type Gateway, type RequestSummary } from '../lib/index.js';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { chat } from './helpers/chat.js';
import { serve } from './helpers/express.js';
import type { RunningServer } from './helpers/http.js';

let mock: MockServer;
let server: RunningServer;
let gateway: Gateway;
const summaries: RequestSummary[] = [];
let started = 0;

beforeAll(async () => {
  mock = await startMockOpenAI();
  gateway = createGateway({
    models: [{ name: '*', deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: '*', apiKey: 'k' }] }],
    logger: silentLogger,
    events: {
      onRequestStart: () => {
        started++;
        throw new Error('a broken handler must not break the request');
      },
      onRequestEnd: (summary) => summaries.push(summary),
    },
  });
  server = await serve(gateway);
});
afterAll(async () => {
  await server.close();
  await gateway.close();
  await mock.close();
});

async function summaryOf(body: Record<string, unknown>, abortAfterMs?: number): Promise<RequestSummary> {
  const before = summaries.length;
  await chat(server.url, body, abortAfterMs === undefined ? {} : { abortAfterMs });
  for (let i = 0; i < 100 && summaries.length === before; i++) await new Promise((r) => setTimeout(r, 10));
  return summaries.at(-1)!;
}

describe('events: one summary per request, no text in it', () => {
  it.each([false, true])('a normal answer (stream: %p)', async (stream) => {
    const s = await summaryOf({ model: 'normal', stream, messages: [{ role: 'user', content: 'secret prompt' }] });
    expect(s).toMatchObject({ model: 'normal', stream, status: 200, errorType: undefined, clientAborted: false, committed: true });
    expect(s.timeToFirstByteMs).toBeGreaterThan(0);
    expect(s.durationMs).toBeGreaterThanOrEqual(s.timeToFirstByteMs!);
    expect(s.attempts).toHaveLength(1);
    expect(s.usage?.total_tokens).toBeGreaterThan(0);
    expect(JSON.stringify(s)).not.toContain('secret prompt');
    expect(started).toBeGreaterThan(0);
  });

  it.each([false, true])('a failure before commit (stream: %p) has its status and type', async (stream) => {
    const s = await summaryOf({ model: 'bad-request', stream, messages: [{ role: 'user', content: 'x' }] });
    expect(s).toMatchObject({ status: 400, errorType: 'invalid_request_error', clientAborted: false });
  });

  it('a failure after commit is a 200 with the in-band error type', async () => {
    const s = await summaryOf({ model: 'midstream-error', stream: true, messages: [{ role: 'user', content: 'x' }] });
    expect(s).toMatchObject({ status: 200, errorType: 'upstream_error', committed: true });
  });

  it('a client that leaves is reported as aborted', async () => {
    const s = await summaryOf({ model: 'slow:200', stream: true, messages: [{ role: 'user', content: 'x' }] }, 250);
    expect(s).toMatchObject({ clientAborted: true, errorType: 'client_disconnected' });
  });
});
