/**
 * `OTEL=console npm start` (issue 15): the example server prints the gateway's spans, so a newcomer sees one
 * trace of a fallback chain: the `flaky` group's failed attempt, its retry and the fallback that answers,
 * each a CLIENT span under the request's span, all in one trace. A wrong OTEL value stops the server at
 * start-up with a clear message.
 */
import { rawRequest } from './helpers/http.js';
import { spawnExampleServer, startExampleServer, waitForOutput, type ExampleServer } from './helpers/example-server.js';

interface PrintedSpan {
  name: string;
  traceId: string;
  id: string;
  parentId: string | undefined;
  kind: number;
  errorType: string | undefined;
}

/** The spans `ConsoleSpanExporter` printed (`console.dir` of one object per span, top-level keys indented by 2). */
function printedSpans(stdout: string): PrintedSpan[] {
  return stdout
    .split(/\n(?=\{\n)/)
    .filter((block) => /^ {2}traceId: /m.test(block))
    .map((block) => ({
      name: /^ {2}name: '([^']+)'/m.exec(block)![1]!,
      traceId: /^ {2}traceId: '(\w+)'/m.exec(block)![1]!,
      id: /^ {2}id: '(\w+)'/m.exec(block)![1]!,
      parentId: /parentSpanContext: \{[^}]*spanId: '(\w+)'/.exec(block)?.[1],
      kind: Number(/^ {2}kind: (\d)/m.exec(block)![1]),
      errorType: /'error\.type': '([^']+)'/.exec(block)?.[1],
    }));
}

let server: ExampleServer;

beforeAll(async () => {
  server = await startExampleServer({ OTEL: 'console' });
});

afterAll(async () => {
  await server.kill();
});

it('prints one trace for a request that is retried and then falls back', async () => {
  const res = await rawRequest(server.url, { body: { model: 'flaky', messages: [{ role: 'user', content: 'Say hello' }] } });
  expect(res.status).toBe(200);
  await waitForOutput(server, /^ {2}name: 'chat flaky'/m);
  const spans = printedSpans(server.stdout());
  const request = spans.find((s) => s.name === 'chat flaky')!;
  const trace = spans.filter((s) => s.traceId === request.traceId);
  expect(trace.map((s) => s.name)).toEqual(['chat error-500', 'chat error-500', 'chat gpt-4o-mini', 'chat flaky']);
  expect(request.kind).toBe(1); // SERVER: no HTTP instrumentation in the example server
  expect(request.parentId).toBeUndefined();
  for (const attempt of trace.slice(0, 3)) {
    expect(attempt.kind).toBe(2); // CLIENT
    expect(attempt.parentId).toBe(request.id);
  }
  expect(trace.map((s) => s.errorType)).toEqual(['upstream_error', 'upstream_error', undefined, undefined]);
  // The prompt is nowhere in the output.
  expect(server.stdout()).not.toContain('Say hello');
});

it('refuses an OTEL value it does not know', async () => {
  const child = spawnExampleServer({ OTEL: 'otlp' });
  expect(await child.exited).not.toBe(0);
  expect(child.stderr()).toContain("OTEL must be 'console'");
});
