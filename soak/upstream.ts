/**
 * What the mock upstreams and the guardrail emulator do during a soak. The mocks choose a scenario per
 * call from a weighted table, seeded by the request's index (the `[soak:<index>]` marker the driver puts
 * in the system message) and by how many calls that request already made, so a retry or a fallback meets
 * a fresh draw and a run with the same seed replays the same faults per request.
 */
import type { BedrockEmulator, MockScenario, MockScenarioFn } from '../lib/testing/index.js';
import { integerBetween, mixSeed, pick, seeded, weighted, type Random } from './random.js';

export const BLOCKED_WORD = 'BLOCKME';

type Table = readonly (readonly [string, number])[];

/** Every failure and pathology the mocks know, next to a majority of ordinary answers. */
const FAULTS: Table = [
  ['error-500', 3],
  ['error-503', 3],
  ['rate-limit:0', 3],
  ['bad-request', 1],
  ['content-policy', 2],
  ['context-window', 2],
  ['stream-error:error-503', 2],
  ['stream-error:content-policy', 1],
  ['midstream-error', 3],
  ['midstream-drop', 2],
  ['malformed-chunk', 2],
  ['empty-stream', 2],
  ['no-done', 2],
  ['content-filter-first', 1],
  ['hang', 1],
  ['hang-after-first', 1],
  // Frames that carry nothing (keep-alives, pings, metadata) must never end a healthy answer.
  ['pings', 4],
  ['midstream-malformed-chunk', 1],
];

const MODEL_ANSWERS: Table = [
  ['normal', 40],
  ['long:900', 8],
  ['slow:60', 6],
  ['tools', 2],
];

/** Guarded groups answer with the prompt (`echo`) or with text of their own that may hold the blocked word. */
const GUARDED_ANSWERS: Table = [
  ['echo', 30],
  ['blocked-answer', 12],
  ['long:900', 8],
  ['slow:60', 4],
];

/**
 * Answers a leaving client meets: users abandon slow answers, and only an answer still in flight upstream
 * shows whether the gateway aborts it when the client goes.
 */
const SLOW_ANSWERS: Table = [
  ['slow:100', 6],
  ['hang-after-first', 2],
  ['hang', 1],
];

const MARKER = /\[soak:(\d+)(:leaving)?\]/;

/** Tags a request for the mocks: its index, and whether its client will leave early. */
export function requestMarker(index: number, leaving: boolean): string {
  return `[soak:${index}${leaving ? ':leaving' : ''}]`;
}

/** The per-call scenario picker of the plain model groups. */
export function modelScenarios(seed: number, salt: number): MockScenarioFn {
  return picker(seed, salt, (random) => weighted(random, [...MODEL_ANSWERS, ...FAULTS]));
}

/** The per-call scenario picker of the guarded groups (fewer faults: the guardrail is what is soaked). */
export function guardedScenarios(seed: number, salt: number): MockScenarioFn {
  const table: Table = [...GUARDED_ANSWERS, ...FAULTS.map(([name, weight]) => [name, weight / 2] as const)];
  return picker(seed, salt, (random) => {
    const name = weighted(random, table);
    return name === 'blocked-answer' ? blockedAnswer(random) : name;
  });
}

/**
 * Calls counted per request, in a ring indexed by request index: a request's calls all come while it is in
 * flight, a few thousand indexes at most behind the newest, so 8192 slots cover them. Allocated once, so
 * the count takes the same memory after the warm-up as at the end (a Map bounded by entry count only
 * reached its size, and its table's, after tens of thousands of requests: the soak's heap check saw it).
 */
const RING = 8192;

function picker(seed: number, salt: number, choose: (random: Random) => MockScenario): MockScenarioFn {
  const indexAt = new Int32Array(RING).fill(-1);
  const callsAt = new Int32Array(RING);
  return ({ body }) => {
    const match = MARKER.exec(JSON.stringify(body));
    const index = match ? Number(match[1]) : -1;
    let call = 0;
    if (index >= 0) {
      const slot = index % RING;
      if (indexAt[slot] !== index) {
        indexAt[slot] = index;
        callsAt[slot] = 0;
      }
      call = callsAt[slot]!++;
    }
    const random = seeded(mixSeed(seed, salt, index, call));
    return match?.[2] !== undefined && random() < 0.7 ? weighted(random, SLOW_ANSWERS) : choose(random);
  };
}

/** A streamed answer in several chunks with the blocked word somewhere, possibly across a window edge. */
function blockedAnswer(random: Random): MockScenario {
  const words = 'The answer continues with plain words here. '.repeat(20).trim().split(' ');
  const length = integerBetween(random, 8, words.length);
  // On a word boundary: the guardrail matches whole words, as Bedrock's word filter does.
  words.splice(integerBetween(random, 0, length), 0, BLOCKED_WORD);
  return { scenario: 'normal', text: words.slice(0, length + 1).join(' '), chunks: integerBetween(random, 3, 12) };
}

export interface FaultInjector {
  /** Faults set so far. */
  readonly armed: number;
  stop(): void;
}

const GUARDRAIL_FAULTS = ['ThrottlingException', 'InternalServerException', 'delay', 'non-json', 'hang'] as const;
/** How often the injector looks at the emulator's call count. */
const POLL_MS = 5;

/**
 * Arms a one-call emulator fault every 5 to 20 guardrail calls, at a moment nobody chose. The guardrail's
 * client is the AWS SDK, which sends no per-request fault header, so the next call, whichever request it
 * belongs to, gets it. Counting calls rather than time keeps the fault rate the same on a slow machine.
 */
export function injectGuardrailFaults(emulator: BedrockEmulator, seed: number, maxDelayMs: number): FaultInjector {
  const random = seeded(mixSeed(seed, 0xfa17));
  let armed = 0;
  let armAt = integerBetween(random, 5, 20);
  const timer = setInterval(() => {
    if (emulator.callCount < armAt) return;
    emulator.setFault({ kind: pick(random, GUARDRAIL_FAULTS), delayMs: integerBetween(random, 20, maxDelayMs), times: 1 });
    armed++;
    armAt = emulator.callCount + integerBetween(random, 5, 20);
  }, POLL_MS);
  return {
    get armed() {
      return armed;
    },
    stop: () => clearInterval(timer),
  };
}
