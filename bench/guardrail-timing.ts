/**
 * The window-mode guardrail's first-byte target, measured in paired rounds: "first byte ≤ one window's
 * generation + one guardrail round trip + 2 ms", with the window's generation and the round trip taken
 * under the same conditions as the first byte they bound.
 *
 * Each round sends the same paced request (`MODEL_PACED`) at the same moment through the guardrail setup
 * and straight to the mock. The direct stream's time until more than one window of content had arrived
 * is that round's generation; at that moment the client sends its own ApplyGuardrail call with the same
 * text the gateway checks (the answer's first window), and its time is that round's round trip. The
 * gateway's first byte is timed on its own stream. The bound is p50(generation) + p50(round trip) + 2 ms.
 *
 * Why paired: on two shared cores the mock's 2 ms chunk timers slip as soon as anything else runs, and
 * the gateway process is itself that something (its upstream stream, its SDK call). A window generation
 * measured on `direct` alone, a minute earlier, with the gateway idle (and a round trip measured at the
 * end of the throughput phase, with 1,000 `x`s) is a reference taken under easier conditions than the
 * first byte it bounds: on a busy machine the gateway paid for the mock's slower pacing.
 */
import { performance } from 'node:perf_hooks';
import { Client } from 'undici';
import { DEFAULT_GUARDRAIL } from '../lib/testing/bedrock-emulator.js';
import { ContentCounter, percentile } from './load.js';
import { CHAT_PATH, MODEL_PACED, PACED_TEXT, REQUEST_HEADERS, requestBody } from './workload.js';

export interface PairedWindowTiming {
  rounds: number;
  /** p50 of the direct stream's time until more than `windowChars` characters of content had arrived. */
  windowGenerationP50Ms: number;
  /** p50 of the client's ApplyGuardrail call (the answer's first window), sent at that moment. */
  roundTripP50Ms: number;
  /** p50 of the guardrail setup's first byte. */
  ttfbP50Ms: number;
  errors: number;
}

export interface PairedOptions {
  gatewayOrigin: string;
  mockOrigin: string;
  emulatorOrigin: string;
  windowChars: number;
  rounds: number;
  maxSeconds: number;
  warmupRounds: number;
}

export async function pairedWindowTiming(options: PairedOptions): Promise<PairedWindowTiming> {
  const gateway = new Client(options.gatewayOrigin, { keepAliveTimeout: 10_000 });
  const direct = new Client(options.mockOrigin, { keepAliveTimeout: 10_000 });
  const emulator = new Client(options.emulatorOrigin, { keepAliveTimeout: 10_000 });
  const body = requestBody(MODEL_PACED, true);
  // What the gateway sends in its first check: the answer's first window (the chunks before the one that
  // would take it past the window; the reference's last word may differ, not its size).
  const check = JSON.stringify({ source: 'OUTPUT', content: [{ text: { text: PACED_TEXT.slice(0, options.windowChars) } }] });
  const generation: number[] = [];
  const roundTrip: number[] = [];
  const ttfb: number[] = [];
  let errors = 0;
  try {
    const round = async (): Promise<{ generation: number; roundTrip: number; ttfb: number } | undefined> => {
      const start = performance.now();
      const [gw, reference] = await Promise.all([firstByte(gateway, body, start), windowThenCheck(direct, emulator, body, check, options.windowChars, start)]);
      return gw === undefined || reference === undefined ? undefined : { ttfb: gw, ...reference };
    };
    for (let i = 0; i < options.warmupRounds; i++) await round();
    const deadline = performance.now() + options.maxSeconds * 1000;
    while (ttfb.length + errors < options.rounds && performance.now() < deadline) {
      const r = await round();
      if (!r) {
        errors++;
        continue;
      }
      generation.push(r.generation);
      roundTrip.push(r.roundTrip);
      ttfb.push(r.ttfb);
    }
  } finally {
    await Promise.all([gateway.close(), direct.close(), emulator.close()]);
  }
  return {
    rounds: ttfb.length,
    windowGenerationP50Ms: percentile(generation, 50),
    roundTripP50Ms: percentile(roundTrip, 50),
    ttfbP50Ms: percentile(ttfb, 50),
    errors,
  };
}

/** The gateway's stream: time to its first body byte (the whole answer is read). */
async function firstByte(client: Client, body: string, start: number): Promise<number | undefined> {
  try {
    const { statusCode, body: answer } = await client.request({ path: CHAT_PATH, method: 'POST', headers: REQUEST_HEADERS, body });
    let first: number | undefined;
    for await (const _chunk of answer as AsyncIterable<Buffer>) first ??= performance.now() - start;
    return statusCode === 200 ? first : undefined;
  } catch {
    return undefined;
  }
}

/** The direct stream: time until more than `windowChars` characters of content; then one ApplyGuardrail call, timed. */
async function windowThenCheck(
  direct: Client,
  emulator: Client,
  body: string,
  check: string,
  windowChars: number,
  start: number,
): Promise<{ generation: number; roundTrip: number } | undefined> {
  try {
    const { statusCode, body: answer } = await direct.request({ path: CHAT_PATH, method: 'POST', headers: REQUEST_HEADERS, body });
    const counter = new ContentCounter();
    let checking: Promise<{ generation: number; roundTrip: number } | undefined> | undefined;
    for await (const chunk of answer as AsyncIterable<Buffer>) {
      if (checking === undefined && counter.add(chunk) > windowChars) {
        const at = performance.now();
        checking = applyGuardrail(emulator, check).then((ms) => (ms === undefined ? undefined : { generation: at - start, roundTrip: ms }));
      }
    }
    const result = await checking;
    return statusCode === 200 ? result : undefined;
  } catch {
    return undefined;
  }
}

const GUARDRAIL_PATH = `/guardrail/${DEFAULT_GUARDRAIL.id}/version/${DEFAULT_GUARDRAIL.version}/apply`;

/** One ApplyGuardrail call over plain keep-alive HTTP, ms (undefined when it did not answer 200). */
export async function applyGuardrail(emulator: Client, body: string): Promise<number | undefined> {
  const start = performance.now();
  const answer = await emulator.request({ path: GUARDRAIL_PATH, method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer bench' }, body });
  await answer.body.text();
  return answer.statusCode === 200 ? performance.now() - start : undefined;
}
