/**
 * The soak's client: plans each request from (seed, index) and sends it over a keep-alive agent, keeping
 * the raw bytes and how the response ended, and aborting some at a random moment like a user who leaves.
 * Each request speaks one of the gateway's protocols (chat completions, Responses, Messages), drawn by
 * weight: the body is planned as a chat body and written in the protocol's form (`protocolBody`).
 */
import http from 'node:http';
import { PROTOCOL_PATHS, protocolBody, WIRE_PROTOCOLS, type WireProtocol } from '../test/helpers/protocol-wire.js';
import { integerBetween, mixSeed, pick, seeded, weighted, type Random } from './random.js';
import { GROUPS, type Group } from './services.js';
import { BLOCKED_WORD, requestMarker } from './upstream.js';

export { WIRE_PROTOCOLS, type WireProtocol } from '../test/helpers/protocol-wire.js';

/** How often each protocol is drawn, relative to the others (0 leaves one out). */
export type ProtocolWeights = Readonly<Record<WireProtocol, number>>;

export const DEFAULT_PROTOCOL_WEIGHTS: ProtocolWeights = { chat: 2, responses: 1, messages: 1 };

export interface RequestPlan {
  index: number;
  /** The protocol (and so the path) the request speaks. */
  protocol: WireProtocol;
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
  /** The connection it went on: a keep-alive socket reused after `idleMs` without a request, or a new one. */
  socket?: { reused: boolean; idleMs: number | undefined };
}

/**
 * The client's keep-alive sockets are closed after this long idle, before the gateway's server closes them
 * (Node's default `keepAliveTimeout`, 5 s): otherwise a socket the server is closing can be picked for the
 * next request, which then fails without any response (ECONNRESET / socket hang up), a harness race, not an
 * answer of the gateway. Node 20's agent ignores the server's `Keep-Alive: timeout=5` hint unless the agent
 * has a timeout of its own. Idle spells that long happen at the warm-up's end: the workers done first wait
 * for the slowest request (up to the 6 s deadline) and the memory baseline.
 */
export const AGENT_IDLE_TIMEOUT_MS = 4000;

/** When each socket last finished a response, for `Exchange.socket.idleMs`. */
const lastUsed = new WeakMap<object, number>();

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima', 'mike'];

export function planRequest(seed: number, index: number, abortRate: number, weights: ProtocolWeights = DEFAULT_PROTOCOL_WEIGHTS): RequestPlan {
  // The protocol comes from a stream of its own, so the rest of a request's plan is what it was with chat only.
  const protocol = weighted(seeded(mixSeed(seed, 0x9207, index)), WIRE_PROTOCOLS.map((name) => [name, weights[name]] as const));
  const random = seeded(mixSeed(seed, 0xc11e, index));
  const group = pick(random, GROUPS);
  const stream = random() < 0.5;
  const invalid = random() < 0.01;
  const aborts = random() < abortRate;
  const abortAfterMs = aborts ? integerBetween(random, 0, 500) : undefined;
  const body = invalid ? invalidBody(random, group, protocol) : JSON.stringify(protocolBody(protocol, chatBody(random, index, group, stream, aborts, protocol)));
  return { index, id: `soak-${seed}-${index}`, protocol, group, stream, body, invalid, abortAfterMs };
}

function chatBody(random: Random, index: number, group: Group, stream: boolean, leaving: boolean, protocol: WireProtocol): Record<string, unknown> {
  const guarded = group === 'guarded' || group === 'guarded-open';
  // Drawn for every protocol (the draws after it stay the same), sent on chat only: it is chat's option.
  const includeUsage = stream && random() < 0.3 && protocol === 'chat';
  return {
    model: group,
    stream,
    ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
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

/** A body each protocol must refuse with a 400 before any upstream call: a wrong type, a missing field, cut JSON. */
function invalidBody(random: Random, group: Group, protocol: WireProtocol): string {
  const bodies: Record<WireProtocol, readonly string[]> = {
    chat: [
      JSON.stringify({ model: group, messages: 'not a list' }),
      JSON.stringify({ messages: [{ role: 'user', content: 'no model' }] }),
      JSON.stringify({ model: group, messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }),
      '{"model": "chat", "messages": [',
    ],
    responses: [
      JSON.stringify({ model: group, input: 42 }),
      JSON.stringify({ input: 'no model' }),
      JSON.stringify({ model: group, input: 'x', temperature: 'hot' }),
      JSON.stringify({ model: group, input: 'x', previous_response_id: 'resp_123' }),
      '{"model": "chat", "input": [',
    ],
    messages: [
      JSON.stringify({ model: group, max_tokens: 10, messages: 'not a list' }),
      JSON.stringify({ max_tokens: 10, messages: [{ role: 'user', content: 'no model' }] }),
      JSON.stringify({ model: group, messages: [{ role: 'user', content: 'no max_tokens' }] }),
      JSON.stringify({ model: group, max_tokens: 10, messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }),
      '{"model": "chat", "max_tokens": 10, "messages": [',
    ],
  };
  return pick(random, bodies[protocol]);
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
  const url = new URL(PROTOCOL_PATHS[plan.protocol], options.baseUrl);
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
    let connection: object | undefined;
    req.on('socket', (socket) => {
      connection = socket;
      const last = lastUsed.get(socket);
      exchange.socket = { reused: req.reusedSocket, idleMs: last === undefined ? undefined : Date.now() - last };
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
      res.on('end', () => {
        timers.forEach(clearTimeout); // too late to abort: the answer is complete
        if (connection !== undefined) lastUsed.set(connection, Date.now());
      });
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
