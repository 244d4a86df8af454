/**
 * The fault soak from the command line:
 *
 *   node --expose-gc --import tsx soak/run.ts [--requests 10000] [--concurrency 50] [--seed 1]
 *     [--abort-rate 0.05] [--warmup N] [--protocols chat=2,responses=1,messages=1]
 *
 * `--protocols`: the relative weight of each protocol a request is drawn in (one left out is not sent).
 *
 * Prints the report; exits 1 on any violation (each printed, up to a bounded list).
 */
import { parseArgs } from 'node:util';
import { WIRE_PROTOCOLS, type WireProtocol } from './client.js';
import { runSoak, type SoakOptions, type SoakReport } from './soak.js';

function options(): SoakOptions {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '10000' },
      concurrency: { type: 'string', default: '50' },
      seed: { type: 'string', default: '1' },
      'abort-rate': { type: 'string', default: '0.05' },
      warmup: { type: 'string' },
      protocols: { type: 'string' },
    },
  });
  return {
    requests: positive('requests', values.requests),
    concurrency: positive('concurrency', values.concurrency),
    seed: positive('seed', values.seed),
    abortRate: fraction('abort-rate', values['abort-rate']),
    ...(values.warmup !== undefined ? { warmup: positive('warmup', values.warmup) } : {}),
    ...(values.protocols !== undefined ? { protocols: weights(values.protocols) } : {}),
  };
}

function positive(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got '${text}'`);
  return n;
}

/** `chat=2,responses=1,messages=1` → weights (a protocol not named gets 0). */
function weights(text: string): Partial<Record<WireProtocol, number>> {
  const result: Partial<Record<WireProtocol, number>> = {};
  for (const entry of text.split(',')) {
    const [name, weight] = entry.split('=');
    const n = Number(weight);
    if (!WIRE_PROTOCOLS.includes(name as WireProtocol) || weight === undefined || !(n >= 0)) {
      throw new Error(`--protocols: expected name=weight pairs (${WIRE_PROTOCOLS.join(', ')}), got '${text}'`);
    }
    result[name as WireProtocol] = n;
  }
  return result;
}

function fraction(name: string, text: string): number {
  const n = Number(text);
  if (!(n >= 0 && n <= 1)) throw new Error(`--${name}: expected a number from 0 to 1, got '${text}'`);
  return n;
}

function print(report: SoakReport): void {
  const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  const pct = (fraction: number): string => `${fraction >= 0 ? '+' : ''}${(fraction * 100).toFixed(1)}%`;
  const lines = [
    `soak: ${report.requests} requests, concurrency ${report.concurrency}, seed ${report.seed}, ${(report.durationMs / 1000).toFixed(1)} s`,
    'outcomes:',
    ...outcomeTable(report),
    `latency (not aborted): p50 ${report.latencyMs.p50} ms, p99 ${report.latencyMs.p99} ms, max ${report.latencyMs.max} ms`,
    `client aborts: ${report.aborts.total}, ${report.aborts.inFlightUpstream} with an OpenAI upstream call in flight; upstream closed after p50 ${report.aborts.closeP50Ms} ms, p99 ${report.aborts.closeP99Ms} ms, max ${report.aborts.closeMaxMs} ms net of loop stalls (max ${report.aborts.rawCloseMaxMs} ms as measured)`,
    `upstream calls: openai ${report.upstream.openaiCalls}, anthropic ${report.upstream.anthropicCalls}, guardrail ${report.upstream.guardrailCalls} (${report.upstream.guardrailFaultsArmed} guardrail faults armed)`,
    `gateway log lines (every level, checked for the configured credentials): ${report.logLines}`,
    'gateway error logs:',
    ...Object.entries(report.loggedErrors).map(([entry, n]) => `  ${n} × ${entry}`),
    `event loop delay: p50 ${report.environment.loopDelay.p50Ms} ms, p99 ${report.environment.loopDelay.p99Ms} ms, max ${report.environment.loopDelay.maxMs} ms; load average ${report.environment.loadAverage.map((n) => n.toFixed(1)).join(' ')}`,
    `process: ${report.process.unhandledRejections} unhandled rejections, ${report.process.uncaughtExceptions} uncaught exceptions`,
    report.memory
      ? `memory: RSS ${mb(report.memory.final.rss)} at the end vs. the warm-up's peak ${mb(report.memory.baseline.peakRss)} (${pct(report.memory.rssGrowth)}; settled after warm-up ${mb(report.memory.baseline.rss)}, peak of the run ${mb(report.memory.final.peakRss)}); heap used ${mb(report.memory.baseline.heapUsed)} → ${mb(report.memory.final.heapUsed)} (${pct(report.memory.heapGrowth)}), external ${mb(report.memory.baseline.external)} → ${mb(report.memory.final.external)}`
      : 'memory: not checked',
    `violations: ${report.violationCount}`,
    ...Object.entries(report.violationKinds).map(([kind, n]) => `  ${n} × ${kind}`),
    ...(report.violations.length > 0 ? ['first violations:', ...report.violations.map((v) => `  ${v}`)] : []),
  ];
  console.log(lines.join('\n'));
}

/** One row per outcome, one column per protocol (error types are each protocol's own), then the total. */
function outcomeTable(report: SoakReport): string[] {
  const protocols = WIRE_PROTOCOLS.filter((p) => report.protocols[p].weight > 0);
  const cell = (value: string | number): string => String(value).padStart(10);
  const header = `  ${'outcome'.padEnd(40)}${protocols.map((p) => cell(p)).join('')}${cell('total')}`;
  const rows = Object.entries(report.outcomes).map(([outcome, n]) => `  ${outcome.padEnd(40)}${protocols.map((p) => cell(report.protocols[p].outcomes[outcome] ?? 0)).join('')}${cell(n)}`);
  const requests = `  ${'requests'.padEnd(40)}${protocols.map((p) => cell(report.protocols[p].requests)).join('')}${cell(report.requests)}`;
  const violations = `  ${'violations in responses'.padEnd(40)}${protocols.map((p) => cell(report.protocols[p].violations)).join('')}${cell(protocols.reduce((sum, p) => sum + report.protocols[p].violations, 0))}`;
  return [header, ...rows, requests, violations];
}

async function main(): Promise<void> {
  const report = await runSoak({ ...options(), onProgress: progress });
  print(report);
  process.exitCode = report.violationCount > 0 ? 1 : 0;
}

/** A progress line every 10% on stderr, so a long run shows it is alive without cluttering the report. */
function progress(done: number, total: number): void {
  if (done % Math.max(1, Math.floor(total / 10)) === 0) process.stderr.write(`  ${done}/${total}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
