/**
 * What every benchmark request asks for, and what the mock upstream answers: one place, so the mock, the
 * baseline, the gateway setups and the clients all agree on model names, chunk counts and pacing.
 *
 * Model names are mock scenarios (see `lib/testing/mock-scenarios.ts`); the gateway setups declare one model
 * group per name, forwarding the same name upstream, so one request body works against every target.
 */
import type { MockScenarioSpec } from '../lib/testing/mock-core.js';

/** Throughput model: 20 content chunks, no delay (the whole SSE body goes out in one write). */
export const MODEL_FAST = 'bench';
/**
 * Paced streaming model: the same 20 content chunks, `STREAM_PACED_DELAY_MS` apart (about 100 ms an
 * answer), as a model really streams: every chunk is its own write upstream and downstream.
 */
export const MODEL_STREAM_PACED = 'bench-stream-paced';
export const STREAM_PACED_DELAY_MS = 5;
/** Memory-run model: 20 content chunks, `SLOW_CHUNK_DELAY_MS` apart (set per run by the mock's argv). */
export const MODEL_SLOW = 'bench-slow';
/** Guardrail TTFB model: a long answer paced so one guardrail window takes a known time to generate. */
export const MODEL_PACED = 'bench-paced';

export const STREAM_CHUNKS = 20;

/** 40 words, so the mock's word splitter really makes 20 content chunks (its default text has 8 words). */
export const FAST_TEXT =
  'Benchmarks measure what the gateway adds on top of a plain forward: parsing, validation, routing, ' +
  'adapter work and the response writer, chunk by chunk, for streaming and non-streaming answers alike, ' +
  'against the same mock upstream in the same run.';

/** The paced answer: `PACED_CHUNKS` chunks of about 50 characters, `PACED_CHUNK_DELAY_MS` apart. */
export const PACED_CHUNKS = 60;
export const PACED_CHUNK_DELAY_MS = 2;
export const PACED_TEXT = numberedSentences(3000);

export function mockScenarios(slowChunkDelayMs: number): Record<string, MockScenarioSpec> {
  return {
    [MODEL_FAST]: { scenario: 'normal', text: FAST_TEXT, chunks: STREAM_CHUNKS, chunkDelayMs: 0 },
    [MODEL_STREAM_PACED]: { scenario: 'normal', text: FAST_TEXT, chunks: STREAM_CHUNKS, chunkDelayMs: STREAM_PACED_DELAY_MS },
    [MODEL_SLOW]: { scenario: 'normal', text: FAST_TEXT, chunks: STREAM_CHUNKS, chunkDelayMs: slowChunkDelayMs },
    [MODEL_PACED]: { scenario: 'normal', text: PACED_TEXT, chunks: PACED_CHUNKS, chunkDelayMs: PACED_CHUNK_DELAY_MS },
  };
}

export const BENCH_MODELS = [MODEL_FAST, MODEL_STREAM_PACED, MODEL_SLOW, MODEL_PACED] as const;

/**
 * The throughput workloads: `json` (20-chunk answer, non-streaming), `stream` (the same answer as SSE, no
 * delay: the mock writes it at once) and `paced` (SSE, 20 chunks 5 ms apart).
 */
export type Mode = 'json' | 'stream' | 'paced';
export const MODES: readonly Mode[] = ['json', 'stream', 'paced'];

export function modeBody(mode: Mode, protocol: BenchProtocol = 'chat'): string {
  return mode === 'json' ? requestBody(MODEL_FAST, false, protocol) : requestBody(mode === 'paced' ? MODEL_STREAM_PACED : MODEL_FAST, true, protocol);
}

/** The inbound protocols (issue 16): the same question in each, on its own path. */
export type BenchProtocol = 'chat' | 'responses' | 'messages';

const SYSTEM = 'You are a helpful assistant.';
const QUESTION = 'Say hello to the benchmark, in about forty words.';

/** The JSON body of a request for `model` in `protocol` (the same question, as each protocol writes it). */
export function requestBody(model: string, stream: boolean, protocol: BenchProtocol = 'chat'): string {
  const streaming = stream ? { stream: true } : {};
  if (protocol === 'responses') return JSON.stringify({ model, instructions: SYSTEM, input: QUESTION, ...streaming });
  if (protocol === 'messages') return JSON.stringify({ model, max_tokens: 1024, system: SYSTEM, messages: [{ role: 'user', content: QUESTION }], ...streaming });
  return JSON.stringify({
    model,
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: QUESTION },
    ],
    ...streaming,
  });
}

export const CHAT_PATH = '/v1/chat/completions';
export const PROTOCOL_PATHS: Readonly<Record<BenchProtocol, string>> = { chat: CHAT_PATH, responses: '/v1/responses', messages: '/v1/messages' };
export const REQUEST_HEADERS = { 'content-type': 'application/json', authorization: 'Bearer bench-key' };

function numberedSentences(length: number): string {
  let text = '';
  for (let i = 1; text.length < length; i++) text += `Sentence ${i} of the paced benchmark answer. `;
  return text.slice(0, length).trimEnd();
}
