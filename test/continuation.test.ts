/**
 * Continuation after commit (`fallbacks.continuation`), through the real pipeline (context → router →
 * fallback handler → error writer) against local OpenAI-compatible upstreams over 127.0.0.1.
 *
 * The primary streams a known answer and drops the connection after exactly 50, 250 or 2,000 characters.
 * The fallback then restarts from the beginning, continues, restarts from partway, rewrites, stops early,
 * or refuses the prefill. The client's text is compared with the expected text exactly, so a repeated
 * phrase or a spliced word fails the test; when the join cannot be decided, the stream must end with
 * exactly one error frame and [DONE], with no fallback text leaked before it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContinuationFilter, repeatedPrefixLength } from '../lib/continuation.js';
import type { ChatCompletionChunk } from '../lib/types.js';
import { chat, type ChatOutcome } from './helpers/chat.js';
import { EXPRESS_MAJOR } from './helpers/express.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';

/** Seeded prose: long stretches never recur, so any repeat in the client's text is the gateway's doing. */
function prose(chars: number, seed: number): string {
  const words =
    'gateway stream answer model token partial restart fallback provider request client header chunk frame error retry budget deployment group latency window guardrail policy router context writer commit socket upstream byte signal abort usage metric summary cooldown balancer ordered priority health probe drain shutdown instance redis store memory buffer overlap boundary sentence paragraph letter digit space newline marker prefix suffix filter check verdict mask block release hold decide confident ambiguous rewrite splice repeat continue resume instruction assistant message system user tool call argument schema json field value config option default timeout deadline backoff jitter queue worker thread event loop promise callback handler middleware express route path method status body parser limit size encoding gzip brotli deflate proxy forward redact secret credential key token bearer region endpoint bedrock anthropic openai azure vllm dashscope mock emulator scenario soak bench fuzz parity invariant taxonomy class slug'.split(
      ' ',
    );
  let state = seed;
  const next = (n: number): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
  };
  let text = '';
  let sentence = 0;
  while (text.length < chars) {
    const length = 6 + next(9);
    const picked: string[] = [];
    for (let i = 0; i < length; i++) picked.push(words[next(words.length)]!);
    const first = picked[0]!;
    picked[0] = first[0]!.toUpperCase() + first.slice(1);
    text += `${text ? ' ' : ''}${picked.join(' ')}${sentence % 5 === 4 ? '!' : '.'}`;
    sentence++;
  }
  return text;
}

const ANSWER = prose(6000, 7);

type Message = { role: string; content?: string | null };
type Body = { stream?: boolean; messages: Message[] };

/** What an upstream does with one request: stream pieces (then finish or drop), answer JSON, or refuse. */
type Reply =
  | { kind: 'stream'; pieces: string[]; drop?: boolean; tool?: { name: string; argumentPieces: string[] } }
  | { kind: 'json'; text: string }
  | { kind: 'drop-json'; text: string }
  | { kind: 'status'; status: number; body: unknown };

interface Upstream {
  url: string;
  bodies: Body[];
  reply: (body: Body) => Reply;
  close(): Promise<void>;
}

async function startUpstream(): Promise<Upstream> {
  const upstream: Upstream = { url: '', bodies: [], reply: () => ({ kind: 'json', text: 'unused' }), close: async () => undefined };
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Body;
      upstream.bodies.push(body);
      play(res, upstream.reply(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  upstream.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return upstream;
}

function play(res: http.ServerResponse, reply: Reply): void {
  const base = { id: 'chatcmpl-local', object: 'chat.completion.chunk', created: 1, model: 'local' };
  const frame = (delta: Record<string, unknown>, finish: string | null = null): string =>
    `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  switch (reply.kind) {
    case 'status':
      res.writeHead(reply.status, { 'content-type': 'application/json' }).end(JSON.stringify(reply.body));
      return;
    case 'json': {
      const completion = { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: reply.text }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(completion));
      return;
    }
    case 'drop-json': {
      const completion = JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: reply.text }, finish_reason: 'stop' }] });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(completion)) });
      res.write(completion.slice(0, completion.length >> 1));
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    case 'stream': {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let out = frame({ role: 'assistant', content: '' });
      for (const piece of reply.pieces) out += frame({ content: piece });
      if (reply.tool) {
        out += frame({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: reply.tool.name, arguments: '' } }] });
        for (const piece of reply.tool.argumentPieces) out += frame({ tool_calls: [{ index: 0, function: { arguments: piece } }] });
      }
      if (reply.drop) {
        res.write(out);
        // Let the frames reach the gateway before the connection goes: the cut comes after them.
        setTimeout(() => res.socket?.destroy(), 30);
        return;
      }
      res.end(`${out}${frame({}, reply.tool ? 'tool_calls' : 'stop')}data: [DONE]\n\n`);
    }
  }
}

/** `text` in pieces of `size` characters (different sizes on each side, so chunk edges never line up). */
function pieces(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** The partial answer the gateway handed to the fallback (the assistant message before the instruction). */
function partialOf(body: Body): string | undefined {
  const m = body.messages.at(-2);
  return m?.role === 'assistant' ? (m.content ?? '') : undefined;
}

const ask = (stream: boolean) => ({ model: 'main', stream, messages: [{ role: 'user', content: 'Tell me about gateways.' }] });

let primary: Upstream;
let backup: Upstream;
let spare: Upstream;
let gateway: TestGateway;

beforeAll(async () => {
  [primary, backup, spare] = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
  const deployment = (u: Upstream) => ({ provider: 'openai' as const, baseUrl: u.url, model: 'local', apiKey: 'k' });
  gateway = await startGateway(
    {
      models: [
        { name: 'main', deployments: [deployment(primary)] },
        { name: 'backup', deployments: [deployment(backup)] },
        { name: 'spare', deployments: [deployment(spare)] },
      ],
      retries: { maxRetries: 0 },
      cooldown: { failureThreshold: 1000 },
    },
    { fallbacks: { fallbacks: { main: ['backup', 'spare'] }, continuation: { groups: ['backup', 'spare'] } } },
  );
});
afterAll(async () => {
  await gateway.close();
  await Promise.all([primary.close(), backup.close(), spare.close()]);
});
beforeEach(() => {
  for (const u of [primary, backup, spare]) u.bodies.length = 0;
  spare.reply = () => ({ kind: 'status', status: 500, body: { error: { message: 'spare should not be called' } } });
});

/** The primary streams the first `cut` characters of `text` and drops the connection (JSON: half a body). */
function primaryCutsAt(cut: number, text = ANSWER): void {
  primary.reply = (body) => (body.stream ? { kind: 'stream', pieces: pieces(text.slice(0, cut), 10), drop: true } : { kind: 'drop-json', text });
}

function errorFrames(res: ChatOutcome): string[] {
  return res.frames.filter((f) => f.startsWith('{"error"'));
}

/** A successful continued answer: exactly `expected`, one normal finish, [DONE], one role chunk. */
function expectJoined(res: ChatOutcome, expected: string): void {
  expect(res.status).toBe(200);
  expect(errorFrames(res)).toEqual([]);
  expect(res.text).toBe(expected);
  expect(res.finishReason).toBe('stop');
  expect(res.frames.at(-1)).toBe('[DONE]');
  expect(res.frames.filter((f) => f.includes('"role"'))).toHaveLength(1);
  expect(res.complete).toBe(true);
}

/** An undecidable join: the partial answer, then exactly one error frame, then [DONE], nothing spliced. */
function expectErrorFrame(res: ChatOutcome, partial: string): void {
  expect(res.status).toBe(200);
  expect(res.text).toBe(partial);
  const errors = errorFrames(res);
  expect(errors).toHaveLength(1);
  expect(res.frames.at(-2)).toBe(errors[0]);
  expect(res.frames.at(-1)).toBe('[DONE]');
  expect(res.finishReason).toBeUndefined();
  expect(res.complete).toBe(true);
}

describe(`continuation after commit (Express ${EXPRESS_MAJOR})`, () => {
  describe.each([50, 250, 2000])('after a partial of %i characters', (cut) => {
    const partial = ANSWER.slice(0, cut);

    it('a fallback that restarts from the beginning: the repeated text is dropped, nothing spliced', async () => {
      primaryCutsAt(cut);
      backup.reply = () => ({ kind: 'stream', pieces: pieces(ANSWER, 7) });
      const res = await chat(gateway.url, ask(true));
      expectJoined(res, ANSWER);
      expect(partialOf(backup.bodies[0]!)).toBe(partial);
      expect(backup.bodies[0]!.messages.at(-1)?.role).toBe('user');
    });

    it('a restart with different whitespace (a leading newline, doubled spaces) is still recognised', async () => {
      primaryCutsAt(cut);
      const restated = `\n\n${ANSWER.replace(/\. /g, '.  ').replace(/! /g, '!\n')}`;
      backup.reply = () => ({ kind: 'stream', pieces: pieces(restated, 13) });
      const res = await chat(gateway.url, ask(true));
      expect(res.text.startsWith(partial)).toBe(true);
      // What follows the partial is the fallback's own text, from exactly where the partial stopped.
      const sentOn = res.text.slice(cut).replace(/\s+/g, ' ');
      expect(sentOn).toBe(ANSWER.slice(cut).replace(/\s+/g, ' '));
      expect(errorFrames(res)).toEqual([]);
      expect(res.finishReason).toBe('stop');
    });

    it('a fallback that continues: its text is kept as is, joined where the partial stopped', async () => {
      primaryCutsAt(cut);
      backup.reply = (body) => ({ kind: 'stream', pieces: pieces(ANSWER.slice(partialOf(body)!.length), 7) });
      const res = await chat(gateway.url, ask(true));
      expectJoined(res, ANSWER);
    });

    it('a fallback that restarts from partway (a suffix of the partial, not capped at 200 characters)', async () => {
      primaryCutsAt(cut);
      const from = Math.max(0, cut - Math.min(cut - 5, 300));
      backup.reply = () => ({ kind: 'stream', pieces: pieces(ANSWER.slice(from), 11) });
      const res = await chat(gateway.url, ask(true));
      expectJoined(res, ANSWER);
    });

    it('a fallback that restarts and then rewrites: the error frame, no fallback text leaked', async () => {
      primaryCutsAt(cut);
      const rewritten = `${ANSWER.slice(0, Math.floor(cut * 0.6))} but then it says something else entirely, which must not reach the client.`;
      backup.reply = () => ({ kind: 'stream', pieces: pieces(rewritten, 9) });
      const res = await chat(gateway.url, ask(true));
      expectErrorFrame(res, partial);
      expect(res.error).toMatchObject({ type: 'upstream_error', code: 502 });
      expect(String(res.error!['message'])).toMatch(/rewrote/);
      expect(spare.bodies).toHaveLength(0); // the gateway's own refusal to splice is final
    });

    it('a fallback that restarts and stops before reaching the end of the partial: the error frame', async () => {
      primaryCutsAt(cut);
      backup.reply = () => ({ kind: 'stream', pieces: pieces(ANSWER.slice(0, cut - 3), 9) });
      const res = await chat(gateway.url, ask(true));
      expectErrorFrame(res, partial);
    });

    it('a fallback that rejects the assistant prefill: the error frame (upstream_error, not the client\'s 400), no hang', async () => {
      primaryCutsAt(cut);
      const refusal = { kind: 'status' as const, status: 400, body: { error: { message: 'This model does not support assistant message prefill.', type: 'invalid_request_error' } } };
      backup.reply = () => refusal;
      spare.reply = () => refusal;
      const started = Date.now();
      const res = await chat(gateway.url, ask(true));
      expectErrorFrame(res, partial);
      expect(res.error).toMatchObject({ type: 'upstream_error', code: 502 });
      expect(String(res.error!['message'])).toMatch(/refused to continue/);
      expect(backup.bodies).toHaveLength(1);
      expect(spare.bodies).toHaveLength(1); // the next continuation group was tried
      expect(Date.now() - started).toBeLessThan(5000);
    });

    it('stream: false with the same failing primary falls back before commit, as any request (no continuation)', async () => {
      primaryCutsAt(cut);
      backup.reply = (body) => ({ kind: 'json', text: partialOf(body) === undefined ? ANSWER : 'continuation was not expected' });
      const res = await chat(gateway.url, ask(false));
      expect(res.status).toBe(200);
      expect(res.text).toBe(ANSWER);
      expect(backup.bodies[0]!.messages).toEqual([{ role: 'user', content: 'Tell me about gateways.' }]);
    });
  });

  it('a continuation group that refuses the prefill is followed by the next one that continues', async () => {
    primaryCutsAt(250);
    backup.reply = () => ({ kind: 'status', status: 400, body: { error: { message: 'assistant prefill is not supported', type: 'invalid_request_error' } } });
    spare.reply = (body) => ({ kind: 'stream', pieces: pieces(ANSWER.slice(partialOf(body)!.length), 7) });
    const res = await chat(gateway.url, ask(true));
    expectJoined(res, ANSWER);
    // The second continuation was built from the original conversation, not on top of the first one.
    expect(spare.bodies[0]!.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
  });

  it('a stream cut inside tool-call arguments ends with the error frame and is not continued', async () => {
    primary.reply = () => ({ kind: 'stream', pieces: ['Let me look that up.'], tool: { name: 'get_weather', argumentPieces: ['{"loca', 'tion":"Par'] }, drop: true });
    backup.reply = () => ({ kind: 'stream', pieces: ['should never be asked'] });
    const res = await chat(gateway.url, ask(true));
    expect(res.status).toBe(200);
    expect(errorFrames(res)).toHaveLength(1);
    expect(res.frames.at(-2)).toBe(errorFrames(res)[0]);
    expect(res.frames.at(-1)).toBe('[DONE]');
    expect(res.text).toBe('Let me look that up.');
    expect(backup.bodies).toHaveLength(0);
    expect(spare.bodies).toHaveLength(0);
  });

  it('a partial ending mid-word, continued by a fallback starting a new capitalised word: undecidable, the error frame', async () => {
    primaryCutsAt(10, 'The gateway answers quickly.');
    backup.reply = () => ({ kind: 'stream', pieces: ['Another answer entirely.'] });
    const res = await chat(gateway.url, ask(true));
    expectErrorFrame(res, 'The gatewa');
  });
});

describe('ContinuationFilter joins (unit)', () => {
  let seq = 0;
  const chunk = (content: string, finish: ChatCompletionChunk['choices'][number]['finish_reason'] = null): ChatCompletionChunk => ({
    id: `c${seq++}`,
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: { content }, finish_reason: finish }],
  });
  /** Feeds `continuation` in pieces of `size` and returns the joined text, or the error's message. */
  function join(partial: string, continuation: string, size = 5): string {
    const filter = new ContinuationFilter(partial);
    let out = '';
    const take = (chunks: ChatCompletionChunk[]): void => {
      for (const c of chunks) out += c.choices[0]?.delta.content ?? '';
    };
    try {
      for (let i = 0; i < continuation.length; i += size) take(filter.chunk(chunk(continuation.slice(i, i + size))));
      take(filter.chunk(chunk('', 'stop')));
      take(filter.end());
    } catch (err) {
      return `error: ${(err as Error).message}`;
    }
    return partial + out;
  }

  it.each([
    ['a restated word fragment', 'He was very hap', 'happy about it.', 'He was very happy about it.'],
    ['an in-word continuation sharing a letter by chance', 'a red bal', 'loon went up.', 'a red balloon went up.'],
    ['a restated last words with a doubled space', 'It is open. ', 'is open.  Then it closed.', 'It is open. Then it closed.'],
    ['a space the model left out after a sentence', 'It is open.', 'A gateway follows.', 'It is open. A gateway follows.'],
    ['both sides bringing the space between words', 'It is ', ' open now.', 'It is open now.'],
    ['a long partial repeated in full after a newline', ANSWER.slice(0, 800), `\n${ANSWER.slice(0, 1200)}`, ANSWER.slice(0, 1200)],
  ])('%s', (_name, partial, continuation, expected) => {
    expect(join(partial, continuation)).toBe(expected);
  });

  it.each([
    ['a rewrite after the same opening', ANSWER.slice(0, 100), `${ANSWER.slice(0, 40)} and now something else.`, /rewrote/],
    ['a stretch of the partial repeated, then a different ending', ANSWER.slice(0, 400), `${ANSWER.slice(100, 200)} and now something else.`, /rewrote/],
    ['a continuation that stops inside the text already sent', ANSWER.slice(0, 400), ANSWER.slice(100, 200), /ended inside/],
    ['a capitalised word glued to a word cut short', 'The gateway is op', 'Another answer.', /spliced word/],
  ])('%s: undecidable', (_name, partial, continuation, message) => {
    expect(join(partial, continuation)).toMatch(message);
  });

  it('nothing of the continuation is released before the join is decided', () => {
    const filter = new ContinuationFilter(ANSWER.slice(0, 2000));
    let released = 0;
    for (let i = 0; i < 2000; i += 50) released += filter.chunk(chunk(ANSWER.slice(i, i + 50))).length;
    expect(released).toBe(0); // still repeating the partial: held
    const rest = filter.chunk(chunk(ANSWER.slice(2000, 2100)));
    expect(rest.map((c) => c.choices[0]!.delta.content).join('')).toBe(ANSWER.slice(2000, 2100));
  });

  it('a long partial costs a few linear scans, not one per chunk', () => {
    const long = prose(200_000, 3);
    const filter = new ContinuationFilter(long);
    const started = performance.now();
    // A restart fed one character at a time: 200,000 chunks against a 200,000-character partial.
    for (let i = 0; i < long.length; i++) filter.chunk(chunk(long[i]!));
    const out = filter.chunk(chunk(' And then something new.', 'stop'));
    expect(out.map((c) => c.choices[0]!.delta.content).join('')).toBe(' And then something new.');
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it('repeatedPrefixLength finds overlaps of any length (no 200-character cap)', () => {
    const partial = ANSWER.slice(0, 1000);
    expect(repeatedPrefixLength(partial, ANSWER.slice(300, 1100))).toBe(700);
    expect(repeatedPrefixLength('The quick brown fox', 'brown fox jumps')).toBe(9);
    expect(repeatedPrefixLength('ends with a', 'a new start')).toBe(0);
  });
});
