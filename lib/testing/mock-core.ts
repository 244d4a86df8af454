/**
 * The HTTP server, call log and scenario registry that the mock OpenAI and Anthropic servers share.
 * Plain `node:http` and minimal per-request work: the mocks are also the upstream of the benchmarks.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  NORMAL_SCENARIO,
  parseScenario,
  type MockFailureName,
  type Scenario,
  type ScenarioDefaults,
} from './mock-scenarios.js';

export interface MockProviderOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; `0` picks a free one. Default `0`. */
  port?: number;
  /** Appears in answers ("… mock answer from <name>.") and as `server.name`. Default `mock-openai` / `mock-anthropic`. */
  name?: string;
  /** Content chunks of a `normal`, `echo` or `slow` answer. Default `4`. */
  chunks?: number;
  /** Characters per chunk of a `long:<N>` answer. Default `64`. */
  chunkSize?: number;
  /** Delay between streamed chunks; a non-streamed answer waits for the whole "generation". Default `0`. */
  chunkDelayMs?: number;
  /** Delay between chunks for `slow` without an argument. Default `200`. */
  slowChunkDelayMs?: number;
  /** `Retry-After` of `rate-limit` without an argument. Default `1`. */
  retryAfterSeconds?: number;
  /** The only API key accepted (bearer token, `api-key` or `x-api-key`); others get the provider's 401. Default: any key. */
  requireAuth?: string;
  /** Scenario overrides per model, as with `server.setScenario()`; `reset()` returns to these. */
  scenarios?: Record<string, MockScenario | MockScenarioFn>;
  /** The call log keeps the newest `maxCallLog` calls (long benchmark runs); `callCount()` counts them all. Default `1000`. */
  maxCallLog?: number;
}

/** A scenario name (see `mock-scenarios.ts`), or one with its answer text, chunking or pacing changed. */
export type MockScenario = string | MockScenarioSpec;

export interface MockScenarioSpec {
  scenario: string;
  /** Answer text instead of the scenario's own (`normal`, `echo`, `long`, `slow`, `slow-headers`). */
  text?: string;
  chunks?: number;
  chunkDelayMs?: number;
}

/** Chooses the scenario per call, e.g. `({ callIndex }) => (callIndex === 0 ? 'error-503' : 'normal')`. */
export type MockScenarioFn = (request: MockScenarioRequest) => MockScenario;

export interface MockScenarioRequest {
  model: string | undefined;
  body: unknown;
  stream: boolean;
  /** Earlier calls for the same model since the last `reset()` (0 for the first). */
  callIndex: number;
}

export type MockApi = 'openai' | 'azure' | 'anthropic';
export type MockEndpoint = 'chat' | 'messages' | 'embeddings' | 'models' | 'unknown';

/** One request as the mock saw it. Updated in place while the response is in flight. */
export interface MockCall {
  /** 1-based number since the server started or was reset; also used in response ids. */
  seq: number;
  method: string;
  /** The path without the query string. */
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body; `undefined` when empty or not JSON. */
  body: unknown;
  api: MockApi;
  endpoint: MockEndpoint;
  /** `body.model`, or the deployment on Azure routes. */
  model: string | undefined;
  /** The scenario that was played (`normal` for an unknown name). */
  scenario: string;
  stream: boolean;
  /** The key the client sent: bearer token, Azure `api-key` or Anthropic `x-api-key`. */
  apiKey: string | undefined;
  /** Azure's `api-version` query parameter or Anthropic's `anthropic-version` header. */
  apiVersion: string | undefined;
  /** `Date.now()` when the request arrived. */
  receivedAt: number;
  /** When the status line went out, if it did. */
  respondedAt: number | undefined;
  status: number | undefined;
  /** When the whole response was written. */
  finishedAt: number | undefined;
  /** When the exchange ended, whether finished, abandoned by the client or dropped by the scenario. */
  closedAt: number | undefined;
  /** The client closed the connection before the response was complete. */
  clientAborted: boolean;
}

export interface MockServer {
  readonly name: string;
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  readonly url: string;
  readonly port: number;
  /** The newest calls (up to `maxCallLog`), oldest first. */
  readonly calls: readonly MockCall[];
  /** Calls since the last reset, for one model or all. */
  callCount(model?: string): number;
  /** Overrides the scenario of `model`; `undefined` removes the override. */
  setScenario(model: string, scenario: MockScenario | MockScenarioFn | undefined): void;
  /** Resolves with the first call, logged or future, that matches; re-checked whenever a call changes (e.g. closes). */
  waitForCall(predicate?: (call: MockCall) => boolean, timeoutMs?: number): Promise<MockCall>;
  /** Clears the call log and counters and restores the `scenarios` option. */
  reset(): void;
  /** Stops listening and destroys open connections, hung requests included. */
  close(): Promise<void>;
}

export interface MockSettings extends ScenarioDefaults {
  host: string;
  port: number;
  name: string;
  chunks: number;
  chunkSize: number;
  chunkDelayMs: number;
  requireAuth: string | undefined;
  maxCallLog: number;
}

export interface IncomingRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: unknown;
  /** The body was not empty but not JSON either. */
  bodyInvalid: boolean;
}

/** What a provider module tells the core about a request before it is logged. */
export interface RequestFacts {
  api: MockApi;
  endpoint: MockEndpoint;
  model: string | undefined;
  stream: boolean;
  apiKey: string | undefined;
  apiVersion: string | undefined;
}

export interface ResolvedScenario {
  name: string;
  scenario: Scenario;
  text: string | undefined;
  chunks: number;
  chunkDelayMs: number;
}

export interface ProviderDefinition {
  defaultName: string;
  midstreamFailure: MockFailureName;
  describe(request: IncomingRequest): RequestFacts;
  respond(exchange: MockExchange): void;
}

/** How a stream ends after its last batch: cleanly, by destroying the socket, or never. */
export type StreamEnding = 'end' | 'destroy' | 'hang';

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

/**
 * One request/response in flight. Every delayed step goes through `later()`, so closing the
 * exchange (client gone, server closing) cancels whatever was still to come.
 */
export class MockExchange {
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private destroyedByServer = false;

  constructor(
    readonly request: IncomingRequest,
    readonly call: MockCall,
    readonly resolved: ResolvedScenario,
    readonly settings: MockSettings,
    private readonly res: ServerResponse,
    private readonly onChange: () => void,
  ) {
    res.on('finish', () => {
      call.finishedAt = Date.now();
    });
    res.on('close', () => this.onClose());
  }

  /** Runs `step` after `ms` (at once for 0) unless the exchange has closed by then. */
  later(ms: number, step: () => void): void {
    if (ms <= 0) {
      step();
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) step();
    }, ms);
    this.timers.add(timer);
  }

  sendJson(status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    this.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
    this.res.end(text);
  }

  /** A 200 with a body the client cannot parse (declared length matches, so only the content is wrong). */
  sendMalformedJson(text: string): void {
    this.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    this.res.end(text);
  }

  /** Declares the full length of `text`, sends the first half, then destroys the socket. */
  sendTruncatedJson(text: string): void {
    this.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    this.writeThenDestroy(text.slice(0, Math.floor(text.length / 2)));
  }

  /** Sends the status line and headers, then nothing more (idle-timeout tests). */
  sendHeadersOnly(status: number, contentType: string): void {
    this.writeHead(status, { 'content-type': contentType });
    this.res.flushHeaders();
  }

  /** Streams SSE: each batch goes out in one write, `chunkDelayMs` apart, then the stream ends as told. */
  stream(batches: readonly string[], ending: StreamEnding): void {
    this.writeHead(200, SSE_HEADERS);
    const delay = this.resolved.chunkDelayMs;
    if (ending === 'end' && delay <= 0) {
      this.res.end(batches.join(''));
      return;
    }
    this.res.flushHeaders();
    const writeFrom = (index: number): void => {
      const batch = batches[index] ?? '';
      if (index < batches.length - 1) {
        this.res.write(batch);
        this.later(delay, () => writeFrom(index + 1));
      } else if (ending === 'end') this.res.end(batch);
      else if (ending === 'destroy') this.writeThenDestroy(batch);
      else this.res.write(batch);
    };
    writeFrom(0);
  }

  /** Node corks the socket for the current tick, so destroying right away would lose the data too. */
  private writeThenDestroy(text: string): void {
    this.res.write(text, () => {
      this.destroyedByServer = true;
      this.res.destroy();
    });
  }

  private writeHead(status: number, headers: Record<string, string>): void {
    this.res.writeHead(status, headers);
    this.call.status = status;
    this.call.respondedAt = Date.now();
    this.onChange();
  }

  private onClose(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.call.closedAt = Date.now();
    this.call.clientAborted = !this.res.writableFinished && !this.destroyedByServer;
    this.onChange();
  }
}

interface Waiter {
  predicate: (call: MockCall) => boolean;
  resolve: (call: MockCall) => void;
}

/** Starts a mock provider server; `startMockOpenAI` / `startMockAnthropic` pass their definition. */
export async function startMockServer(provider: ProviderDefinition, options: MockProviderOptions = {}): Promise<MockServer> {
  const settings = parseOptions(provider, options);
  const initialScenarios = Object.entries(options.scenarios ?? {});
  const overrides = new Map(initialScenarios);
  const calls: MockCall[] = [];
  const counts = new Map<string | undefined, number>();
  let total = 0;
  let waiters: Waiter[] = [];
  /** Bumped by `reset()`: calls from before it may still close, but must not satisfy a later `waitForCall`. */
  let generation = 0;

  const notify = (call: MockCall): void => {
    if (waiters.length === 0) return;
    const matched = waiters.filter((waiter) => waiter.predicate(call));
    if (matched.length === 0) return;
    waiters = waiters.filter((waiter) => !matched.includes(waiter));
    for (const waiter of matched) waiter.resolve(call);
  };

  const resolveScenario = (facts: RequestFacts, body: unknown, callIndex: number): ResolvedScenario => {
    const override = facts.model === undefined ? undefined : overrides.get(facts.model);
    const chosen =
      typeof override === 'function'
        ? override({ model: facts.model, body, stream: facts.stream, callIndex })
        : (override ?? facts.model ?? 'normal');
    const spec = typeof chosen === 'string' ? { scenario: chosen } : chosen;
    const scenario = parseScenario(spec.scenario, settings);
    const scenarioDelay = scenario?.kind === 'answer' ? scenario.chunkDelayMs : undefined;
    return {
      name: scenario === undefined ? 'normal' : spec.scenario,
      scenario: scenario ?? NORMAL_SCENARIO,
      text: spec.text,
      chunks: spec.chunks ?? settings.chunks,
      chunkDelayMs: spec.chunkDelayMs ?? scenarioDelay ?? settings.chunkDelayMs,
    };
  };

  const handle = (req: IncomingMessage, res: ServerResponse, receivedAt: number, raw: string): void => {
    const request = parseRequest(req, raw);
    const facts = provider.describe(request);
    const callIndex = counts.get(facts.model) ?? 0;
    counts.set(facts.model, callIndex + 1);
    const resolved = resolveScenario(facts, request.body, callIndex);
    const call: MockCall = {
      seq: ++total,
      method: request.method,
      path: request.path,
      query: Object.fromEntries(request.query),
      headers: request.headers,
      body: request.body,
      ...facts,
      scenario: resolved.name,
      receivedAt,
      respondedAt: undefined,
      status: undefined,
      finishedAt: undefined,
      closedAt: undefined,
      clientAborted: false,
    };
    if (calls.length >= settings.maxCallLog) calls.shift();
    calls.push(call);
    const born = generation;
    const exchange = new MockExchange(request, call, resolved, settings, res, () => {
      if (born === generation) notify(call);
    });
    notify(call);
    provider.respond(exchange);
  };

  const server = createServer((req, res) => {
    const receivedAt = Date.now();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      try {
        handle(req, res, receivedAt, chunks.length === 0 ? '' : Buffer.concat(chunks).toString('utf8'));
      } catch (error) {
        failRequest(res, error);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, settings.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;

  return {
    name: settings.name,
    url: `http://${host}:${port}`,
    port,
    calls,
    callCount: (model) => (model === undefined ? total : (counts.get(model) ?? 0)),
    setScenario(model, scenario) {
      if (scenario === undefined) overrides.delete(model);
      else overrides.set(model, scenario);
    },
    waitForCall(predicate = () => true, timeoutMs = 2000) {
      const logged = calls.find(predicate);
      if (logged !== undefined) return Promise.resolve(logged);
      return new Promise<MockCall>((resolve, reject) => {
        const waiter: Waiter = {
          predicate,
          resolve: (call) => {
            clearTimeout(timer);
            resolve(call);
          },
        };
        const timer = setTimeout(() => {
          waiters = waiters.filter((other) => other !== waiter);
          reject(new Error(`${settings.name}: no matching call within ${timeoutMs} ms (${calls.length} calls logged)`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    reset() {
      generation++;
      calls.length = 0;
      counts.clear();
      total = 0;
      overrides.clear();
      for (const [model, scenario] of initialScenarios) overrides.set(model, scenario);
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

/** A throwing scenario function must fail its own request, not crash the test process. */
function failRequest(res: ServerResponse, error: unknown): void {
  const message = `mock provider: ${error instanceof Error ? error.message : String(error)}`;
  if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type: 'mock_server_error', param: null, code: null } }));
}

function parseRequest(req: IncomingMessage, raw: string): IncomingRequest {
  const url = req.url ?? '/';
  const queryStart = url.indexOf('?');
  let body: unknown;
  let bodyInvalid = false;
  if (raw !== '') {
    try {
      body = JSON.parse(raw);
    } catch {
      bodyInvalid = true;
    }
  }
  return {
    method: req.method ?? 'GET',
    path: queryStart < 0 ? url : url.slice(0, queryStart),
    query: new URLSearchParams(queryStart < 0 ? '' : url.slice(queryStart + 1)),
    headers: req.headers,
    body,
    bodyInvalid,
  };
}

function parseOptions(provider: ProviderDefinition, options: MockProviderOptions): MockSettings {
  const settings: MockSettings = {
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    name: options.name ?? provider.defaultName,
    chunks: options.chunks ?? 4,
    chunkSize: options.chunkSize ?? 64,
    chunkDelayMs: options.chunkDelayMs ?? 0,
    slowChunkDelayMs: options.slowChunkDelayMs ?? 200,
    retryAfterSeconds: options.retryAfterSeconds ?? 1,
    requireAuth: options.requireAuth,
    maxCallLog: options.maxCallLog ?? 1000,
    midstreamFailure: provider.midstreamFailure,
  };
  requireInteger(settings, 'chunks', 1);
  requireInteger(settings, 'chunkSize', 1);
  requireInteger(settings, 'maxCallLog', 1);
  requireInteger(settings, 'chunkDelayMs', 0);
  requireInteger(settings, 'slowChunkDelayMs', 0);
  requireInteger(settings, 'retryAfterSeconds', 0);
  return settings;
}

type IntegerSetting = 'chunks' | 'chunkSize' | 'maxCallLog' | 'chunkDelayMs' | 'slowChunkDelayMs' | 'retryAfterSeconds';

function requireInteger(settings: MockSettings, field: IntegerSetting, min: number): void {
  const value = settings[field];
  if (!Number.isInteger(value) || value < min) {
    throw new TypeError(`Mock provider option \`${field}\` must be an integer >= ${min}, got ${String(value)}.`);
  }
}
