/**
 * Issue #8 item 5: fuzzing the incremental SSE reading. The same stream, cut at every byte boundary and at
 * random places (inside multi-byte UTF-8 characters, inside `\r\n`), must give the same events as the
 * whole stream; then the same for the OpenAI and Anthropic adapters end-to-end, over a local HTTP server
 * that flushes each piece separately.
 *
 * Reproduce a failure with `FC_SEED=<seed printed by fast-check> npx jest test/fuzz-sse-parser`.
 */
import fc from 'fast-check';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createAnthropicAdapter } from '../lib/providers/anthropic.js';
import { createOpenAIAdapter } from '../lib/providers/openai.js';
import { readSse } from '../lib/providers/sse.js';
import type { Deployment, ProviderAdapter } from '../lib/providers/types.js';
import type { ChatCompletionChunk } from '../lib/types.js';

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 20_240_508;
// A run stopped by the time limit (a loaded CI machine, or a slow shrink) still reports any failure it found.
const fcOptions = <T>(numRuns: number): fc.Parameters<T> => ({ seed: SEED, numRuns, interruptAfterTimeLimit: 40_000 });

const encoder = new TextEncoder();

interface Event {
  event: string | undefined;
  data: string;
  id: string | undefined;
}

async function* piecesOf(pieces: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const piece of pieces) yield piece;
}

async function readAll(pieces: readonly Uint8Array[]): Promise<Event[]> {
  const events: Event[] = [];
  for await (const e of readSse(piecesOf(pieces), new AbortController().signal)) {
    events.push({ event: e.event, data: e.data, id: (e as { id?: string }).id });
  }
  return events;
}

/** Cuts `bytes` at the given offsets (sorted, deduplicated, inside the buffer). */
function split(bytes: Uint8Array, points: readonly number[]): Uint8Array[] {
  const cuts = [...new Set(points.filter((p) => p > 0 && p < bytes.length))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const cut of cuts) {
    pieces.push(bytes.subarray(from, cut));
    from = cut;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

/** Every byte as its own piece. */
function bytewise(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}

// ---------------------------------------------------------------------------------------------
// Streams

const EOLS = ['\n', '\r\n', '\r'] as const;
type Eol = (typeof EOLS)[number];

/** Text that stresses the UTF-8 decoding: 4-byte emoji (with ZWJ sequences), CJK, combining marks. */
const TRICKY = ['😀', '👩‍👩‍👧‍👦', '🏳️‍🌈', '漢字', 'かな', 'é', 'ё́', 'ﷺ', 'Ω', '\u2028', '€', ' ', ':', 'data: x', '"', '\\', '{}', '\t'];

const lineText = fc
  .oneof(
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
    fc.array(fc.constantFrom(...TRICKY), { minLength: 1, maxLength: 8 }).map((a) => a.join('')),
  )
  .map((s) => s.replace(/[\r\n]/g, ' '))
  .filter((s) => s.length > 0);

interface GeneratedEvent {
  name: string | undefined;
  lines: string[];
  comment: string | undefined;
  retry: boolean;
}

const generatedEvent: fc.Arbitrary<GeneratedEvent> = fc.record({
  name: fc.option(fc.stringMatching(/^[a-z_]{1,12}$/), { nil: undefined }),
  lines: fc.array(lineText, { minLength: 1, maxLength: 3 }),
  comment: fc.option(fc.oneof(fc.constant(' ping'), fc.constant(''), lineText), { nil: undefined }),
  retry: fc.boolean(),
});

/**
 * How the body ends: a blank line after the last event, only its last line's end (the blank line missing),
 * or not even that (`data: [DONE]` with nothing after it). `readSse` delivers the last event in every case.
 */
type Ending = 'blank' | 'eol' | 'none';

/** An SSE body and the events it holds. `eol` is one per stream, or a choice per line (then only split-invariance is checked). */
function render(events: readonly GeneratedEvent[], eolOf: (i: number) => Eol, ending: Ending): string {
  let out = '';
  let n = 0;
  const line = (text: string): void => {
    out += text + eolOf(n++);
  };
  events.forEach((e, i) => {
    if (e.comment !== undefined) line(`:${e.comment}`);
    if (e.name !== undefined) line(`event: ${e.name}`);
    if (e.retry) line('retry: 1000');
    for (const l of e.lines) line(`data: ${l}`);
    if (i < events.length - 1 || ending === 'blank') line('');
  });
  return ending === 'none' ? out.slice(0, out.endsWith('\r\n') ? -2 : -1) : out;
}

function expectedEvents(events: readonly GeneratedEvent[]): { event: string | undefined; data: string }[] {
  return events.map((e) => ({ event: e.name, data: e.lines.join('\n') }));
}

const stream = fc.record({
  events: fc.array(generatedEvent, { minLength: 1, maxLength: 6 }),
  eol: fc.constantFrom(...EOLS),
  ending: fc.constantFrom<Ending>('blank', 'eol', 'none'),
});

/** Hand-written: everything at once, in each line ending. */
function handWritten(eol: Eol): string {
  return [
    ': ping',
    '',
    'event: message_start',
    'data: {"type":"message_start","text":"héllo 😀 漢字"}',
    '',
    ':',
    'data: first line 👩‍👩‍👧‍👦',
    'data: second line ё́ ﷺ',
    'data:no space after the colon',
    '',
    'event: error',
    'id: 42',
    'data: {"error":{"message":"€ and \\u2028"}}',
    '',
    'data: [DONE]',
    '',
    '',
  ].join(eol);
}

// ---------------------------------------------------------------------------------------------
// The reader

describe(`fuzz: readSse split anywhere (seed ${SEED})`, () => {
  for (const eol of EOLS) {
    it(`a hand-written stream (${JSON.stringify(eol)} line endings) gives the same events cut at every byte boundary, and byte by byte`, async () => {
      const bytes = encoder.encode(handWritten(eol));
      const whole = await readAll([bytes]);
      expect(whole.map((e) => e.data)).toEqual([
        '{"type":"message_start","text":"héllo 😀 漢字"}',
        'first line 👩‍👩‍👧‍👦\nsecond line ё́ ﷺ\nno space after the colon',
        '{"error":{"message":"€ and \\u2028"}}',
        '[DONE]',
      ]);
      expect(whole.map((e) => e.event)).toEqual(['message_start', undefined, 'error', undefined]);
      for (let cut = 1; cut < bytes.length; cut++) {
        expect(await readAll(split(bytes, [cut]))).toEqual(whole);
      }
      expect(await readAll(bytewise(bytes))).toEqual(whole);
      expect(await readAll([new Uint8Array(0), ...split(bytes, [3]), new Uint8Array(0)])).toEqual(whole);
    });
  }

  it('generated streams: the events expected, whole, cut at every byte boundary and byte by byte', async () => {
    await fc.assert(
      fc.asyncProperty(stream, async ({ events, eol, ending }) => {
        const bytes = encoder.encode(render(events, () => eol, ending));
        const whole = await readAll([bytes]);
        expect(whole.map(({ event, data }) => ({ event, data }))).toEqual(expectedEvents(events));
        for (let cut = 1; cut < bytes.length; cut++) {
          const got = await readAll(split(bytes, [cut]));
          if (JSON.stringify(got) !== JSON.stringify(whole)) expect({ cut, got }).toEqual({ cut, got: whole });
        }
        expect(await readAll(bytewise(bytes))).toEqual(whole);
      }),
      fcOptions(100),
    );
  }, 60_000);

  it('generated streams: random multi-way cuts give the events of the whole stream', async () => {
    const withCuts = stream.chain((s) => {
      const length = encoder.encode(render(s.events, () => s.eol, s.ending)).length;
      return fc.tuple(fc.constant(s), fc.array(fc.integer({ min: 1, max: Math.max(1, length - 1) }), { maxLength: 40 }));
    });
    await fc.assert(
      fc.asyncProperty(withCuts, async ([{ events, eol, ending }, cuts]) => {
        const bytes = encoder.encode(render(events, () => eol, ending));
        const pieces = split(bytes, cuts);
        const got = await readAll(pieces);
        expect(got.map(({ event, data }) => ({ event, data }))).toEqual(expectedEvents(events));
        expect(got).toEqual(await readAll([bytes]));
      }),
      fcOptions(1_500),
    );
  }, 60_000);

  it('mixed line endings (one per line, so `\\r` then `\\n` may read as one CRLF): cutting anywhere never changes the events', async () => {
    const mixed = fc.record({
      events: fc.array(generatedEvent, { minLength: 1, maxLength: 5 }),
      eols: fc.array(fc.constantFrom(...EOLS), { minLength: 1, maxLength: 30 }),
      ending: fc.constantFrom<Ending>('blank', 'eol', 'none'),
    });
    await fc.assert(
      fc.asyncProperty(mixed, fc.array(fc.nat(), { maxLength: 20 }), async ({ events, eols, ending }, rawCuts) => {
        const bytes = encoder.encode(render(events, (i) => eols[i % eols.length] as Eol, ending));
        const whole = await readAll([bytes]);
        for (let cut = 1; cut < bytes.length; cut++) expect(await readAll(split(bytes, [cut]))).toEqual(whole);
        expect(await readAll(split(bytes, rawCuts.map((c) => (c % bytes.length) + 1)))).toEqual(whole);
      }),
      fcOptions(40),
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// The adapters, end-to-end over real HTTP

const OPENAI_CHUNKS: object[] = [
  { choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { content: 'Héllo 😀, 漢字かな ' }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { content: 'ё́ 👩‍👩‍👧‍👦 ﷺ\n\ndata: not a frame\r\n' }, finish_reason: null }] },
  { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Zürich 🌧"}' } }] }, finish_reason: null }] },
  { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
  { choices: [], usage: { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 } },
].map((c) => ({ id: 'chatcmpl-fuzz', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-fuzz', ...c }));

/** OpenAI's stream as a server might send it: CRLF line endings, a keep-alive comment in the middle. */
const OPENAI_BODY = [
  ...OPENAI_CHUNKS.slice(0, 3).map((c) => `data: ${JSON.stringify(c)}\r\n\r\n`),
  ': keep-alive\r\n\r\n',
  ...OPENAI_CHUNKS.slice(3).map((c) => `data: ${JSON.stringify(c)}\r\n\r\n`),
  'data: [DONE]\r\n\r\n',
].join('');

function anthropicEvent(type: string, data: object): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

/** Anthropic's stream: named events, pings, text and tool-use blocks, multi-byte text everywhere. */
const ANTHROPIC_BODY = [
  anthropicEvent('message_start', { message: { id: 'msg_fuzz', type: 'message', role: 'assistant', model: 'claude-fuzz', content: [], usage: { input_tokens: 11, output_tokens: 1 } } }),
  anthropicEvent('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
  anthropicEvent('ping', {}),
  anthropicEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Grüße 😀 漢字' } }),
  anthropicEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' é ё́ 👩‍👩‍👧‍👦\nevent: ping\n' } }),
  anthropicEvent('content_block_stop', { index: 0 }),
  anthropicEvent('content_block_start', { index: 1, content_block: { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {} } }),
  anthropicEvent('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"city": "東京' } }),
  anthropicEvent('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: ' 🗼"}' } }),
  anthropicEvent('content_block_stop', { index: 1 }),
  anthropicEvent('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 27 } }),
  anthropicEvent('message_stop', {}),
].join('');

/** What the next request gets: the body, and where to cut it. */
let serving: { body: Uint8Array; cuts: number[] } = { body: new Uint8Array(0), cuts: [] };
let server: Server;
let baseUrl: string;
const adapters: ProviderAdapter[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const { body, cuts } = serving;
    req.resume();
    req.on('end', () => {
      res.socket?.setNoDelay(true);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      void (async () => {
        for (const piece of split(body, cuts)) {
          if (res.destroyed) return;
          res.write(piece);
          await sleep(1); // each piece goes out, and is read, on its own
        }
        res.end();
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await Promise.all(adapters.map((a) => a.close()));
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const TIMEOUTS: Deployment['timeouts'] = { connectMs: 2000, firstTokenMs: 10_000, idleMs: 10_000, totalMs: 10_000 };

function deployment(provider: 'openai' | 'anthropic'): Deployment {
  return {
    id: `${provider}/fuzz`,
    group: 'fuzz',
    weight: 1,
    provider,
    baseUrl: provider === 'openai' ? `${baseUrl}/v1` : baseUrl,
    model: 'fuzz-model',
    apiKey: 'sk-fuzz-0123456789',
    timeouts: TIMEOUTS,
  };
}

/** The adapter's chunks for one request served with `cuts`. `created` is when the answer arrived (Anthropic): not compared. */
async function streamOnce(adapter: ProviderAdapter, body: Uint8Array, cuts: number[]): Promise<ChatCompletionChunk[]> {
  serving = { body, cuts };
  const chunks: ChatCompletionChunk[] = [];
  const request = { body: { model: 'fuzz', messages: [{ role: 'user' as const, content: 'hi' }] }, signal: new AbortController().signal, requestId: 'fuzz' };
  for await (const chunk of adapter.stream(request)) chunks.push({ ...chunk, created: 0 });
  return chunks;
}

const PROVIDERS = [
  { provider: 'openai' as const, body: encoder.encode(OPENAI_BODY), create: createOpenAIAdapter },
  { provider: 'anthropic' as const, body: encoder.encode(ANTHROPIC_BODY), create: createAnthropicAdapter },
];

describe(`fuzz: adapters over HTTP, the body flushed in random pieces (seed ${SEED})`, () => {
  for (const { provider, body, create } of PROVIDERS) {
    it(`${provider}: every split yields the chunks of the unsplit stream`, async () => {
      const adapter = create(deployment(provider));
      adapters.push(adapter);
      const reference = await streamOnce(adapter, body, []);
      // The reference is right, not just stable.
      const text = reference.map((c) => c.choices[0]?.delta.content ?? '').join('');
      if (provider === 'openai') {
        expect(reference).toEqual(OPENAI_CHUNKS.map((c) => ({ ...c, created: 0 })));
      } else {
        expect(text).toBe('Grüße 😀 漢字 é ё́ 👩‍👩‍👧‍👦\nevent: ping\n');
        const args = reference.map((c) => c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '').join('');
        expect(JSON.parse(args)).toEqual({ city: '東京 🗼' });
        expect(reference.at(-2)?.choices[0]?.finish_reason).toBe('tool_calls');
        expect(reference.at(-1)?.usage).toEqual({ prompt_tokens: 11, completion_tokens: 27, total_tokens: 38 });
      }

      // Cuts inside every multi-byte character and every CRLF of the body, two at a time.
      const tricky: number[] = [];
      body.forEach((b, i) => {
        if (i > 0 && ((b & 0xc0) === 0x80 || (b === 0x0a && body[i - 1] === 0x0d))) tricky.push(i);
      });
      for (let i = 0; i < tricky.length; i += 2) {
        expect(await streamOnce(adapter, body, tricky.slice(i, i + 2))).toEqual(reference);
      }

      const cuts = fc.oneof(
        fc.array(fc.integer({ min: 1, max: body.length - 1 }), { minLength: 1, maxLength: 40 }),
        // small pieces over one stretch of the body
        fc.tuple(fc.integer({ min: 1, max: body.length - 1 }), fc.integer({ min: 1, max: 5 })).map(([from, step]) => Array.from({ length: 40 }, (_, k) => from + k * step)),
      );
      await fc.assert(
        fc.asyncProperty(cuts, async (points) => {
          expect(await streamOnce(adapter, body, points)).toEqual(reference);
        }),
        fcOptions(60),
      );
    }, 60_000);
  }
});
