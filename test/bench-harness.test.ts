/**
 * The benchmark harness (bench/), not the gateway: what it sends and how it judges.
 *
 * - wrk: the script `bench/load.ts` generates must make wrk send the workload's POST (body and headers),
 *   and the harness must read wrk's counts back. An earlier script wrote `wrk.headers[[==[name]==]]`: Lua
 *   read `[[` as a long string, the script did not parse, wrk printed the error, exited 0 and sent plain
 *   GETs, so every answer was a 404 and every number of the run meant nothing. Here wrk runs for 1 s
 *   against a local server that records what it receives. Skipped (with a message) only when wrk is not
 *   installed; CI installs it (`.ci/wrk.sh`) before `npm test`.
 * - `evaluateTargets()` / `renderReport()`: a ratio above its bound fails, below passes, a quick run says
 *   indicative; the tracing-cost rows are ratios to the reference setup and never judged.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LoadResult, parseWrk, runLoad, wrkAvailable, wrkScript } from '../bench/load.js';
import { type Cell, type Measurements, type PairedCpu, evaluateTargets, median, renderReport, tracingCost } from '../bench/report.js';
import { CHAT_PATH, REQUEST_HEADERS, type Mode, modeBody } from '../bench/workload.js';

interface Received {
  requests: number;
  /** The first request that differs from the workload's, described. */
  wrong: string | undefined;
}

/** Answers every request with `status` and checks it against the workload's POST. */
async function recordingServer(expectedBody: string, status = 200): Promise<{ url: string; received: Received; close(): Promise<void> }> {
  const received: Received = { requests: 0, wrong: undefined };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.requests++;
      const body = Buffer.concat(chunks).toString('utf8');
      const problems = [
        req.method !== 'POST' && `method ${req.method}`,
        req.url !== CHAT_PATH && `path ${req.url}`,
        req.headers['content-type'] !== REQUEST_HEADERS['content-type'] && `content-type ${req.headers['content-type']}`,
        req.headers.authorization !== REQUEST_HEADERS.authorization && `authorization ${req.headers.authorization}`,
        body !== expectedBody && `body ${JSON.stringify(body.slice(0, 80))}`,
      ].filter(Boolean);
      if (problems.length > 0) received.wrong ??= problems.join(', ');
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const hasWrk = wrkAvailable();
if (!hasWrk) {
  console.warn('test/bench-harness.test.ts: wrk is not installed (apt-get install wrk, or bash .ci/wrk.sh): the wrk tests are skipped');
}
const withWrk = hasWrk ? describe : describe.skip;

withWrk('the wrk script (wrk installed)', () => {
  it.each(['json', 'stream'] as const)('makes wrk POST the %s workload with its headers, and its counts are read back', async (mode: Mode) => {
    const body = modeBody(mode);
    const server = await recordingServer(body);
    try {
      const result = await runLoad({ origin: server.url, body, connections: 2, durationS: 1, warmupS: 0, loader: 'wrk' });
      expect(server.received.wrong).toBeUndefined();
      expect(result.tool).toBe('wrk');
      expect(result.non2xx).toBe(0);
      expect(result.errors).toBe(0);
      expect(result.requests).toBeGreaterThan(10);
      // wrk counts completed answers; the server may have read a request or two wrk stopped waiting for.
      expect(server.received.requests).toBeGreaterThanOrEqual(result.requests);
      expect(server.received.requests).toBeLessThanOrEqual(result.requests + 2);
      expect(result.durationS).toBeGreaterThan(0.5);
      expect(result.reqPerSec).toBeCloseTo(result.requests / result.durationS, 5);
      expect(result.latencyP50Ms).toBeGreaterThan(0);
      expect(result.latencyP99Ms).toBeGreaterThanOrEqual(result.latencyP50Ms);
    } finally {
      await server.close();
    }
  });

  it('reports non-2xx answers as such (the symptom of the old script: every answer a 404)', async () => {
    const body = modeBody('json');
    const server = await recordingServer(body, 404);
    try {
      const result = await runLoad({ origin: server.url, body, connections: 1, durationS: 1, warmupS: 0, loader: 'wrk' });
      expect(server.received.wrong).toBeUndefined();
      expect(result.requests).toBeGreaterThan(0);
      expect(result.non2xx).toBe(result.requests);
    } finally {
      await server.close();
    }
  });

  it('a script Lua cannot parse breaks the run instead of passing as GETs', async () => {
    const body = modeBody('json');
    const server = await recordingServer(body);
    const dir = mkdtempSync(join(tmpdir(), 'bench-harness-'));
    try {
      // The old form: `[[` opens a long string.
      const script = join(dir, 'broken.lua');
      const broken = wrkScript(body).replace(/wrk\.headers\[ \[==\[/g, 'wrk.headers[[==[');
      expect(broken).toContain('wrk.headers[[==[content-type]==]');
      writeFileSync(script, broken);
      const run = spawnSync('wrk', ['-t1', '-c1', '-d1s', '-s', script, server.url + CHAT_PATH], { encoding: 'utf8', timeout: 10_000 });
      const output = `${run.stdout}${run.stderr}`;
      expect(() => parseWrk(output, { connections: 1, durationS: 1 })).toThrow(/no result line/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await server.close();
    }
  });
});

describe('wrk output parsing (no wrk needed)', () => {
  it('reads the result line of done()', () => {
    const output =
      'Running 1s test @ http://127.0.0.1:1/v1/chat/completions\n' +
      'WRK_RESULT {"requests":3000,"durationUs":2000000,"p50Us":450,"p99Us":2100,"meanUs":520.5,"connect":1,"read":2,"write":0,"timeout":3,"status":4}\n';
    const result = parseWrk(output, { connections: 50, durationS: 2 });
    expect(result).toMatchObject({ tool: 'wrk', connections: 50, requests: 3000, durationS: 2, reqPerSec: 1500, latencyP50Ms: 0.45, latencyP99Ms: 2.1, errors: 6, non2xx: 4 });
  });

  it('refuses output without a result line, or with a Lua error', () => {
    expect(() => parseWrk('Running 1s test\n  1000 requests in 1.00s\n', { connections: 1, durationS: 1 })).toThrow(/no result line/);
    const luaError = "PANIC: unprotected error in call to Lua API (/tmp/x/post.lua:3: '=' expected near 'content')\n" + 'WRK_RESULT {"requests":1}\n';
    expect(() => parseWrk(luaError, { connections: 1, durationS: 1 })).toThrow(/no result line/);
  });

  it('the generated script puts a space before every long string (no `[[`)', () => {
    const script = wrkScript(modeBody('stream'));
    expect(script).not.toMatch(/\[\[/);
    expect(script).toContain('wrk.method = "POST"');
    expect(() => wrkScript('a ]==] b')).toThrow();
  });
});

// ---------------------------------------------------------------------------------------------------------
// Target evaluation

function load(reqPerSec: number, connections: number): LoadResult {
  return { tool: 'wrk', connections, durationS: 3, requests: reqPerSec * 3, reqPerSec, latencyP50Ms: 1, latencyP99Ms: 2, latencyMeanMs: 1, errors: 0, non2xx: 0 };
}

function cell(setup: string, mode: Mode, connections: number, cpu: number, reqPerSec = 1000, timed?: { p50: number; ttfb: number }): Cell {
  return {
    setup,
    kind: setup === 'baseline' ? 'baseline' : setup === 'direct' ? 'direct' : 'gateway',
    mode,
    connections,
    load: load(reqPerSec, connections),
    timed: timed && {
      requests: 100,
      reqPerSec: 100,
      ttfbP50Ms: timed.ttfb,
      ttfbP99Ms: timed.ttfb,
      latencyP50Ms: timed.p50,
      latencyP99Ms: timed.p50,
      latencyMeanMs: timed.p50,
      contentP50Ms: undefined,
      errors: 0,
    },
    serverCpuUsPerReq: cpu,
    mockCpuUsPerReq: 50,
    serverRssMax: 100 * 1024 * 1024,
  };
}

/** Baseline at 200 µs/req and 1,000 req/s everywhere; the router at `routerCpu` µs/req and `routerReq` req/s. */
function measurements(routerCpu: number, routerReq = 1000, extra: Cell[] = []): Measurements {
  const cells: Cell[] = [];
  for (const mode of ['json', 'stream', 'paced'] as const) {
    cells.push(cell('baseline', mode, 1, 200, 1000, { p50: 1, ttfb: 0.5 }), cell('baseline', mode, 50, 200));
    cells.push(cell('router', mode, 1, routerCpu, routerReq, { p50: 1.1, ttfb: 0.6 }), cell('router', mode, 50, routerCpu, routerReq));
  }
  cells.push(...extra);
  return {
    cells,
    guardrail: { windowChars: 1000, emulatorLatencyMs: 10, roundTripP50Ms: Number.NaN, ttfbP50Ms: {} },
    memory: [],
    streams: 2000,
    loader: 'wrk',
    importTiming: undefined,
    profiles: undefined,
  };
}

const byName = (targets: ReturnType<typeof evaluateTargets>, start: string) => targets.filter((t) => t.target.startsWith(start));

/**
 * Paired rounds with the given server CPU µs/req per round (same in every mode): baseline at 200, the
 * router, and the protocol setups when given. Rounds alternate their order, as the phase does.
 */
function pairedRounds(router: number[], responses?: number[], messages?: number[]): PairedCpu {
  const forward = ['baseline', 'router', ...(responses ? ['router-responses'] : []), ...(messages ? ['router-messages'] : [])];
  const at = (cpuUsPerReq: number) => ({ cpuUsPerReq, mockCpuUsPerReq: 50, reqPerSec: 1000, requests: 3000, errors: 0 });
  return {
    connections: 50,
    cellS: 3,
    warmupS: 1,
    rounds: router.flatMap((cpu, i) =>
      (['json', 'stream', 'paced'] as const).map((mode) => ({
        round: i + 1,
        mode,
        order: i % 2 === 0 ? forward : [...forward].reverse(),
        cells: {
          baseline: at(200),
          router: at(cpu),
          ...(responses ? { 'router-responses': at(responses[i]!) } : {}),
          ...(messages ? { 'router-messages': at(messages[i]!) } : {}),
        },
      })),
    ),
  };
}

describe('evaluateTargets', () => {
  it('a CPU ratio above 1.10× fails, at or below passes', () => {
    const over = byName(evaluateTargets(measurements(230)), 'server CPU µs/req @50, router ÷');
    expect(over).toHaveLength(3);
    for (const t of over) {
      expect(t.result).toBe('FAIL');
      expect(t.value).toBeCloseTo(1.15, 5);
      expect(t.measured).toContain('1.15×');
    }
    for (const t of byName(evaluateTargets(measurements(210)), 'server CPU µs/req @50, router ÷')) expect(t.result).toBe('PASS');
    for (const t of byName(evaluateTargets(measurements(220)), 'server CPU µs/req @50, router ÷')) expect(t.result).toBe('PASS'); // exactly 1.10×
  });

  it('a protocol setup is judged against the chat router of the same run: above 1.20× fails, at or below passes, absent is n/a', () => {
    const protocolCells = (cpu: number): Cell[] => (['json', 'stream', 'paced'] as const).flatMap((mode) => [cell('router-responses', mode, 50, cpu), cell('router-messages', mode, 50, 240)]);
    const targets = evaluateTargets(measurements(200, 1000, protocolCells(250)));
    const responses = byName(targets, 'server CPU µs/req @50, router-responses ÷ router (chat)');
    expect(responses.map((t) => t.result)).toEqual(['FAIL', 'FAIL', 'FAIL']);
    expect(responses[0]!.value).toBeCloseTo(1.25, 5);
    expect(responses[0]!.measured).toBe('1.25× (250 vs 200 µs)');
    expect(byName(targets, 'server CPU µs/req @50, router-messages ÷').map((t) => t.result)).toEqual(['PASS', 'PASS', 'PASS']); // exactly 1.20×
    expect(byName(evaluateTargets(measurements(200)), 'server CPU µs/req @50, router-messages ÷').map((t) => t.result)).toEqual(['n/a', 'n/a', 'n/a']);
  });

  it('the CPU ratios are judged on the median of the paired rounds when there are some, on the single cells otherwise', () => {
    // Single cells: router 1.25× the baseline (FAIL). Paired rounds: 1.03, 1.05, 1.15 → median 1.05 (PASS).
    const m = measurements(250, 1000, (['json', 'stream', 'paced'] as const).flatMap((mode) => [cell('router-responses', mode, 50, 250), cell('router-messages', mode, 50, 250)]));
    const cellsOnly = evaluateTargets(m);
    expect(byName(cellsOnly, 'server CPU µs/req @50, router ÷').map((t) => [t.result, t.measured])).toEqual(
      Array(3).fill(['FAIL', '1.25× (250 vs 200 µs)']),
    );
    // The protocol setups, single cells: 250 ÷ 250 = 1.00× (PASS).
    expect(byName(cellsOnly, 'server CPU µs/req @50, router-responses ÷').map((t) => t.result)).toEqual(['PASS', 'PASS', 'PASS']);

    // Paired: router 206, 210, 230 µs (1.03, 1.05, 1.15 × 200); responses 1.30, 1.10, 1.25 × the router of its round; messages 1.00.
    m.pairedCpu = pairedRounds([206, 210, 230], [206 * 1.3, 210 * 1.1, 230 * 1.25], [206, 210, 230]);
    const paired = evaluateTargets(m);
    const router = byName(paired, 'server CPU µs/req @50, router ÷');
    expect(router).toHaveLength(3);
    for (const t of router) {
      expect(t.result).toBe('PASS');
      expect(t.value).toBeCloseTo(1.05, 5);
      expect(t.measured).toBe('1.05× (median of 3 paired rounds: 1.03, 1.05, 1.15; single cells 1.25×)');
      expect(t.limit).toBe('≤ 1.10×');
    }
    const responses = byName(paired, 'server CPU µs/req @50, router-responses ÷');
    expect(responses.map((t) => t.result)).toEqual(['FAIL', 'FAIL', 'FAIL']); // median 1.25 > 1.20, though the single cells were 1.00×
    expect(responses[0]!.value).toBeCloseTo(1.25, 5);
    expect(responses[0]!.measured).toBe('1.25× (median of 3 paired rounds: 1.30, 1.10, 1.25; single cells 1.00×)');
    expect(byName(paired, 'server CPU µs/req @50, router-messages ÷').map((t) => t.result)).toEqual(['PASS', 'PASS', 'PASS']);

    // Paired rounds without the protocol setups (not in the run): those targets fall back to the single cells.
    m.pairedCpu = pairedRounds([206, 210, 230]);
    const fallback = byName(evaluateTargets(m), 'server CPU µs/req @50, router-responses ÷');
    expect(fallback.map((t) => [t.result, t.measured])).toEqual(Array(3).fill(['PASS', '1.00× (250 vs 250 µs)']));
    // The req/s targets stay on the single cells.
    expect(byName(evaluateTargets(m), 'req/s').map((t) => t.value)).toEqual([1, 1]);
  });

  it('an even number of paired rounds takes the mean of the middle two', () => {
    expect(median([1.2, 1.0])).toBeCloseTo(1.1, 10);
    expect(median([3, 1, 2])).toBe(2);
    const m = measurements(200);
    m.pairedCpu = pairedRounds([210, 234]);
    expect(byName(evaluateTargets(m), 'server CPU µs/req @50, router ÷')[0]).toMatchObject({ result: 'FAIL', measured: '1.11× (median of 2 paired rounds: 1.05, 1.17; single cells 1.00×)' });
    expect(byName(evaluateTargets(m), 'server CPU µs/req @50, router ÷')[0]!.value).toBeCloseTo(1.11, 10);
  });

  it('req/s below 0.90× fails, above passes', () => {
    expect(byName(evaluateTargets(measurements(200, 850)), 'req/s').map((t) => t.result)).toEqual(['FAIL', 'FAIL']);
    expect(byName(evaluateTargets(measurements(200, 950)), 'req/s').map((t) => t.result)).toEqual(['PASS', 'PASS']);
  });

  it('added latency over the baseline is judged in ms (+0.10 ms p50 ≤ 0.20 passes, +0.10 ms TTFB ≤ 0.30 passes)', () => {
    const targets = evaluateTargets(measurements(200));
    expect(byName(targets, 'added p50')[0]).toMatchObject({ result: 'PASS' });
    expect(byName(targets, 'added p50')[0]!.value).toBeCloseTo(0.1, 5);
    expect(byName(targets, 'added TTFB').map((t) => t.result)).toEqual(['PASS', 'PASS']);
  });

  it('what was not measured is n/a, not PASS', () => {
    const m = measurements(200);
    m.cells = m.cells.filter((c) => c.setup !== 'router');
    for (const t of evaluateTargets(m)) expect(t.result).toBe('n/a');
  });

  it('the guardrail window TTFB is judged against generation + round trip + 2 ms', () => {
    const m = measurements(200);
    m.guardrail = { ...m.guardrail, windowGenerationP50Ms: 40, roundTripP50Ms: 11, ttfbP50Ms: { 'guardrail-window': 53.5 } };
    expect(byName(evaluateTargets(m), 'guardrail window')[0]).toMatchObject({ result: 'FAIL', limit: '≤ 40.0 + 11.0 + 2 = 53.0 ms' });
    m.guardrail.ttfbP50Ms['guardrail-window'] = 52.5;
    expect(byName(evaluateTargets(m), 'guardrail window')[0]).toMatchObject({ result: 'PASS' });
  });

  it('the paired rounds, when there are some, are what the window TTFB is judged on', () => {
    const m = measurements(200);
    // Measured alone the bound would be 44 + 11 + 2 = 57 ms; in the paired rounds it is 42 + 10.5 + 2 = 54.5 ms.
    m.guardrail = {
      ...m.guardrail,
      windowGenerationP50Ms: 44,
      roundTripP50Ms: 11,
      ttfbP50Ms: { 'guardrail-window': 55 },
      paired: { 'guardrail-window': { rounds: 40, windowGenerationP50Ms: 42, roundTripP50Ms: 10.5, ttfbP50Ms: 55, errors: 0 } },
    };
    expect(byName(evaluateTargets(m), 'guardrail window')[0]).toMatchObject({ result: 'FAIL', limit: '≤ 42.0 + 10.5 + 2 = 54.5 ms' });
    m.guardrail.paired!['guardrail-window']!.ttfbP50Ms = 54;
    expect(byName(evaluateTargets(m), 'guardrail window')[0]).toMatchObject({ result: 'PASS', measured: '54.0 ms' });
  });
});

describe('renderReport', () => {
  const render = (m: Measurements, quick: boolean) => renderReport({ measurements: m, outcomes: [], targets: evaluateTargets(m), quick, header: ['# bench'] });

  it('a quick run marks every judged target indicative', () => {
    const quick = render(measurements(230), true);
    expect(quick).toContain('QUICK RUN: INDICATIVE ONLY');
    expect(quick).toMatch(/server CPU µs\/req @50, router ÷ baseline, json \| 1\.15× .* \| FAIL \(indicative\) \|/);
    expect(quick).not.toMatch(/\| n\/a \(indicative\)/);
    const full = render(measurements(230), false);
    expect(full).not.toContain('indicative');
    expect(full).toMatch(/router ÷ baseline, json \| 1\.15× .* \| FAIL \|/);
  });

  it('the tracing-cost table gives each tracing setup ÷ the router (and ÷ the baseline), with no PASS/FAIL', () => {
    const tracing = [cell('router+channels', 'json', 50, 231, 990), cell('router+otel', 'json', 50, 264, 900), cell('router+otel', 'stream', 50, 300, 800)];
    const m = { ...measurements(220, 1000, tracing), references: { 'router+channels': 'router', 'router+otel': 'router' } };
    const rows = tracingCost(m.cells, m.references);
    expect(rows.map((r) => [r.setup, r.mode, r.connections])).toEqual([
      ['router+channels', 'json', 50],
      ['router+otel', 'json', 50],
      ['router+otel', 'stream', 50],
    ]);
    expect(rows[0]!.cpuRatio).toBeCloseTo(1.05, 5);
    expect(rows[1]!.cpuRatio).toBeCloseTo(1.2, 5);
    expect(rows[1]!.cpuRatioToBaseline).toBeCloseTo(1.32, 5);
    expect(rows[1]!.reqPerSecRatio).toBeCloseTo(0.9, 5);
    const text = render(m, false);
    const table = text.slice(text.indexOf('## Tracing cost'), text.indexOf('## Targets'));
    expect(table).toContain('| router+otel | json | 50 | 264 | router | 220 | **1.20×** | 1.32× | 0.90× |');
    const rowsShown = table.split('\n').filter((line) => line.startsWith('| router+'));
    expect(rowsShown).toHaveLength(3);
    for (const line of rowsShown) expect(line).not.toMatch(/PASS|FAIL|indicative/);
    // Not among the judged targets either.
    expect(evaluateTargets(m).some((t) => t.target.includes('otel') || t.target.includes('channels'))).toBe(false);
  });

  it('a report with paired rounds shows each round, its order and ratios, and the medians', () => {
    const m = measurements(250);
    m.pairedCpu = pairedRounds([206, 210, 230], [206 * 1.3, 210 * 1.1, 230 * 1.25], [206, 210, 230]);
    const text = render(m, false);
    expect(text).toContain('## Paired rounds: server CPU µs/req @50');
    const table = text.slice(text.indexOf('## Paired rounds'), text.indexOf('## Targets'));
    expect(table).toContain('| mode | round | baseline | router | router-responses | router-messages | router ÷ baseline | router-responses ÷ router | router-messages ÷ router |');
    expect(table).toContain('| json | 1/3 | 200 | 206 | 268 | 206 | 1.03× | 1.30× | 1.00× |');
    expect(table).toContain('| json | 2/3 (reversed) | 200 | 210 | 231 | 210 | 1.05× | 1.10× | 1.00× |');
    expect(table).toContain('| paced | median |  |  |  |  | **1.05×** | **1.25×** | **1.00×** |');
    expect(table.split('\n').filter((l) => /^\| (json|stream|paced) \|/.test(l))).toHaveLength(12);
    // The single cells stay in the headline table.
    expect(text).toMatch(/\| router \| json \| .* \| \*\*1\.25×\*\* \|/);
    expect(text).toMatch(/router ÷ baseline, json \| 1\.05× \(median of 3 paired rounds: 1\.03, 1\.05, 1\.15; single cells 1\.25×\) \| ≤ 1\.10× \| PASS \|/);
    expect(render(measurements(250), false)).not.toContain('Paired rounds');
  });

  it('no tracing-cost table without tracing setups', () => {
    expect(render(measurements(200), false)).not.toContain('Tracing cost');
  });
});
