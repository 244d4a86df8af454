/**
 * The memory run: many slow streams held open at once through one server process, then closed.
 *
 * Idle RSS is taken after a warm-up (so JIT code, pools and buffers that any server keeps are in it), each
 * sample after a full GC in the server process (`--expose-gc`). Streams are opened in batches, so the
 * listen backlog is never the limit; the client keeps no body, only whether `data: [DONE]` ended it.
 *
 * File descriptors: every stream costs one in the client, two in the server under test and one in the
 * mock. Node raises its soft `RLIMIT_NOFILE` to the hard limit at start-up, so the hard limit (`ulimit -Hn`)
 * is what counts; `checkFdLimit()` reads it from `/proc/self/limits` and the run says when it is too low.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerProcess } from './processes.js';
import type { StatsMessage } from './protocol.js';
import { CHAT_PATH, MODEL_FAST, MODEL_SLOW, REQUEST_HEADERS, STREAM_CHUNKS, requestBody } from './workload.js';
import { timedLoop } from './load.js';

export interface MemoryOptions {
  streams: number;
  /** The mock's delay between chunks of the slow model (the stream lasts about 21 of these). */
  chunkDelayMs: number;
  /** Streams opened at once, and the pause between two batches. */
  batch: number;
  batchIntervalMs: number;
  /** Requests of each kind (JSON, stream) before idle RSS is taken. */
  warmupRequests: number;
  /** Wait after the last stream ended before the after-close sample (past the keep-alive timeouts: 5.5 s). */
  settleMs: number;
}

export interface MemoryResult {
  target: string;
  streams: number;
  chunkDelayMs: number;
  /** Bytes, each after a full GC in the server process. */
  idleRss: number;
  openRss: number;
  afterCloseRss: number;
  /** Peak RSS of the server process over its whole life (includes the warm-up). */
  maxRss: number;
  /** (openRss - idleRss) / streams, bytes. */
  perStream: number;
  /** afterCloseRss / idleRss - 1. */
  afterCloseGrowth: number;
  /** Streams that had their first byte and had not ended when the open-RSS sample was taken. */
  opened: number;
  /** Streams that ended with `data: [DONE]`, and streams that failed (error, non-200, no [DONE]). */
  completed: number;
  failed: number;
  /** Streams still running when the run gave up waiting (then destroyed by the client). */
  abandoned: number;
  /** The most upstream streams the mock saw open at once. */
  peakUpstreamStreams: number;
  /** Milliseconds from the first request until the last stream got its first byte (NaN if some never did). */
  allOpenAfterMs: number;
  heapUsedIdle: number;
  heapUsedOpen: number;
  heapUsedAfter: number;
}

export async function memoryRun(label: string, target: ServerProcess, mock: ServerProcess, options: MemoryOptions, log: (line: string) => void): Promise<MemoryResult> {
  await warmUp(target.url, options.warmupRequests);
  const idle = await settledStats(target);
  log(`  idle RSS ${mb(idle.rss)} (heap ${mb(idle.heapUsed)}); opening ${options.streams} streams (${STREAM_CHUNKS} chunks, ${options.chunkDelayMs} ms apart)`);

  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const body = requestBody(MODEL_SLOW, true);
  const streams: StreamState[] = [];
  const started = performance.now();
  for (let i = 0; i < options.streams; i += options.batch) {
    for (let j = i; j < Math.min(options.streams, i + options.batch); j++) streams.push(openStream(target.url, body, agent, started));
    await sleep(options.batchIntervalMs);
  }
  const streamMs = (STREAM_CHUNKS + 1) * options.chunkDelayMs;
  // Wait until every stream has its first byte, but not past the point where the first ones end.
  const openDeadline = started + Math.max(2_000, streamMs * 0.8);
  while (performance.now() < openDeadline && streams.some((s) => s.firstByteAt === undefined && !s.ended)) await sleep(25);
  // Open at once: started answering and not ended yet when the sample is taken.
  const opened = streams.filter((s) => s.firstByteAt !== undefined && !s.ended).length;
  const lastOpen = Math.max(...streams.map((s) => s.firstByteAt ?? Number.NaN));
  const open = await target.stats(true);
  const mockLive = (await mock.stats()).live;
  log(`  ${opened}/${options.streams} streams open, RSS ${mb(open.rss)} (heap ${mb(open.heapUsed)}), upstream streams open at the mock: ${mockLive.inflight ?? '?'} (peak ${mockLive.peakInflight ?? '?'})`);

  // Let them finish on their own; streams still waiting after that are destroyed (bounded run). A server
  // that could not open every stream (they queue behind a connection limit) would need many stream
  // lengths to drain: give up on the queued ones at once.
  const endDeadline = opened < options.streams ? performance.now() : performance.now() + streamMs + 10_000;
  while (performance.now() < endDeadline && streams.some((s) => !s.ended)) await sleep(50);
  const abandoned = streams.filter((s) => !s.ended);
  for (const s of abandoned) s.destroy();
  agent.destroy();
  // Past the keep-alive timeouts (undici pools 4 s, Node's server 5 s): idle upstream sockets of the
  // finished streams are closed by then, so what is left is what the server keeps for good.
  await sleep(options.settleMs);
  const after = await settledStats(target);
  const peak = (await mock.stats()).live.peakInflight ?? Number.NaN;
  const completed = streams.filter((s) => s.done).length;
  const result: MemoryResult = {
    target: label,
    streams: options.streams,
    chunkDelayMs: options.chunkDelayMs,
    idleRss: idle.rss,
    openRss: open.rss,
    afterCloseRss: after.rss,
    maxRss: after.maxRss,
    perStream: (open.rss - idle.rss) / options.streams,
    afterCloseGrowth: after.rss / idle.rss - 1,
    opened,
    completed,
    failed: streams.length - completed - abandoned.length,
    abandoned: abandoned.length,
    peakUpstreamStreams: peak,
    allOpenAfterMs: opened === options.streams ? lastOpen - started : Number.NaN,
    heapUsedIdle: idle.heapUsed,
    heapUsedOpen: open.heapUsed,
    heapUsedAfter: after.heapUsed,
  };
  log(
    `  closed: ${completed} completed, ${result.failed} failed, ${abandoned.length} abandoned; RSS after close ${mb(after.rss)} (heap ${mb(after.heapUsed)}) ` +
      `(${(result.afterCloseGrowth * 100).toFixed(1)}% vs idle), ${(result.perStream / 1024).toFixed(1)} KB per open stream`,
  );
  return result;
}

/** Enough traffic that lazily created state (JIT, pools, buffers) exists before idle RSS is taken. */
async function warmUp(origin: string, requests: number): Promise<void> {
  for (const stream of [false, true]) {
    await timedLoop({ origin, body: requestBody(MODEL_FAST, stream), requests, maxSeconds: 3, warmupRequests: 0 });
  }
}

/** Stats after a GC and a short pause, taken three times; the median RSS is kept. */
async function settledStats(target: ServerProcess): Promise<StatsMessage> {
  // A full GC before each sample; sampled until two in a row agree within 1% (at most 12 samples, 250 ms
  // apart), so a sample taken while sockets are still closing (undici's keep-alive timers are coarse, about
  // a second) does not count as what the server keeps.
  let previous = await target.stats(true);
  for (let i = 1; i < SETTLE_SAMPLES; i++) {
    await sleep(SETTLE_INTERVAL_MS);
    const sample = await target.stats(true);
    if (Math.abs(sample.rss - previous.rss) <= previous.rss * 0.01) return sample;
    previous = sample;
  }
  return previous;
}

const SETTLE_SAMPLES = 12;
const SETTLE_INTERVAL_MS = 250;

interface StreamState {
  firstByteAt: number | undefined;
  ended: boolean;
  done: boolean;
  destroy(): void;
}

function openStream(origin: string, body: string, agent: Agent, started: number): StreamState {
  const state: StreamState = { firstByteAt: undefined, ended: false, done: false, destroy: () => req.destroy() };
  const url = new URL(CHAT_PATH, origin);
  const req = request(url, { method: 'POST', agent, headers: { ...REQUEST_HEADERS, 'content-length': Buffer.byteLength(body) } }, (res) => {
    let tail = '';
    res.on('data', (chunk: Buffer) => {
      state.firstByteAt ??= performance.now() - started;
      tail = (tail + chunk.toString('utf8')).slice(-32);
    });
    res.on('end', () => {
      state.ended = true;
      state.done = res.statusCode === 200 && tail.endsWith('data: [DONE]\n\n');
    });
    res.on('error', () => (state.ended = true));
  });
  req.on('error', () => (state.ended = true));
  req.end(body);
  return state;
}

/** The hard limit on open files (Node raises its soft limit to it), or undefined when unknown. */
export function fdLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const fields = line?.trim().split(/\s+/);
    const soft = fields?.[3];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
