/**
 * A 10 MB request to the example server's guarded group (issue 12): answered at once with the size error in
 * the gateway's shape, never a guardrail call over the whole text, and the server stays responsive.
 */
import { rawRequest } from './helpers/http.js';
import { startExampleServer, type ExampleServer } from './helpers/example-server.js';

let server: ExampleServer;

beforeAll(async () => {
  server = await startExampleServer();
}, 30_000);
afterAll(() => server.kill());

describe('the example server under a 10 MB request', () => {
  it.each([false, true])('stream: %s — a 413 within two seconds while /health keeps answering', async (stream) => {
    const body = { model: 'guarded', stream, messages: [{ role: 'user', content: `hello ${'a@b.example '.repeat(800_000)}` }] };
    const started = Date.now();
    const big = rawRequest(server.url, { body });
    const health = await rawRequest(server.url, { method: 'GET', path: '/health' });
    expect(health.status).toBe(200);
    const res = await big;
    const elapsed = Date.now() - started;
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text)).toMatchObject({ error: { code: 413, type: 'invalid_request_error' } });
    expect(elapsed).toBeLessThan(2_000);
    expect((await rawRequest(server.url, { method: 'GET', path: '/health' })).status).toBe(200);
  }, 20_000);
});
