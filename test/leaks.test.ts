/**
 * Secrets never leave (invariant 8), against hostile upstreams: every provider family answers with error
 * messages that echo the key it received, every credential the gateway was configured with, a DSN with a
 * password, internal addresses and stack frames, before the first byte (an error status) and after it (an
 * in-band error event mid-stream). Neither the client, in either mode, nor any log line sees any of it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { fromUtf8, toUtf8 } from '@smithy/core/serde';
import { createGateway, type Gateway, type Logger } from '../lib/index.js';
import { chat } from './helpers/chat.js';
import { EXPRESS_MAJOR, serve } from './helpers/express.js';
import { listen, type RunningServer } from './helpers/http.js';

const SECRETS = {
  openai: 'plainSecretToken42xyz',
  azure: '0f1e2d3c4b5a69788796a5b4c3d2e1f0',
  anthropic: 'sk-ant-api03-Zq9LeakyAnthropicKey_0123456789',
  awsSecret: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYLEAKYKEY',
  awsSession: 'IQoJb3JpZ2luX2VjEL3//////////wEaCXVzLWVhc3QtMSJH',
  header: 'tenant-token-5f4e3d2c1b',
};
const DSN = 'postgres://admin:hunter2@db.internal:5432/prod';
const FORBIDDEN = [...Object.values(SECRETS), 'hunter2', 'db.internal', '10.0.3.4', '/srv/upstream/app.js', 'Object.<anonymous>'];

let upstream: RunningServer;
const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** What a careless upstream puts in its error messages. */
function leakyMessage(req: IncomingMessage): string {
  const received = String(req.headers['authorization'] ?? req.headers['api-key'] ?? req.headers['x-api-key'] ?? '');
  return [
    `upstream failed for ${received} (also known: ${Object.values(SECRETS).join(', ')})`,
    `while talking to ${DSN} and 10.0.3.4:8000 from 127.0.0.1:${upstream.port}`,
    '    at Object.<anonymous> (/srv/upstream/app.js:12:34)',
    '    at Module._compile (node:internal/modules/cjs/loader:1105:14)',
  ].join('\n');
}

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>));
  });
}

async function hostile(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '';
  const body = await readBody(req);
  const message = leakyMessage(req);
  if (url.startsWith('/model/')) return bedrock(url, message, res);
  const stream = body['stream'] === true;
  const midstream = String(body['model'] ?? url).includes('midstream') || url.includes('midstream');
  if (url.startsWith('/v1/messages')) {
    if (!stream || !midstream) return json(res, 500, { type: 'error', error: { type: 'api_error', message } });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const event = (name: string, data: object): void => void res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
    event('message_start', { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], usage: { input_tokens: 3, output_tokens: 0 } } });
    event('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Partial ' } });
    event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'answer ' } });
    event('error', { type: 'error', error: { type: 'overloaded_error', message } });
    res.end();
    return;
  }
  if (!stream || !midstream) return json(res, 500, { error: { message, type: 'server_error', code: null } });
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const chunk = (delta: object): string => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
  res.write(chunk({ role: 'assistant', content: 'Partial ' }) + chunk({ content: 'answer ' }));
  res.end(`data: ${JSON.stringify({ error: { message, type: 'server_error' } })}\n\n`);
}

function bedrock(url: string, message: string, res: ServerResponse): void {
  if (!url.includes('midstream') || !url.endsWith('/converse-stream')) {
    const text = JSON.stringify({ message });
    res.writeHead(500, { 'content-type': 'application/json', 'x-amzn-errortype': 'InternalServerException:http://internal.amazon.com/coral/com.amazon.bedrock/' });
    res.end(text);
    return;
  }
  const header = (value: string) => ({ type: 'string' as const, value });
  const event = (type: string, payload: object): Uint8Array =>
    codec.encode({ headers: { ':event-type': header(type), ':content-type': header('application/json'), ':message-type': header('event') }, body: fromUtf8(JSON.stringify(payload)) });
  res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
  res.write(event('messageStart', { role: 'assistant' }));
  res.write(event('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Partial ' } }));
  res.write(event('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'answer ' } }));
  res.end(
    codec.encode({
      headers: { ':exception-type': header('internalServerException'), ':content-type': header('application/json'), ':message-type': header('exception') },
      body: fromUtf8(JSON.stringify({ message })),
    }),
  );
}

function json(res: ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

interface Captured {
  logger: Logger;
  text: () => string;
}

function captureAllLevels(): Captured {
  const lines: unknown[] = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj, msg });
  };
  return {
    logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
    text: () => JSON.stringify(lines, (_key, value: unknown) => (value instanceof Error ? { message: value.message, stack: value.stack } : value)),
  };
}

let server: RunningServer;
let gateway: Gateway;
const logs = captureAllLevels();

beforeAll(async () => {
  upstream = await listen((req, res) => void hostile(req, res));
  const headers = { 'x-tenant-token': SECRETS.header };
  const aws = { accessKeyId: 'AKIDLEAKTEST', secretAccessKey: SECRETS.awsSecret, sessionToken: SECRETS.awsSession };
  gateway = createGateway({
    models: [
      { name: 'openai', deployments: [{ provider: 'openai', baseUrl: `${upstream.url}/v1`, model: 'fail', apiKey: SECRETS.openai, headers }] },
      { name: 'openai-midstream', deployments: [{ provider: 'openai', baseUrl: `${upstream.url}/v1`, model: 'midstream', apiKey: SECRETS.openai }] },
      { name: 'azure', deployments: [{ provider: 'azure', baseUrl: upstream.url, model: 'fail', apiKey: SECRETS.azure }] },
      { name: 'azure-midstream', deployments: [{ provider: 'azure', baseUrl: upstream.url, model: 'midstream', apiKey: SECRETS.azure }] },
      { name: 'anthropic', deployments: [{ provider: 'anthropic', baseUrl: upstream.url, model: 'fail', apiKey: SECRETS.anthropic }] },
      { name: 'anthropic-midstream', deployments: [{ provider: 'anthropic', baseUrl: upstream.url, model: 'midstream', apiKey: SECRETS.anthropic }] },
      { name: 'bedrock', deployments: [{ provider: 'bedrock', baseUrl: upstream.url, region: 'us-east-1', model: 'fail', awsCredentials: aws }] },
      { name: 'bedrock-midstream', deployments: [{ provider: 'bedrock', baseUrl: upstream.url, region: 'us-east-1', model: 'midstream', awsCredentials: aws }] },
    ],
    router: { retries: { maxRetries: 0 } },
    logger: logs.logger,
  });
  server = await serve(gateway);
});
afterAll(async () => {
  await server.close();
  await gateway.close();
  await upstream.close();
});

function expectNothingLeaked(text: string): void {
  for (const secret of [...FORBIDDEN, `127.0.0.1:${upstream.port}`]) expect(text).not.toContain(secret);
}

describe(`hostile upstreams (Express ${EXPRESS_MAJOR})`, () => {
  for (const provider of ['openai', 'azure', 'anthropic', 'bedrock']) {
    it(`${provider}: an error before the first byte reaches the client redacted, the same in both modes`, async () => {
      const ask = { model: provider, messages: [{ role: 'user', content: 'hello' }] };
      const plain = await chat(server.url, { ...ask, stream: false });
      const streamed = await chat(server.url, { ...ask, stream: true });
      expect(plain.status).toBeGreaterThanOrEqual(500);
      expect(streamed.status).toBe(plain.status);
      expect(streamed.error).toEqual(plain.error);
      for (const outcome of [plain, streamed]) {
        expectNothingLeaked(JSON.stringify(outcome.error) + JSON.stringify(outcome.headers));
        expect(String(outcome.error?.['message'])).toMatch(/\[redacted\]/);
      }
    });

    it(`${provider}: an in-band error after the first byte reaches the client redacted`, async () => {
      const outcome = await chat(server.url, { model: `${provider}-midstream`, messages: [{ role: 'user', content: 'hello' }], stream: true });
      expect(outcome.status).toBe(200);
      expect(outcome.inBand).toBe(true);
      expect(outcome.frames.at(-1)).toBe('[DONE]');
      expectNothingLeaked(outcome.frames.join('\n'));
    });
  }

  it('no log line of the whole run holds a secret, an internal address or an upstream stack frame', () => {
    const text = logs.text();
    expect(text.length).toBeGreaterThan(0);
    expectNothingLeaked(text);
  });
});
