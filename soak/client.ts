/**
 * The soak's client: plans each request from (seed, index) and sends it over a keep-alive agent, keeping
 * the raw bytes and how the response ended, and aborting some at a random moment like a user who leaves.
 */
import http from 'node:http';
import { integerBetween, mixSeed, pick, seeded, type Random } from './random.js';
import { GROUPS, type Group } from './services.js';
import { BLOCKED_WORD, requestMarker } from './upstream.js';

export interface RequestPlan {
  index: number;
  /** Sent as `x-request-id`; the gateway trusts it and forwards it to the OpenAI-compatible upstreams. */
  id: string;
  group: Group;
  stream: boolean;
  body: string;
  /** Deliberately invalid body: must get a 400 naming the field, before any upstream call. */
  invalid: boolean;
  /** When set, the client goes away this many ms after sending. */
  abortAfterMs: number | undefined;
}

export interface Exchange {
  plan: RequestPlan;
  /** 0 when no response head arrived. */
  status: number;
  contentType: string;
  /** The body exactly as received. */
  body: string;
  /** The response ended normally (not cut by either side). */
  complete: boolean;
  /** A socket or parse error seen by the client, other than our own abort. */
  error: string | undefined;
  startedAt: number;
  endedAt: number;
  /** When the client aborted; `undefined` when the response was over first. */
  abortedAt: number | undefined;
  /** The client gave up after the hard timeout: the gateway never ended the response. */
  timedOut: boolean;
}

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima', 'mike'];

export function planRequest(seed: number, index: number, abortRate: number): RequestPlan {
  const random = seeded(mixSeed(seed, 0xc11e, index));
  const group = pick(random, GROUPS);
  const stream = random() < 0.5;
  const invalid = random() < 0.01;
  const aborts = random() < abortRate;
  const abortAfterMs = aborts ? integerBetween(random, 0, 500) : undefined;
  const body = invalid ? invalidBody(random, group) : JSON.stringify(chatBody(random, index, group, stream, aborts));
  return { index, id: `soak-${seed}-${index}`, group, stream, body, invalid, abortAfterMs };
}

function chatBody(random: Random, index: number, group: Group, stream: boolean, leaving: boolean): Record<string, unknown> {
  const guarded = group === 'guarded' || group === 'guarded-open';
  return {
    model: group,
    stream,
    ...(stream && random() < 0.3 ? { stream_options: { include_usage: true } } : {}),
    ...(random() < 0.1 ? { max_tokens: integerBetween(random, 5, 100) } : {}),
    messages: [
      { role: 'system', content: `${requestMarker(index, leaving)} You are a soak test.` },
      { role: 'user', content: prompt(random, guarded && random() < 0.15) },
    ],
  };
}

/** Words up to a random length; a guarded prompt sometimes carries the blocked word or an email to mask. */
function prompt(random: Random, blocked: boolean): string {
  const words: string[] = [];
  const length = integerBetween(random, 3, 120);
  for (let i = 0; i < length; i++) words.push(pick(random, WORDS));
  if (blocked) words.splice(integerBetween(random, 0, words.length), 0, BLOCKED_WORD);
  if (random() < 0.05) words.push('mail me at soak.user@example.com');
  return words.join(' ');
}

function invalidBody(random: Random, group: Group): string {
  return pick(random, [
    JSON.stringify({ model: group, messages: 'not a list' }),
    JSON.stringify({ messages: [{ role: 'user', content: 'no model' }] }),
    JSON.stringify({ model: group, messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }),
    '{"model": "chat", "messages": [',
  ]);
}

export interface SendOptions {
  agent: http.Agent;
  baseUrl: string;
  /** The client gives up after this long: a response the gateway never ends is a violation, not a hang. */
  hardTimeoutMs: number;
  /** Called at the moment of a client abort (to snapshot what is in flight upstream then). */
  onAbort(plan: RequestPlan, at: number): void;
}

export function send(plan: RequestPlan, options: SendOptions): Promise<Exchange> {
  const url = new URL('/v1/chat/completions', options.baseUrl);
  const startedAt = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const exchange: Exchange = { plan, status: 0, contentType: '', body: '', complete: false, error: undefined, startedAt, endedAt: 0, abortedAt: undefined, timedOut: false };
    const timers: NodeJS.Timeout[] = [];
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      timers.forEach(clearTimeout);
      exchange.body = Buffer.concat(chunks).toString('utf8');
      exchange.endedAt = Date.now();
      resolve(exchange);
    };
    const req = http.request(url, {
      method: 'POST',
      agent: options.agent,
      headers: { 'content-type': 'application/json', 'x-request-id': plan.id },
    });
    req.on('error', (error) => {
      if (exchange.abortedAt === undefined && !exchange.timedOut) exchange.error ??= error.message;
      settle();
    });
    req.on('response', (res) => {
      exchange.status = res.statusCode ?? 0;
      exchange.contentType = String(res.headers['content-type'] ?? '');
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (error) => {
        if (exchange.abortedAt === undefined && !exchange.timedOut) exchange.error ??= error.message;
      });
      res.on('end', () => timers.forEach(clearTimeout)); // too late to abort: the answer is complete
      res.on('close', () => {
        exchange.complete = res.complete;
        settle();
      });
    });
    if (plan.abortAfterMs !== undefined) {
      timers.push(
        setTimeout(() => {
          exchange.abortedAt = Date.now();
          options.onAbort(plan, exchange.abortedAt);
          req.destroy();
        }, plan.abortAfterMs),
      );
    }
    timers.push(
      setTimeout(() => {
        exchange.timedOut = true;
        req.destroy();
      }, options.hardTimeoutMs),
    );
    req.end(plan.body);
  });
}
