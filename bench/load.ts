/**
 * Load generation and client-side timing.
 *
 * - `runLoad()`: closed-loop load at N connections for a fixed time, with wrk (Debian's `wrk`, one
 *   thread, whole seconds only; the default when installed) or autocannon (in this process). Both report
 *   req/s and latency percentiles; autocannon's latencies have 1 ms resolution, wrk's 1 µs. Socket errors
 *   and non-2xx answers are counted and shown beside req/s.
 * - `timedLoop()`: one keep-alive connection, requests one after another, each timed with
 *   `performance.now()`: time to first byte (autocannon does not report it), full latency with µs
 *   resolution, and optionally the time until the answer carried more than N characters of content.
 * - `checkAnswer()`: one request, parsed, to make sure a target really answers what the mock sent.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { Client } from 'undici';
import { type BenchProtocol, CHAT_PATH, PROTOCOL_PATHS, REQUEST_HEADERS } from './workload.js';

/** Whether a stream ended normally in each protocol: its terminal event is the last one. */
const STREAM_COMPLETE: Readonly<Record<BenchProtocol, (raw: string) => boolean>> = {
  chat: (raw) => raw.endsWith('data: [DONE]\n\n'),
  responses: (raw) => /(^|\n\n)event: response\.completed\ndata: [^\n]*\n\n$/.test(raw),
  messages: (raw) => raw.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n'),
};

/** The text of a whole (non-streaming) answer in `protocol`. */
function answerText(json: Record<string, unknown>, protocol: BenchProtocol): string {
  if (protocol === 'responses') {
    const output = (json['output'] ?? []) as { type: string; content?: { type: string; text?: string }[] }[];
    return output.flatMap((item) => (item.type === 'message' ? (item.content ?? []) : [])).map((part) => part.text ?? '').join('');
  }
  if (protocol === 'messages') return ((json['content'] ?? []) as { type: string; text?: string }[]).map((block) => block.text ?? '').join('');
  return (json as { choices?: { message?: { content?: string } }[] }).choices?.[0]?.message?.content ?? '';
}

export type LoaderName = 'wrk' | 'autocannon';

export interface LoadOptions {
  /** The target's origin, e.g. `http://127.0.0.1:40000`. */
  origin: string;
  body: string;
  connections: number;
  durationS: number;
  warmupS: number;
  loader: LoaderName;
  /** The request path. @default the chat-completions path */
  path?: string;
}

export interface LoadResult {
  tool: LoaderName;
  connections: number;
  durationS: number;
  requests: number;
  reqPerSec: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMeanMs: number;
  /** Socket errors and timeouts. */
  errors: number;
  non2xx: number;
}

export function wrkAvailable(): boolean {
  return spawnSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' }).status === 0;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const run = options.loader === 'wrk' ? runWrk : runAutocannon;
  if (options.warmupS > 0) await run({ ...options, durationS: options.warmupS });
  return run(options);
}

async function runAutocannon(options: LoadOptions): Promise<LoadResult> {
  const result = await autocannon({
    url: options.origin + (options.path ?? CHAT_PATH),
    method: 'POST',
    headers: REQUEST_HEADERS,
    body: options.body,
    connections: options.connections,
    pipelining: 1,
    duration: options.durationS,
    timeout: 10,
  });
  const durationS = result.duration > 0 ? result.duration : options.durationS;
  return {
    tool: 'autocannon',
    connections: options.connections,
    durationS,
    requests: result.requests.total,
    reqPerSec: result.requests.total / durationS,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    latencyMeanMs: result.latency.mean,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

/**
 * wrk, one thread, with a Lua script that sets the POST body and headers and prints the summary as one
 * JSON line from `done()` (latency percentiles in µs from wrk's own histogram, every error class). wrk
 * parses every response with its HTTP parser (chunked SSE included): a request counts when its whole body
 * has been read, so req/s and latency cover the full stream, on keep-alive connections.
 */
async function runWrk(options: LoadOptions): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'llm-gateway-bench-'));
  try {
    const script = join(dir, 'post.lua');
    writeFileSync(script, wrkScript(options.body));
    // wrk takes whole seconds only.
    const args = ['-t1', `-c${options.connections}`, `-d${Math.max(1, Math.round(options.durationS))}s`, '--timeout', '10s', '-s', script, options.origin + (options.path ?? CHAT_PATH)];
    const output = await capture('wrk', args);
    return parseWrk(output, options);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const WRK_RESULT_MARK = 'WRK_RESULT ';

/** The Lua script: POST with the bench headers and body; `done()` prints the summary as one JSON line. */
export function wrkScript(body: string): string {
  const headers = Object.entries(REQUEST_HEADERS).map(([name, value]) => `wrk.headers[${luaString(name)}] = ${luaString(value)}`);
  return [
    'wrk.method = "POST"',
    `wrk.body = ${luaString(body)}`,
    ...headers,
    'function done(summary, latency, requests)',
    '  local e = summary.errors',
    `  io.write(string.format('${WRK_RESULT_MARK}{"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"meanUs":%f,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}\\n',`,
    '    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean, e.connect, e.read, e.write, e.timeout, e.status))',
    'end',
    '',
  ].join('\n');
}

/**
 * A Lua long string. Spaces around it: `t[[==[x]==]]` would open a long string at `[[`, which is how an
 * earlier version of this script failed to parse; wrk then printed a Lua error on stderr, exited 0 and
 * sent plain GETs (every answer a 404, counted as errors), which made wrk look broken in this sandbox.
 */
function luaString(text: string): string {
  if (text.includes(']==]')) throw new Error('wrk script: text contains ]==]');
  return ` [==[${text}]==] `;
}

function capture(command: string, args: string[]): Promise<string> {
  return new Promise((resolveOutput, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolveOutput(out) : reject(new Error(`${command} exited with ${code}: ${out}`))));
  });
}

/** Reads the JSON line the script's `done()` printed; anything else (a Lua error) breaks the run. */
export function parseWrk(output: string, options: Pick<LoadOptions, 'connections' | 'durationS'>): LoadResult {
  const line = output.split('\n').find((l) => l.startsWith(WRK_RESULT_MARK));
  if (line === undefined || /\.lua:\d+:/.test(output)) throw new Error(`wrk: no result line (script error?): ${output.slice(0, 500)}`);
  const r = JSON.parse(line.slice(WRK_RESULT_MARK.length)) as Record<string, number>;
  const durationS = r.durationUs! / 1e6;
  return {
    tool: 'wrk',
    connections: options.connections,
    durationS: durationS > 0 ? durationS : options.durationS,
    requests: r.requests!,
    reqPerSec: r.requests! / (durationS > 0 ? durationS : options.durationS),
    latencyP50Ms: r.p50Us! / 1000,
    latencyP99Ms: r.p99Us! / 1000,
    latencyMeanMs: r.meanUs! / 1000,
    errors: r.connect! + r.read! + r.write! + r.timeout!,
    non2xx: r.status!,
  };
}

export interface TimedOptions {
  origin: string;
  body: string;
  /** Upper bounds: the loop stops at whichever comes first. */
  requests: number;
  maxSeconds: number;
  /** Untimed requests first (connection set up, JIT). */
  warmupRequests: number;
  /** Also time when the answer's content first exceeds this many characters (streams only). */
  contentChars?: number;
  /** The request path. @default the chat-completions path */
  path?: string;
}

export interface TimedResult {
  requests: number;
  reqPerSec: number;
  ttfbP50Ms: number;
  ttfbP99Ms: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMeanMs: number;
  /** With `contentChars`: p50 time until that much content had arrived. */
  contentP50Ms: number | undefined;
  errors: number;
}

/** Sequential requests over one keep-alive connection, each timed from send to first byte and to end. */
export async function timedLoop(options: TimedOptions): Promise<TimedResult> {
  const client = new Client(options.origin, { pipelining: 1, keepAliveTimeout: 10_000 });
  const ttfb: number[] = [];
  const total: number[] = [];
  const content: number[] = [];
  let errors = 0;
  try {
    for (let i = 0; i < options.warmupRequests; i++) await timedRequest(client, options);
    const started = performance.now();
    const deadline = started + options.maxSeconds * 1000;
    while (total.length + errors < options.requests && performance.now() < deadline) {
      const timing = await timedRequest(client, options);
      if (timing === undefined) {
        errors++;
        continue;
      }
      ttfb.push(timing.ttfb);
      total.push(timing.total);
      if (timing.content !== undefined) content.push(timing.content);
    }
    const elapsedS = (performance.now() - started) / 1000;
    return {
      requests: total.length,
      reqPerSec: total.length / elapsedS,
      ttfbP50Ms: percentile(ttfb, 50),
      ttfbP99Ms: percentile(ttfb, 99),
      latencyP50Ms: percentile(total, 50),
      latencyP99Ms: percentile(total, 99),
      latencyMeanMs: total.reduce((a, b) => a + b, 0) / Math.max(1, total.length),
      contentP50Ms: options.contentChars === undefined ? undefined : percentile(content, 50),
      errors,
    };
  } finally {
    await client.close();
  }
}

interface Timing {
  ttfb: number;
  total: number;
  content: number | undefined;
}

async function timedRequest(client: Client, options: TimedOptions): Promise<Timing | undefined> {
  const start = performance.now();
  let first: number | undefined;
  let contentAt: number | undefined;
  const counter = options.contentChars === undefined ? undefined : new ContentCounter();
  try {
    const { statusCode, body } = await client.request({ path: options.path ?? CHAT_PATH, method: 'POST', headers: REQUEST_HEADERS, body: options.body });
    for await (const chunk of body as AsyncIterable<Buffer>) {
      first ??= performance.now();
      if (counter && contentAt === undefined && counter.add(chunk) > options.contentChars!) contentAt = performance.now();
    }
    const end = performance.now();
    if (statusCode !== 200) return undefined;
    return { ttfb: (first ?? end) - start, total: end - start, content: contentAt === undefined ? undefined : contentAt - start };
  } catch {
    return undefined;
  }
}

/** Counts the characters of `delta.content` in an SSE byte stream, event by event. */
export class ContentCounter {
  private buffer = '';
  private chars = 0;

  add(chunk: Buffer): number {
    this.buffer += chunk.toString('utf8');
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const event = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.chars += contentOfEvent(event).length;
    }
    return this.chars;
  }
}

/**
 * The content an SSE event adds: a chat chunk's `delta.content`, a Responses `response.output_text.delta`'s
 * `delta`, a Messages `content_block_delta`'s `delta.text`.
 */
function contentOfEvent(event: string): string {
  const data = event
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trimStart())
    .join('\n');
  if (data === '' || data === '[DONE]') return '';
  try {
    const parsed = JSON.parse(data) as { type?: string; delta?: unknown; choices?: { delta?: { content?: string | null } }[] };
    if (parsed.type === 'response.output_text.delta') return typeof parsed.delta === 'string' ? parsed.delta : '';
    if (parsed.type === 'content_block_delta') return (parsed.delta as { text?: string } | undefined)?.text ?? '';
    return (parsed.choices ?? []).map((c) => c.delta?.content ?? '').join('');
  } catch {
    return '';
  }
}

export interface Answer {
  status: number;
  /** The answer's text: the message content, or the streamed content deltas joined. */
  content: string;
  /** Streams: content chunks received, and whether the stream ended with `data: [DONE]`. */
  contentChunks: number;
  done: boolean;
  raw: string;
}

/** Sends one request and reads the whole answer. */
export async function checkAnswer(origin: string, body: string, stream: boolean, protocol: BenchProtocol = 'chat'): Promise<Answer> {
  const client = new Client(origin);
  try {
    const { statusCode, body: answer } = await client.request({ path: PROTOCOL_PATHS[protocol], method: 'POST', headers: REQUEST_HEADERS, body });
    const raw = await answer.text();
    if (!stream) {
      let content = '';
      try {
        content = answerText(JSON.parse(raw) as Record<string, unknown>, protocol);
      } catch {
        content = '';
      }
      return { status: statusCode, content, contentChunks: 0, done: false, raw };
    }
    const events = raw.split('\n\n').filter((e) => e.trim() !== '');
    const pieces = events.map(contentOfEvent).filter((c) => c !== '');
    return { status: statusCode, content: pieces.join(''), contentChunks: pieces.length, done: STREAM_COMPLETE[protocol](raw), raw };
  } finally {
    await client.close();
  }
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}
