/**
 * `npm run bench` (`tsx bench/run.ts`): what the gateway costs a user on top of a plain Express forward,
 * measured in one run against one mock upstream, every target of issue #14 printed with PASS/FAIL. See
 * bench/README.md.
 *
 * Flags: `--quick` (1 s cells, fewer setups: a harness check for CI; targets indicative only),
 * `--loader=wrk|autocannon` (default wrk when installed), `--only=router,guardrail-window` (gateway setups;
 * baseline and direct always run), `--no-memory`, `--no-throughput`, `--no-profile`, `--no-import`,
 * `--memory-baseline`, `--streams=N`, `--duration=S` (seconds a cell), `--ratio-rounds=N` (paired rounds of the CPU
 * ratio targets: default 3, 0 with `--quick`; 0 skips the phase).
 */
import { execSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type LoadResult, type LoaderName, checkAnswer, runLoad, timedLoop, wrkAvailable, percentile } from './load.js';
import { type MemoryResult, fdLimit, mb, memoryRun } from './memory.js';
import { ServerProcess, installCleanup, killAll } from './processes.js';
import { type ImportTiming, measureImport } from './import-time.js';
import { GATEWAY_CODE, ensureBuilt } from './package.js';
import { type CpuProfile, summarizeProfile } from './profile-summary.js';
import {
  type Cell,
  type GuardrailTiming,
  PAIRED_RATIOS,
  type PairedCpu,
  type PairedCpuCell,
  type PairedCpuRound,
  type ProfileResult,
  type SetupOutcome,
  evaluateTargets,
  renderReport,
  tracingCost,
} from './report.js';
import { GUARDRAIL_LATENCY_MS, GUARDRAIL_WINDOW_CHARS, SETUPS, type Setup, setupNamed } from './setups.js';
import {
  type BenchProtocol,
  FAST_TEXT,
  MODEL_FAST,
  MODEL_PACED,
  MODES,
  type Mode,
  PACED_TEXT,
  PROTOCOL_PATHS,
  STREAM_CHUNKS,
  STREAM_PACED_DELAY_MS,
  modeBody,
  requestBody,
} from './workload.js';
import { applyGuardrail, pairedWindowTiming } from './guardrail-timing.js';
import { Client } from 'undici';

interface Config {
  quick: boolean;
  loader: LoaderName;
  only: string[] | undefined;
  memory: boolean;
  memoryBaseline: boolean;
  throughput: boolean;
  profile: boolean;
  importTime: boolean;
  streams: number;
  cellS: number;
  warmupS: number;
  timedRequests: number;
  timedMaxS: number;
  connections: number[];
  slowChunkDelayMs: number;
  /** Paired rounds of the CPU ratio targets (0: no paired phase). */
  ratioRounds: number;
}

function parseArgs(argv: string[]): Config {
  const value = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const quick = argv.includes('--quick');
  const loader = value('loader');
  if (loader !== undefined && loader !== 'wrk' && loader !== 'autocannon') throw new Error(`--loader must be wrk or autocannon, not '${loader}'`);
  const hasWrk = wrkAvailable();
  if (loader === 'wrk' && !hasWrk) throw new Error('--loader=wrk, but wrk is not installed (apt-get install wrk, or bash .ci/wrk.sh)');
  const duration = value('duration');
  const streams = value('streams');
  const ratioRounds = value('ratio-rounds');
  if (ratioRounds !== undefined && !/^\d+$/.test(ratioRounds)) throw new Error(`--ratio-rounds must be a whole number, not '${ratioRounds}'`);
  return {
    quick,
    // wrk when installed: C, one thread, far less of the two cores than autocannon (see bench/README.md).
    loader: (loader as LoaderName | undefined) ?? (hasWrk ? 'wrk' : 'autocannon'),
    only: value('only')?.split(','),
    memory: !argv.includes('--no-memory'),
    memoryBaseline: argv.includes('--memory-baseline'),
    throughput: !argv.includes('--no-throughput'),
    profile: !argv.includes('--no-profile'),
    importTime: !argv.includes('--no-import'),
    streams: streams === undefined ? (quick ? 200 : 2000) : Number(streams),
    cellS: duration === undefined ? (quick ? 1 : 3) : Number(duration),
    // Once per setup and mode, at 50 connections (wrk runs whole seconds: 1 s is its least).
    warmupS: 1,
    timedRequests: quick ? 200 : 2000,
    timedMaxS: quick ? 0.4 : 1.5,
    connections: [1, 50],
    slowChunkDelayMs: quick ? 100 : 500,
    ratioRounds: ratioRounds === undefined ? (quick ? 0 : 5) : Number(ratioRounds),
  };
}

const log = (line: string): void => void process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const config = parseArgs(process.argv.slice(2));
  installCleanup();
  const runStarted = performance.now();
  const loadBefore = loadavg();
  const setups = selectSetups(config);
  const header = machineHeader(config, loadBefore);
  for (const line of header) log(line);
  if (loadBefore[0]! > cpus().length * 0.5) {
    log(`WARNING: load average ${loadBefore[0]!.toFixed(1)} on ${cpus().length} cores before the run: other processes compete for CPU, so absolute numbers are low and noisy (ratios suffer less)`);
  }
  log(
    `${config.cellS} s a cell, ${config.warmupS} s warm-up per setup and mode at 50 connections; modes ${MODES.join(', ')}; connections ${config.connections.join(', ')}; ${setups.length} setups; ` +
      `${config.ratioRounds} paired rounds for the CPU ratios`,
  );

  // The gateway setups run the built package: build dist/ once, now, before any server starts.
  log('\n## the package under test (dist/)');
  const built = ensureBuilt(log);
  log(built === undefined ? '  dist/ is up to date with lib/' : '  built');

  // Loading the package first, while no server runs (a fresh process each time).
  let importTiming: ImportTiming | undefined;
  if (config.importTime) {
    log('\n## loading the package (fresh node, built dist/)');
    try {
      importTiming = measureImport(5, built);
      log(`  require ${importTiming.requireMedianMs.toFixed(0)} ms, import ${importTiming.importMedianMs.toFixed(0)} ms (medians of 5)`);
    } catch (err) {
      log(`  not measured: ${(err as Error).message}`);
    }
  }

  const mock = await started(ServerProcess.start('mock upstream', 'mock-upstream.ts', ['openai']));
  const emulator = setups.some((s) => s.needsEmulator)
    ? await started(ServerProcess.start('bedrock emulator', 'mock-upstream.ts', ['bedrock', `--latency=${GUARDRAIL_LATENCY_MS}`]))
    : undefined;
  log(`mock upstream ${mock.url} (pid ${mock.pid})${emulator ? `, Bedrock emulator ${emulator.url} (pid ${emulator.pid}, +${GUARDRAIL_LATENCY_MS} ms)` : ''}`);

  const cells: Cell[] = [];
  const outcomes: SetupOutcome[] = [];
  const guardrail: GuardrailTiming = { windowChars: GUARDRAIL_WINDOW_CHARS, emulatorLatencyMs: GUARDRAIL_LATENCY_MS, roundTripP50Ms: Number.NaN, ttfbP50Ms: {} };
  const totalCells = setups.filter((s) => s.throughput !== false).reduce((n, s) => n + modesOf(s).length * connectionsOf(config, s).length, 0);
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
    const checks = await checkTarget(origin, setup.protocol);
    for (const problem of checks) log(`  CHECK FAILED: ${problem}`);
    outcomes.push({ name: setup.name, description: setup.description, status: 'ok', reason: undefined, checks });
    for (const mode of modesOf(setup)) {
      await runLoad({ origin, body: modeBody(mode, setup.protocol), path: pathOf(setup), connections: 50, loader: config.loader, warmupS: 0, durationS: config.warmupS });
      for (const connections of connectionsOf(config, setup)) {
        const cell = await measureCell(config, setup, origin, server, mock, mode, connections);
        cells.push(cell);
        log(
          `  [${cells.length}/${totalCells}] ${mode.padEnd(6)} c=${String(connections).padEnd(2)} ` +
            `${cell.load.reqPerSec.toFixed(0).padStart(6)} req/s  p50 ${cell.load.latencyP50Ms.toFixed(2)} ms  p99 ${cell.load.latencyP99Ms.toFixed(2)} ms` +
            (cell.timed ? `  timed p50 ${cell.timed.latencyP50Ms.toFixed(3)} ms  TTFB ${cell.timed.ttfbP50Ms.toFixed(3)} ms` : '') +
            (cell.serverCpuUsPerReq !== undefined ? `  CPU ${cell.serverCpuUsPerReq.toFixed(0)} µs/req` : '') +
            (cell.load.errors + cell.load.non2xx > 0 ? `  ERRORS ${cell.load.errors} non-2xx ${cell.load.non2xx}` : ''),
        );
      }
    }
    if (setup.kind === 'direct') await measureDirectWindow(config, origin, guardrail);
    if (setup.needsEmulator && server && emulator) await measurePairedWindow(config, setup, origin, mock.url, emulator.url, guardrail);
    await server?.stop();
  }
  if (emulator && config.throughput) {
    guardrail.roundTripP50Ms = await guardrailRoundTrip(emulator.url);
    log(`\nguardrail round trip alone (ApplyGuardrail, the answer's first ${GUARDRAIL_WINDOW_CHARS} chars, plain HTTP from the client): p50 ${guardrail.roundTripP50Ms.toFixed(2)} ms`);
  }
  const pairedCpu =
    config.throughput && config.ratioRounds > 0
      ? await pairedCpuPhase(config, setups, mock).catch((err: unknown) => {
          log(`  paired rounds failed: ${(err as Error).message} (the CPU targets are judged on the single cells)`);
          return undefined;
        })
      : undefined;
  const profiles = config.profile
    ? await profilePass(config, mock, emulator).catch((err: unknown) => {
        log(`  profile pass failed: ${(err as Error).message}`);
        return undefined;
      })
    : undefined;
  await emulator?.stop();
  await mock.stop();

  const memory = config.memory ? await memoryPhase(config, setups) : [];
  const elapsedS = (performance.now() - runStarted) / 1000;
  const references = Object.fromEntries(setups.filter((s) => s.reference !== undefined).map((s) => [s.name, s.reference!]));
  const measurements = { cells, guardrail, memory, streams: config.streams, loader: config.loader, importTiming, profiles, references, pairedCpu };
  const targets = evaluateTargets(measurements);
  const report = renderReport({ measurements, outcomes, targets, quick: config.quick, header });
  log(`\n${report}`);
  const results = {
    meta: {
      date: new Date().toISOString(),
      commit: gitCommit(),
      node: process.version,
      cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
      memory: mb(totalmem()),
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadavg(),
      loader: config.loader,
      loaderVersion: loaderVersion(config.loader),
      quick: config.quick,
      cellSeconds: config.cellS,
      warmupSeconds: config.warmupS,
      ratioRounds: config.ratioRounds,
      streamChunks: STREAM_CHUNKS,
      pacedChunkDelayMs: STREAM_PACED_DELAY_MS,
      elapsedSeconds: elapsedS,
    },
    setups: outcomes,
    cells,
    guardrail,
    pairedCpu,
    memory,
    importTiming,
    profiles: profiles?.map((p) => ({ ...p, gateway: p.gateway.slice(0, 30), modules: p.modules.slice(0, 30) })),
    targets,
    tracingCost: tracingCost(cells, references),
  };
  const dir = resolve(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(resolve(dir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`raw numbers: bench/results/latest.json; whole run ${elapsedS.toFixed(0)} s`);
}

/**
 * The setups of this run: `--quick` keeps those marked quick; `--only` names gateway setups (baseline and
 * direct always run), and a setup reported relative to another (`reference`) brings that one along.
 */
function selectSetups(config: Config): Setup[] {
  const wanted = new Set(config.only ?? SETUPS.map((s) => s.name));
  for (const s of SETUPS) if (wanted.has(s.name) && s.reference !== undefined && (!config.quick || s.quick)) wanted.add(s.reference);
  return SETUPS.filter((s) => (config.quick ? s.quick : true) && (s.kind !== 'gateway' || wanted.has(s.name)));
}

function modesOf(setup: Setup): readonly Mode[] {
  return setup.modes ?? MODES;
}

function connectionsOf(config: Config, setup: Setup): readonly number[] {
  return setup.connections ?? config.connections;
}

/** Date, machine, Node, loader and load average: what the README quotes beside the numbers. */
function machineHeader(config: Config, loadBefore: number[]): string[] {
  const cpu = cpus();
  return [
    `# express-llm-gateway bench${config.quick ? ' (quick: a harness check, targets indicative only)' : ''}`,
    '',
    `- date: ${new Date().toISOString()}, commit ${gitCommit() ?? '?'}`,
    `- machine: ${cpu[0]?.model.trim() ?? '?'}, ${cpu.length} cores, ${mb(totalmem())} RAM, ${hostname()}${cgroupCpus()}`,
    `- Node ${process.version}; loader: ${config.loader} (${loaderVersion(config.loader)})${config.loader === 'autocannon' && !wrkAvailable() ? ' — wrk not installed' : ''}`,
    `- load average before: ${loadBefore.map((l) => l.toFixed(2)).join(' / ')} (1 / 5 / 15 min)`,
    `- gateway setups run ${GATEWAY_CODE}`,
  ];
}

function loaderVersion(loader: LoaderName): string {
  if (loader === 'wrk') {
    const out = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
    return (`${out.stdout}${out.stderr}`.split('\n')[0] ?? '').replace(/\s*Copyright.*$/, '').trim() || 'wrk';
  }
  try {
    const pkg = JSON.parse(readFileSync(require.resolve('autocannon/package.json'), 'utf8')) as { version: string };
    return `autocannon ${pkg.version}, in the orchestrator's process`;
  } catch {
    return 'autocannon';
  }
}

/** A CPU quota (cgroup v2) below the core count, when there is one. */
function cgroupCpus(): string {
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota === undefined || quota === 'max' || period === undefined) return '';
    return `, cgroup CPU quota ${(Number(quota) / Number(period)).toFixed(1)} cores`;
  } catch {
    return '';
  }
}

/**
 * The profile target: a fresh `router` process, the V8 profiler on (through the inspector, started and
 * stopped around each cell, so start-up is not in it), one cell per mode at 50 connections. Separate from
 * the measured cells: the profiler costs CPU itself.
 */
async function profilePass(config: Config, mock: ServerProcess, emulator: ServerProcess | undefined): Promise<ProfileResult[] | undefined> {
  const setup = setupNamed('router');
  log(`\n## profile: router @50, V8 profiler on, ${config.cellS} s a mode`);
  // The gateway code is dist/ (tsc's readable output: its own line numbers are meaningful); source maps on
  // (this process only) map whatever still runs through tsx back to source lines.
  const target = await startTarget(setup, mock, emulator, ['--enable-source-maps']);
  if (!(target instanceof ServerProcess)) {
    log(`  not profiled: ${target === 'direct' ? 'no server' : target.reason}`);
    return undefined;
  }
  const dir = resolve(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const results: ProfileResult[] = [];
  try {
    for (const mode of MODES) {
      const body = modeBody(mode);
      await runLoad({ origin: target.url, body, connections: 50, loader: config.loader, warmupS: 0, durationS: config.warmupS });
      await target.profile('start');
      await runLoad({ origin: target.url, body, connections: 50, loader: config.loader, warmupS: 0, durationS: config.cellS });
      const file = resolve(dir, `profile-router-${mode}.cpuprofile`);
      await target.profile('stop', file);
      const summary = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
      results.push({ mode, file, busyMs: summary.busyUs / 1000, gateway: summary.gateway, modules: summary.byModule });
      const top = summary.gateway[0];
      log(`  ${mode.padEnd(6)} ${(summary.busyUs / 1000).toFixed(0)} ms busy; top gateway function: ${top ? `${(top.share * 100).toFixed(1)}% ${top.name}` : 'none'} (bench/results/profile-router-${mode}.cpuprofile)`);
    }
  } finally {
    await target.stop();
  }
  return results;
}

async function started(starting: Promise<ServerProcess | { skipped: string }>): Promise<ServerProcess> {
  const process = await starting;
  if (!(process instanceof ServerProcess)) throw new Error(`a reference server was skipped: ${process.skipped}`);
  return process;
}

type TargetProblem = { status: 'skipped' | 'failed'; reason: string };

/** Starts the setup's server process; the references must start, a gateway setup may be skipped or fail. */
async function startTarget(setup: Setup, mock: ServerProcess, emulator: ServerProcess | undefined, execArgv: string[] = []): Promise<ServerProcess | 'direct' | TargetProblem> {
  if (setup.kind === 'direct') return 'direct';
  if (setup.kind === 'baseline') return started(ServerProcess.start('baseline', 'baseline.ts', [mock.url]));
  try {
    const args = [setup.name, mock.url, ...(emulator ? [emulator.url] : [])];
    const result = await ServerProcess.start(setup.name, 'gateway.ts', args, execArgv);
    return result instanceof ServerProcess ? result : { status: 'skipped', reason: result.skipped };
  } catch (err) {
    return { status: 'failed', reason: (err as Error).message };
  }
}

/** The request path of a setup's protocol. */
function pathOf(setup: Setup): string {
  return PROTOCOL_PATHS[setup.protocol ?? 'chat'];
}

/** One request per mode: the target must answer exactly what the mock sent, in 20 chunks when streaming. */
async function checkTarget(origin: string, protocol: BenchProtocol = 'chat'): Promise<string[]> {
  const problems: string[] = [];
  try {
    const json = await checkAnswer(origin, requestBody(MODEL_FAST, false, protocol), false, protocol);
    if (json.status !== 200 || json.content !== FAST_TEXT) problems.push(`non-streaming answer: status ${json.status}, ${json.raw.slice(0, 200)}`);
    for (const mode of ['stream', 'paced'] as const) {
      const sse = await checkAnswer(origin, modeBody(mode, protocol), true, protocol);
      if (sse.status !== 200 || sse.content !== FAST_TEXT || !sse.done) problems.push(`${mode} answer: status ${sse.status}, done ${sse.done}, ${sse.raw.slice(0, 200)}`);
      else if (sse.contentChunks !== STREAM_CHUNKS) problems.push(`${mode} answer: ${sse.contentChunks} content chunks, expected ${STREAM_CHUNKS}`);
    }
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
  mode: Mode,
  connections: number,
): Promise<Cell> {
  const body = modeBody(mode, setup.protocol);
  const path = pathOf(setup);
  const { load, serverCpuUsPerReq, mockCpuUsPerReq, serverRssMax } = await loadWithCpu(config, { origin, body, path, connections }, server, mock);
  // Paced answers take ~100 ms each: give the timed loop more time so its p50 rests on enough requests.
  const timed =
    connections === 1
      ? await timedLoop({ origin, body, path, requests: config.timedRequests, maxSeconds: mode === 'paced' ? config.timedMaxS * 2 : config.timedMaxS, warmupRequests: mode === 'paced' ? 3 : 20 })
      : undefined;
  return {
    setup: setup.name,
    kind: setup.kind,
    mode,
    connections,
    load,
    timed,
    serverCpuUsPerReq,
    mockCpuUsPerReq,
    serverRssMax,
  };
}

interface LoadWithCpu {
  load: LoadResult;
  /** CPU time (user + system) of the server process during the load ÷ completed requests, µs; none without a server. */
  serverCpuUsPerReq: number | undefined;
  mockCpuUsPerReq: number;
  /** Largest RSS of the server process sampled (every 0.5 s) during the load, bytes. */
  serverRssMax: number | undefined;
}

/**
 * One measured load of `config.cellS` seconds (no warm-up) with the server's and the mock's CPU counters
 * read (IPC `stats()`) just before and just after: their deltas ÷ the requests the load generator completed.
 * The throughput cells and the paired rounds both measure through this.
 */
async function loadWithCpu(
  config: Config,
  request: { origin: string; body: string; path: string; connections: number },
  server: ServerProcess | undefined,
  mock: ServerProcess,
): Promise<LoadWithCpu> {
  const serverBefore = await server?.stats();
  const mockBefore = await mock.stats();
  let maxRss = serverBefore?.rss ?? 0;
  const sampler = setInterval(() => {
    server?.stats().then((s) => (maxRss = Math.max(maxRss, s.rss)), () => undefined);
  }, 500);
  let load;
  try {
    load = await runLoad({ ...request, loader: config.loader, warmupS: 0, durationS: config.cellS });
  } finally {
    clearInterval(sampler);
  }
  const serverAfter = await server?.stats();
  const mockAfter = await mock.stats();
  const completed = Math.max(1, load.requests);
  const cpuUs = (before: { cpuUserUs: number; cpuSystemUs: number }, after: { cpuUserUs: number; cpuSystemUs: number }): number =>
    (after.cpuUserUs + after.cpuSystemUs - before.cpuUserUs - before.cpuSystemUs) / completed;
  return {
    load,
    serverCpuUsPerReq: serverBefore && serverAfter ? cpuUs(serverBefore, serverAfter) : undefined,
    mockCpuUsPerReq: cpuUs(mockBefore, mockAfter),
    serverRssMax: serverAfter ? Math.max(maxRss, serverAfter.rss) : undefined,
  };
}

/** The setups of the paired rounds, in their forward order: the CPU ratio targets' setups and references. */
const PAIRED_SETUPS = [...new Set(PAIRED_RATIOS.flatMap(([setup, reference]) => [reference, setup]))];
const PAIRED_CONNECTIONS = 50;

/**
 * The CPU ratio targets in paired rounds (see bench/README.md): baseline, router and the protocol setups of
 * this run started afresh for each round, all at once (each idle while another is measured); for each mode,
 * every process gets a warm-up then a measured cell (`loadWithCpu`), one after another, the order reversed
 * every other round. A ratio divides cells seconds apart, not minutes: the single cells of the throughput phase,
 * run setup after setup, moved by 10–20% between two quiet runs on this shared machine.
 */
async function pairedCpuPhase(config: Config, setups: Setup[], mock: ServerProcess): Promise<PairedCpu | undefined> {
  const chosen = PAIRED_SETUPS.map((name) => setups.find((s) => s.name === name && s.throughput !== false)).filter((s): s is Setup => s !== undefined);
  if (!chosen.some((s) => s.name === 'router')) {
    log(`\n## paired rounds: skipped (router is not in this run; every paired ratio needs it)`);
    return undefined;
  }
  const perProcessS = config.warmupS + config.cellS + 0.5;
  log(
    `\n## paired rounds: ${chosen.map((s) => s.name).join(', ')} running together, fresh processes each round; ${config.ratioRounds} rounds × ${MODES.length} modes @${PAIRED_CONNECTIONS}, ` +
      `${config.warmupS} s warm-up + ${config.cellS} s each (about ${(config.ratioRounds * MODES.length * chosen.length * perProcessS).toFixed(0)} s)`,
  );
  const rounds: PairedCpuRound[] = [];
  for (let round = 1; round <= config.ratioRounds; round++) {
    // Fresh processes every round: what one process settled on (JIT, GC sizing) moves every round measured
    // on it alike. With the same processes for all rounds, one full run read router-responses ÷ router at
    // 1.15-1.31x in all five rounds, where the runs before and after read 1.01-1.18x: alternating rounds
    // cannot average out a process, restarting does.
    const running: [Setup, ServerProcess][] = [];
    try {
      for (const setup of chosen) {
        const target = await startTarget(setup, mock, undefined);
        if (target instanceof ServerProcess) running.push([setup, target]);
        else if (round === 1) log(`  ${setup.name}: not in the paired rounds (${target === 'direct' ? 'no server' : `${target.status}: ${target.reason}`})`);
      }
      if (!running.some(([s]) => s.name === 'router')) {
        log('  router did not start: no paired rounds');
        return undefined;
      }
      const order = round % 2 === 1 ? running : [...running].reverse();
      for (const mode of MODES) {
        const cells: Record<string, PairedCpuCell> = {};
        for (const [setup, server] of order) {
          if (!modesOf(setup).includes(mode)) continue;
          const request = { origin: server.url, body: modeBody(mode, setup.protocol), path: pathOf(setup), connections: PAIRED_CONNECTIONS };
          await runLoad({ ...request, loader: config.loader, warmupS: 0, durationS: config.warmupS });
          const { load, serverCpuUsPerReq, mockCpuUsPerReq } = await loadWithCpu(config, request, server, mock);
          cells[setup.name] = { cpuUsPerReq: serverCpuUsPerReq!, mockCpuUsPerReq, reqPerSec: load.reqPerSec, requests: load.requests, errors: load.errors + load.non2xx };
        }
        rounds.push({ round, mode, order: order.map(([s]) => s.name).filter((name) => cells[name] !== undefined), cells });
        const shown = order
          .filter(([s]) => cells[s.name] !== undefined)
          .map(([s]) => {
            const c = cells[s.name]!;
            const pair = PAIRED_RATIOS.find(([setup]) => setup === s.name);
            const ref = pair && cells[pair[1]];
            return `${s.name} ${c.cpuUsPerReq.toFixed(0)}${ref ? ` (${(c.cpuUsPerReq / ref.cpuUsPerReq).toFixed(2)}× ${pair[1]})` : ''}${c.errors ? ` ERRORS ${c.errors}` : ''}`;
          });
        log(`  round ${round}/${config.ratioRounds} ${mode.padEnd(6)} CPU µs/req: ${shown.join(', ')}`);
      }
    } finally {
      for (const [, server] of running) await server.stop();
    }
  }
  return { connections: PAIRED_CONNECTIONS, cellS: config.cellS, warmupS: config.warmupS, rounds };
}

/**
 * The paced answer straight from the mock, alone: how long one window's worth of content takes to arrive
 * when nothing else runs (shown in the guardrail table; the target uses the paired rounds below).
 */
async function measureDirectWindow(config: Config, origin: string, timing: GuardrailTiming): Promise<void> {
  const timed = await timedLoop({
    origin,
    body: requestBody(MODEL_PACED, true),
    requests: config.quick ? 5 : 30,
    maxSeconds: config.quick ? 1 : 4,
    warmupRequests: 2,
    contentChars: GUARDRAIL_WINDOW_CHARS,
  });
  timing.windowGenerationP50Ms = timed.contentP50Ms;
  timing.directTtfbP50Ms = timed.ttfbP50Ms;
  timing.directTotalP50Ms = timed.latencyP50Ms;
  log(`  paced answer (${MODEL_PACED}): first ${GUARDRAIL_WINDOW_CHARS} chars after ${timed.contentP50Ms?.toFixed(1)} ms, whole answer ${timed.latencyP50Ms.toFixed(1)} ms`);
}

/**
 * The window TTFB target (see bench/guardrail-timing.ts): paired rounds, the guardrail setup and the mock
 * asked at the same moment, the round trip sent when the direct stream passed one window.
 */
async function measurePairedWindow(config: Config, setup: Setup, origin: string, mockUrl: string, emulatorUrl: string, timing: GuardrailTiming): Promise<void> {
  const paired = await pairedWindowTiming({
    gatewayOrigin: origin,
    mockOrigin: mockUrl,
    emulatorOrigin: emulatorUrl,
    windowChars: GUARDRAIL_WINDOW_CHARS,
    rounds: config.quick ? 5 : 40,
    maxSeconds: config.quick ? 1 : 6,
    warmupRounds: 2,
  });
  timing.paired ??= {};
  timing.paired[setup.name] = paired;
  timing.ttfbP50Ms[setup.name] = paired.ttfbP50Ms;
  log(
    `  paced answer (${MODEL_PACED}), ${paired.rounds} paired rounds: TTFB p50 ${paired.ttfbP50Ms.toFixed(1)} ms; direct's first ${GUARDRAIL_WINDOW_CHARS} chars ` +
      `${paired.windowGenerationP50Ms.toFixed(1)} ms, ApplyGuardrail from then ${paired.roundTripP50Ms.toFixed(1)} ms${paired.errors ? `, ${paired.errors} errors` : ''}`,
  );
}

/** ApplyGuardrail with the answer's first window over plain keep-alive HTTP, alone, p50 (shown, not judged). */
async function guardrailRoundTrip(emulatorUrl: string): Promise<number> {
  const client = new Client(emulatorUrl);
  const body = JSON.stringify({ source: 'OUTPUT', content: [{ text: { text: PACED_TEXT.slice(0, GUARDRAIL_WINDOW_CHARS) } }] });
  const times: number[] = [];
  try {
    for (let i = 0; i < 22; i++) {
      const ms = await applyGuardrail(client, body);
      if (ms === undefined) throw new Error('ApplyGuardrail did not answer 200');
      if (i >= 2) times.push(ms);
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
