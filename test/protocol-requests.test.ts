/**
 * Issue 16: every error a request can meet before the pipeline runs (a body that is not JSON, a field the
 * protocol refuses, another method, an unknown model, a server draining) is answered in the protocol of the
 * path it came to, with the same status, `x-should-retry` and message as on the chat path, whether the
 * gateway read the body itself or `express.json()` did before it.
 */
import { express } from './helpers/express.js';
import { createGateway, silentLogger, type Gateway } from '../lib/index.js';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, rawRequest, type RunningServer } from './helpers/http.js';
import { PROTOCOL_PATHS, WIRE_PROTOCOLS, protocolBody, type WireProtocol } from './helpers/protocols.js';

let mock: MockServer;
beforeAll(async () => {
  mock = await startMockOpenAI({ name: 'mock' });
});
afterAll(() => mock.close());

async function app(withJsonParser: boolean): Promise<{ server: RunningServer; gateway: Gateway }> {
  const gateway = createGateway({ models: [{ name: 'normal', deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: 'normal', apiKey: 'k' }] }], logger: silentLogger });
  const host = createApp();
  if (withJsonParser) host.use(express.json());
  host.use(gateway);
  return { server: await listen(host), gateway };
}

/** The error of a JSON answer in the protocol's shape, checked strictly, as `{ type, message }`. */
function protocolError(protocol: WireProtocol, text: string): { type: unknown; message: unknown } {
  const json = JSON.parse(text) as Record<string, unknown>;
  const error = json['error'] as Record<string, unknown>;
  if (protocol === 'messages') {
    expect(json['type']).toBe('error');
    expect(Object.keys(error).sort()).toEqual(['message', 'type']);
  } else {
    expect(Object.keys(json)).toEqual(['error']);
    expect(error['code']).toEqual(expect.any(Number));
  }
  return { type: error['type'], message: error['message'] };
}

describe(`requests refused before the pipeline, in every protocol (Express ${EXPRESS_MAJOR})`, () => {
  describe.each([false, true])('with express.json() before the gateway: %s', (withJsonParser) => {
    let server: RunningServer;
    let gateway: Gateway;
    beforeAll(async () => ({ server, gateway } = await app(withJsonParser)));
    afterAll(async () => {
      await server.close();
      await gateway.close();
    });

    it.each(WIRE_PROTOCOLS)('%s: a body that is not JSON is a 400 in the protocol shape', async (protocol) => {
      const res = await rawRequest(server.url, { path: PROTOCOL_PATHS[protocol], body: '{"model": "normal",' });
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      const error = protocolError(protocol, res.text);
      expect(error.type).toBe('invalid_request_error');
      expect(error.message).toMatch(/JSON/);
    });
  });

  describe('one gateway', () => {
    let server: RunningServer;
    let gateway: Gateway;
    beforeAll(async () => ({ server, gateway } = await app(false)));
    afterAll(async () => {
      await server.close();
      await gateway.close();
    });

    it.each<[WireProtocol, Record<string, unknown>, RegExp]>([
      ['chat', { model: 'normal', messages: [{ role: 'wizard', content: 'hi' }] }, /messages\[0\]\.role/],
      ['responses', { model: 'normal', input: 'hi', previous_response_id: 'resp_1' }, /previous_response_id/],
      ['responses', { model: 'normal', input: 'hi', tools: [{ type: 'web_search' }] }, /tools\[0\]/],
      ['messages', { model: 'normal', messages: [{ role: 'user', content: 'hi' }] }, /max_tokens/],
      ['messages', { model: 'normal', max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', data: 'x', media_type: 'text/plain' } }] }] }, /messages\[0\]\.content\[0\]/],
    ])('%s: a field the protocol refuses is a 400 naming it, in both modes (%j)', async (protocol, body, message) => {
      for (const stream of [false, true]) {
        const res = await rawRequest(server.url, { path: PROTOCOL_PATHS[protocol], body: { ...body, stream } });
        expect({ stream, status: res.status }).toEqual({ stream, status: 400 });
        const error = protocolError(protocol, res.text);
        expect(error.type).toBe('invalid_request_error');
        expect(error.message).toMatch(message);
        expect(res.headers['x-should-retry']).toBe('false');
      }
      expect(mock.callCount()).toBe(0);
    });

    it.each(WIRE_PROTOCOLS)('%s: another method is a 405 with Allow, in the protocol shape', async (protocol) => {
      const res = await rawRequest(server.url, { path: PROTOCOL_PATHS[protocol], method: 'GET' });
      expect(res.status).toBe(405);
      expect(res.headers['allow']).toBe('POST');
      expect(protocolError(protocol, res.text).type).toBe('invalid_request_error');
    });

    it.each(WIRE_PROTOCOLS)('%s: an unknown model is a 404 in the protocol shape, the same message as chat, in both modes', async (protocol) => {
      const messages: string[] = [];
      for (const stream of [false, true]) {
        const res = await rawRequest(server.url, { path: PROTOCOL_PATHS[protocol], body: protocolBody(protocol, { model: 'nope', messages: [{ role: 'user', content: 'hi' }], stream }) });
        expect(res.status).toBe(404);
        const error = protocolError(protocol, res.text);
        expect(error.type).toBe('not_found_error');
        messages.push(String(error.message));
      }
      expect(messages[1]).toBe(messages[0]);
      expect(messages[0]).toMatch(/nope/);
    });
  });

  it.each(WIRE_PROTOCOLS)('%s: a draining gateway answers new requests with a 503 to retry elsewhere, in the protocol shape', async (protocol) => {
    const { server, gateway } = await app(false);
    try {
      await gateway.drain(0);
      const res = await rawRequest(server.url, { path: PROTOCOL_PATHS[protocol], body: protocolBody(protocol, { model: 'normal', messages: [{ role: 'user', content: 'hi' }], stream: true }) });
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.headers['x-should-retry']).toBe('true');
      expect(protocolError(protocol, res.text).type).toBe(protocol === 'messages' ? 'overloaded_error' : 'service_unavailable');
    } finally {
      await server.close();
      await gateway.close();
    }
  });
});
