/**
 * `npm run bench` (`tsx bench/run.ts`): the gateway's overhead against a plain Express forward, measured
 * in one run against one mock upstream. See bench/README.md.
 *
 * Flags: `--quick` (about 1 s a cell, fewer cells: a harness check for CI), `--loader=autocannon|wrk` (default autocannon),
 * `--only=router,guardrail-window` (gateway setups; baseline and direct always run: the ratios and the added latencies need them), `--no-memory`, `--no-throughput` (memory run only), `--memory-baseline` (memory run through the baseline too), `--streams=N`,
 * `--duration=S` (seconds a cell).
 */
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type LoaderName, checkAnswer, runLoad, timedLoop, wrkAvailable, percentile } from './load.js';
import { type MemoryResult, fdLimit, mb, memoryRun } from './memory.js';
import { ServerProcess, installCleanup, killAll } from './processes.js';
import { type Cell, type GuardrailTiming, type SetupOutcome, evaluateTargets, renderReport } from './report.js';
import { GUARDRAIL_LATENCY_MS, GUARDRAIL_WINDOW_CHARS, SETUPS, type Setup } from './setups.js';
import { FAST_TEXT, MODEL_FAST, MODEL_PACED, STREAM_CHUNKS, requestBody } from './workload.js';

interface Config {
  quick: boolean;
  loader: LoaderName;
  only: string[] | undefined;
  memory: boolean;
  memoryBaseline: boolean;
  throughput: boolean;
  streams: number;
  cellS: number;
  warmupS: number;
  timedRequests: number;
  timedMaxS: number;
  connections: number[];
  slowChunkDelayMs: number;
}

function parseArgs(argv: string[]): Config {
  const value = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const quick = argv.includes('--quick');
  const loader = value('loader');
  if (loader !== undefined && loader !== 'wrk' && loader !== 'autocannon') throw new Error(`--loader must be wrk or autocannon, not '${loader}'`);
  if (loader === 'wrk' && !wrkAvailable()) throw new Error('--loader=wrk, but wrk is not installed (apt-get install wrk)');
  const duration = value('duration');
  const streams = value('streams');
  return {
    quick,
    // autocannon unless wrk is asked for: see bench/README.md (wrk's socket errors in this sandbox).
    loader: (loader as LoaderName | undefined) ?? 'autocannon',
    only: value('only')?.split(','),
    memory: !argv.includes('--no-memory'),
    memoryBaseline: argv.includes('--memory-baseline'),
    throughput: !argv.includes('--no-throughput'),
    streams: streams === undefined ? (quick ? 200 : 2000) : Number(streams),
    cellS: duration === undefined ? (quick ? 0.8 : 5) : Number(duration),
    warmupS: quick ? 0.3 : 1,
    timedRequests: quick ? 200 : 2000,
    timedMaxS: quick ? 0.4 : 1.5,
    connections: [1, 50],
    slowChunkDelayMs: quick ? 100 : 500,
  };
}

const log = (line: string): void => void process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const config = parseArgs(process.argv.slice(2));
  installCleanup();
  const runStarted = performance.now();
  const loadBefore = loadavg()[0]!;
  if (loadBefore > cpus().length * 0.5) {
    log(`WARNING: load average ${loadBefore.toFixed(1)} on ${cpus().length} cores before the run: other processes compete for CPU, so absolute numbers are low and noisy (ratios suffer less)`);
  }
  const setups = SETUPS.filter((s) => (config.quick ? s.quick : true) && (s.kind !== 'gateway' || !config.only || config.only.includes(s.name)));
  log(`# express-llm-gateway bench${config.quick ? ' (quick)' : ''}: ${config.loader}, ${config.cellS} s a cell after ${config.warmupS} s warm-up, ${setups.length} targets`);

  const mock = await started(ServerProcess.start('mock upstream', 'mock-upstream.ts', ['openai']));
  const emulator = setups.some((s) => s.needsEmulator)
    ? await started(ServerProcess.start('bedrock emulator', 'mock-upstream.ts', ['bedrock', `--latency=${GUARDRAIL_LATENCY_MS}`]))
    : undefined;
  log(`mock upstream ${mock.url} (pid ${mock.pid})${emulator ? `, Bedrock emulator ${emulator.url} (pid ${emulator.pid}, +${GUARDRAIL_LATENCY_MS} ms)` : ''}`);

  const cells: Cell[] = [];
  const outcomes: SetupOutcome[] = [];
  const guardrail: GuardrailTiming = { windowChars: GUARDRAIL_WINDOW_CHARS, emulatorLatencyMs: GUARDRAIL_LATENCY_MS, roundTripP50Ms: Number.NaN, ttfbP50Ms: {} };
  const totalCells = setups.filter((s) => s.throughput !== false).length * 2 * config.connections.length;
  for (const setup of config.throughput ? setups.filter((s) => s.throughput !== false) : []) {
    const target = await startTarget(setup, mock, emulator);
    if (!(target instanceof ServerProcess) && target !== 'direct') {
      outcomes.push({ name: setup.name, description: setup.description, status: target.status, reason: target.reason, checks: [] });
      log(`\n## ${setup.name}: ${target.status.toUpperCase()} (${target.reason})`);
      continue;
    }
    const origin = target === 'direct' ? mock.url : target.url;
    const server = target === 'direct' ? undefined : target;
    log(`\n## ${setup.name}: ${setup.description}${server ? ` (pid ${server.pid})` : ''}`);
    const checks = await checkTarget(origin);
    for (const problem of checks) log(`  CHECK FAILED: ${problem}`);
    outcomes.push({ name: setup.name, description: setup.description, status: 'ok', reason: undefined, checks });
    for (const stream of [false, true]) {
      for (const connections of config.connections) {
        const cell = await measureCell(config, setup, origin, server, mock, stream, connections);
        cells.push(cell);
        log(
          `  [${cells.length}/${totalCells}] ${stream ? 'stream' : 'json  '} c=${String(connections).padEnd(2)} ` +
            `${cell.load.reqPerSec.toFixed(0).padStart(6)} req/s  p50 ${cell.load.latencyP50Ms.toFixed(2)} ms  p99 ${cell.load.latencyP99Ms.toFixed(2)} ms` +
            (cell.timed ? `  timed p50 ${cell.timed.latencyP50Ms.toFixed(3)} ms  TTFB ${cell.timed.ttfbP50Ms.toFixed(3)} ms` : '') +
            (cell.serverCpuUsPerReq !== undefined ? `  CPU ${cell.serverCpuUsPerReq.toFixed(0)} µs/req` : '') +
            (cell.load.errors + cell.load.non2xx > 0 ? `  ERRORS ${cell.load.errors} non-2xx ${cell.load.non2xx}` : ''),
        );
      }
    }
    if (setup.kind === 'direct' || setup.needsEmulator) await measureGuardrailTtfb(config, setup, origin, guardrail);
    await server?.stop();
  }
  if (emulator && config.throughput) {
    guardrail.roundTripP50Ms = await guardrailRoundTrip(emulator.url);
    log(`\nguardrail round trip (ApplyGuardrail, ${GUARDRAIL_WINDOW_CHARS} chars, plain HTTP from the client): p50 ${guardrail.roundTripP50Ms.toFixed(2)} ms`);
  }
  await emulator?.stop();
  await mock.stop();

  const memory = config.memory ? await memoryPhase(config, setups) : [];
  const elapsedS = (performance.now() - runStarted) / 1000;
  const targets = evaluateTargets(cells, guardrail, memory, config.streams);
  const report = renderReport({ cells, outcomes, targets, guardrail, memory });
  log(`\n${report}`);
  const results = {
    meta: {
      date: new Date().toISOString(),
      commit: gitCommit(),
      node: process.version,
      cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
      memory: mb(totalmem()),
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadavg()[0],
      loader: config.loader,
      quick: config.quick,
      cellSeconds: config.cellS,
      warmupSeconds: config.warmupS,
      streamChunks: STREAM_CHUNKS,
      elapsedSeconds: elapsedS,
    },
    setups: outcomes,
    cells,
    guardrail,
    memory,
    targets,
  };
  const dir = resolve(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(resolve(dir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`raw numbers: bench/results/latest.json; whole run ${elapsedS.toFixed(0)} s`);
}

async function started(starting: Promise<ServerProcess | { skipped: string }>): Promise<ServerProcess> {
  const process = await starting;
  if (!(process instanceof ServerProcess)) throw new Error(`a reference server was skipped: ${process.skipped}`);
  return process;
}

type TargetProblem = { status: 'skipped' | 'failed'; reason: string };

/** Starts the setup's server process; the references must start, a gateway setup may be skipped or fail. */
async function startTarget(setup: Setup, mock: ServerProcess, emulator: ServerProcess | undefined): Promise<ServerProcess | 'direct' | TargetProblem> {
  if (setup.kind === 'direct') return 'direct';
  if (setup.kind === 'baseline') return started(ServerProcess.start('baseline', 'baseline.ts', [mock.url]));
  try {
    const args = [setup.name, mock.url, ...(emulator ? [emulator.url] : [])];
    const result = await ServerProcess.start(setup.name, 'gateway.ts', args);
    return result instanceof ServerProcess ? result : { status: 'skipped', reason: result.skipped };
  } catch (err) {
    return { status: 'failed', reason: (err as Error).message };
  }
}

/** One request each way: the target must answer exactly what the mock sent, in 20 chunks when streaming. */
async function checkTarget(origin: string): Promise<string[]> {
  const problems: string[] = [];
  try {
    const json = await checkAnswer(origin, requestBody(MODEL_FAST, false), false);
    if (json.status !== 200 || json.content !== FAST_TEXT) problems.push(`non-streaming answer: status ${json.status}, ${json.raw.slice(0, 200)}`);
    const sse = await checkAnswer(origin, requestBody(MODEL_FAST, true), true);
    if (sse.status !== 200 || sse.content !== FAST_TEXT || !sse.done) problems.push(`streaming answer: status ${sse.status}, done ${sse.done}, ${sse.raw.slice(0, 200)}`);
    else if (sse.contentChunks !== STREAM_CHUNKS) problems.push(`streaming answer: ${sse.contentChunks} content chunks, expected ${STREAM_CHUNKS}`);
  } catch (err) {
    problems.push(`request failed: ${(err as Error).message}`);
  }
  return problems;
}

async function measureCell(
  config: Config,
  setup: Setup,
  origin: string,
  server: ServerProcess | undefined,
  mock: ServerProcess,
  stream: boolean,
  connections: number,
): Promise<Cell> {
  const body = requestBody(MODEL_FAST, stream);
  const loadOptions = { origin, body, connections, loader: config.loader, warmupS: 0 };
  await runLoad({ ...loadOptions, durationS: config.warmupS });
  const serverBefore = await server?.stats();
  const mockBefore = await mock.stats();
  let maxRss = serverBefore?.rss ?? 0;
  const sampler = setInterval(() => {
    server?.stats().then((s) => (maxRss = Math.max(maxRss, s.rss)), () => undefined);
  }, 500);
  let load;
  try {
    load = await runLoad({ ...loadOptions, durationS: config.cellS });
  } finally {
    clearInterval(sampler);
  }
  const serverAfter = await server?.stats();
  const mockAfter = await mock.stats();
  const completed = Math.max(1, load.requests);
  const cpuUs = (before: { cpuUserUs: number; cpuSystemUs: number }, after: { cpuUserUs: number; cpuSystemUs: number }): number =>
    (after.cpuUserUs + after.cpuSystemUs - before.cpuUserUs - before.cpuSystemUs) / completed;
  const timed =
    connections === 1
      ? await timedLoop({ origin, body, requests: config.timedRequests, maxSeconds: config.timedMaxS, warmupRequests: 20 })
      : undefined;
  return {
    setup: setup.name,
    kind: setup.kind,
    stream,
    connections,
    load,
    timed,
    serverCpuUsPerReq: serverBefore && serverAfter ? cpuUs(serverBefore, serverAfter) : undefined,
    mockCpuUsPerReq: cpuUs(mockBefore, mockAfter),
    serverRssMax: serverAfter ? Math.max(maxRss, serverAfter.rss) : undefined,
  };
}

/**
 * The window TTFB target, on a paced answer longer than a window: for `direct`, when the first window's
 * worth of content had arrived (its generation time); for the guardrail setups, the first byte.
 */
async function measureGuardrailTtfb(config: Config, setup: Setup, origin: string, timing: GuardrailTiming): Promise<void> {
  const timed = await timedLoop({
    origin,
    body: requestBody(MODEL_PACED, true),
    requests: config.quick ? 5 : 30,
    maxSeconds: config.quick ? 1 : 4,
    warmupRequests: 2,
    contentChars: GUARDRAIL_WINDOW_CHARS,
  });
  if (setup.kind === 'direct') {
    timing.windowGenerationP50Ms = timed.contentP50Ms;
    timing.directTtfbP50Ms = timed.ttfbP50Ms;
    timing.directTotalP50Ms = timed.latencyP50Ms;
    log(`  paced answer (${MODEL_PACED}): first ${GUARDRAIL_WINDOW_CHARS} chars after ${timed.contentP50Ms?.toFixed(1)} ms, whole answer ${timed.latencyP50Ms.toFixed(1)} ms`);
  } else {
    timing.ttfbP50Ms[setup.name] = timed.ttfbP50Ms;
    log(`  paced answer (${MODEL_PACED}): TTFB p50 ${timed.ttfbP50Ms.toFixed(1)} ms, whole answer ${timed.latencyP50Ms.toFixed(1)} ms${timed.errors ? `, ${timed.errors} errors` : ''}`);
  }
}

/** One ApplyGuardrail call with a window of text, over plain keep-alive HTTP: the round trip the window pays. */
async function guardrailRoundTrip(emulatorUrl: string): Promise<number> {
  const { Client } = await import('undici');
  const { DEFAULT_GUARDRAIL } = await import('../lib/testing/bedrock-emulator.js');
  const client = new Client(emulatorUrl);
  const body = JSON.stringify({ source: 'OUTPUT', content: [{ text: { text: 'x '.repeat(GUARDRAIL_WINDOW_CHARS / 2) } }] });
  const path = `/guardrail/${DEFAULT_GUARDRAIL.id}/version/${DEFAULT_GUARDRAIL.version}/apply`;
  const times: number[] = [];
  try {
    for (let i = 0; i < 22; i++) {
      const start = performance.now();
      const answer = await client.request({ path, method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer bench' }, body });
      await answer.body.text();
      if (answer.statusCode !== 200) throw new Error(`ApplyGuardrail answered ${answer.statusCode}`);
      if (i >= 2) times.push(performance.now() - start);
    }
  } finally {
    await client.close();
  }
  return percentile(times, 50);
}

async function memoryPhase(config: Config, setups: Setup[]): Promise<MemoryResult[]> {
  const results: MemoryResult[] = [];
  const limit = fdLimit();
  // Client, server under test (2 each) and mock: 4 descriptors a stream in all, spread over 3 processes.
  if (limit !== undefined && limit < config.streams * 2 + 256) {
    log(`\n## memory: SKIPPED, open-file limit ${limit} is too low for ${config.streams} streams (raise the hard limit: ulimit -Hn)`);
    return results;
  }
  const targets = setups.filter((s) => s.memory === true && (s.kind !== 'baseline' || config.memoryBaseline));
  for (const setup of targets) {
    log(`\n## memory: ${config.streams} slow streams through ${setup.name}`);
    const mock = await started(
      ServerProcess.start('memory mock', 'mock-upstream.ts', ['openai', '--track-inflight', `--streams=${config.streams}`, `--slow-delay=${config.slowChunkDelayMs}`]),
    );
    try {
      const target = await startTarget(setup, mock, undefined);
      if (!(target instanceof ServerProcess)) {
        log(`  not measured: ${target === 'direct' ? 'no server' : target.reason}`);
        continue;
      }
      try {
        results.push(
          await memoryRun(setup.name, target, mock, { streams: config.streams, chunkDelayMs: config.slowChunkDelayMs, batch: 100, batchIntervalMs: 100, warmupRequests: config.quick ? 50 : 200, settleMs: config.quick ? 1_500 : 5_500 }, log),
        );
      } finally {
        await target.stop();
      }
    } finally {
      await mock.stop();
    }
  }
  return results;
}

function gitCommit(): string | undefined {
  try {
    return execSync('git rev-parse --short HEAD', { cwd: __dirname, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return undefined;
  }
}

main().then(
  () => {
    killAll();
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`bench: the harness failed: ${(err as Error).stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
