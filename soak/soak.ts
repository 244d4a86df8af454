/**
 * The fault soak (issue #8, item 4): many mixed requests through a gateway whose upstreams and guardrail
 * fail in every way they know, each response checked against the invariants of DESIGN.md, plus process
 * level checks (no unhandled rejection or exception, upstream sockets closed on client aborts, memory back
 * to its post-warm-up baseline). `runSoak()` is used in-process by the test; `run.ts` is the CLI.
 */
import http from 'node:http';
import { loadavg } from 'node:os';
import type { Logger } from '../lib/index.js';
import { checkAbort, probeAbort, settleProbe, type AbortProbe } from './aborts.js';
import { checkExchange, type LeakPatterns } from './checks.js';
import { AGENT_IDLE_TIMEOUT_MS, DEFAULT_PROTOCOL_WEIGHTS, planRequest, send, type Exchange, type ProtocolWeights, type SendOptions, type WireProtocol } from './client.js';
import { settledMemory, type MemorySample } from './memory.js';
import { GUARDRAIL_TIMEOUT_MS, SECRETS, startServices, type SoakServices } from './services.js';
import { LoopStalls, type StallSummary } from './stalls.js';
import { injectGuardrailFaults } from './upstream.js';

export interface SoakOptions {
  /** @default 10000 */
  requests?: number;
  /** Requests in flight at once. @default 50 */
  concurrency?: number;
  /** Seeds every request plan and upstream scenario. @default 1 */
  seed?: number;
  /**
   * Requests sent before the memory baseline is taken (part of `requests`, checked like the rest). RSS only
   * levels off after a few thousand requests here. @default min(5000, requests / 2)
   */
  warmup?: number;
  /** Share of requests the client abandons at a random moment. @default 0.05 */
  abortRate?: number;
  /**
   * How often each protocol is drawn for a request, relative to the others (a protocol left out or at 0 is
   * not sent). @default { chat: 2, responses: 1, messages: 1 }
   */
  protocols?: Partial<Record<WireProtocol, number>>;
  /** An upstream call in flight must close this soon after its client left. @default 100 */
  abortCloseLimitMs?: number;
  /**
   * Memory must come back to within these fractions of its post-warm-up baseline once the load is over.
   * `rss`: the settled RSS at the end against the peak RSS of the warm-up (what the same load already
   * needed): a settled RSS sample alone swings by ±25% between runs with a flat heap (freed memory the
   * allocator keeps or returns), so it makes no baseline, but a leak still ends above the warm-up's peak.
   * `heapUsed`: the V8 heap after a full GC, before and after, immune to the allocator.
   * `false` skips the check. @default { rss: 0.1, heapUsed: 0.1 }
   */
  memory?: MemoryCheck | false;
  /** Called after each finished request. */
  onProgress?: (done: number, total: number) => void;
}

export interface MemoryCheck {
  rss?: number;
  heapUsed?: number;
}

export interface SoakReport {
  seed: number;
  requests: number;
  concurrency: number;
  durationMs: number;
  /** Requests per outcome: `ok:stream`, `ok:json`, `json-error:<type>`, `in-band:<type>`, `client-aborted`, … */
  outcomes: Record<string, number>;
  /** The same per protocol (error types are the protocol's own), with the requests sent and the violations found in each. */
  protocols: Record<WireProtocol, { weight: number; requests: number; violations: number; outcomes: Record<string, number> }>;
  /** Send to end of the response, requests the client did not abort. */
  latencyMs: { p50: number; p99: number; max: number };
  /** Upstream close delays are net of event-loop stalls; `rawCloseMaxMs` is the largest as measured. */
  aborts: { total: number; inFlightUpstream: number; closeP50Ms: number; closeP99Ms: number; closeMaxMs: number; rawCloseMaxMs: number };
  /** Event-loop delay over the run, and the machine's load average at the end (others may share the cores). */
  environment: { loopDelay: StallSummary; loadAverage: number[] };
  process: { unhandledRejections: number; uncaughtExceptions: number };
  /** Growth over the references (warm-up peak RSS, post-warm-up heap), as fractions. */
  memory: { baseline: MemorySample; final: MemorySample; rssGrowth: number; heapGrowth: number } | undefined;
  upstream: { openaiCalls: number; anthropicCalls: number; guardrailCalls: number; guardrailFaultsArmed: number };
  /** Errors the gateway logged (5xx are logged at error level), by type and message. */
  loggedErrors: Record<string, number>;
  /** Log entries the gateway wrote at any level, each checked for the configured credentials. */
  logLines: number;
  violationCount: number;
  /** Violation messages (without the request id) and how often each occurred. */
  violationKinds: Record<string, number>;
  /** The first violations in full. */
  violations: string[];
}

const MAX_LISTED_VIOLATIONS = 50;
/** The client gives up on a response after this long: every timeout configured in the gateway is far shorter. */
const HARD_TIMEOUT_MS = 15_000;

export async function runSoak(options: SoakOptions = {}): Promise<SoakReport> {
  const requests = options.requests ?? 10_000;
  const seed = options.seed ?? 1;
  const concurrency = options.concurrency ?? 50;
  const warmup = Math.min(options.warmup ?? Math.min(5000, Math.floor(requests / 2)), requests);
  const abortLimit = options.abortCloseLimitMs ?? 100;
  const memoryCheck = options.memory ?? { rss: 0.1, heapUsed: 0.1 };
  const weights = protocolWeights(options.protocols);
  const tally = new Tally(requests, weights);
  const stalls = new LoopStalls();
  const processWatch = watchProcess(tally);
  const logged = new Map<string, number>();
  const services = await startServices(seed, countingLogger(logged, tally));
  const faults = injectGuardrailFaults(services.emulator, seed, GUARDRAIL_TIMEOUT_MS * 1.5); // some delays outlast the deadline
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, timeout: AGENT_IDLE_TIMEOUT_MS });
  const started = Date.now();
  try {
    const run = new Run(services, agent, tally, stalls, abortLimit, { abortRate: options.abortRate ?? 0.05, seed, total: requests, weights, onProgress: options.onProgress });
    await run.range(0, warmup, concurrency);
    const baseline = memoryCheck === false ? undefined : await settledMemory(500);
    await run.range(warmup, requests, concurrency);
    await run.abortChecks();
    // Load over: no more faults, and the client's keep-alive sockets go, so the gateway can settle.
    faults.stop();
    agent.destroy();
    const memory = memoryCheck === false || baseline === undefined ? undefined : await memoryAfter(services, baseline, memoryCheck, tally);
    return tally.report({ seed, requests, concurrency, durationMs: Date.now() - started, memory, services, faultsArmed: faults.armed, environment: { loopDelay: stalls.summary(), loadAverage: loadavg() }, loggedErrors: Object.fromEntries(logged), process: processWatch.counts });
  } finally {
    faults.stop();
    agent.destroy();
    await services.close();
    processWatch.stop();
    stalls.stop();
  }
}

/** The weights with every protocol named (absent ones at 0); at least one must be above 0. */
function protocolWeights(given: SoakOptions['protocols']): ProtocolWeights {
  if (given === undefined) return DEFAULT_PROTOCOL_WEIGHTS;
  const weights = { chat: given.chat ?? 0, responses: given.responses ?? 0, messages: given.messages ?? 0 };
  if (Object.values(weights).some((w) => !(w >= 0)) || Object.values(weights).every((w) => w === 0)) throw new Error(`protocol weights: expected numbers >= 0, one above 0, got ${JSON.stringify(given)}`);
  return weights;
}

interface RunSettings {
  abortRate: number;
  seed: number;
  weights: ProtocolWeights;
  total: number;
  onProgress: ((done: number, total: number) => void) | undefined;
}

/** Sends request ranges with a fixed number in flight, checks each response and schedules abort checks. */
class Run {
  /** Abort checks not finished yet (finished ones leave: a list of every check grew with the run). */
  private readonly pendingAbortChecks = new Set<Promise<void>>();
  private readonly leaks: LeakPatterns;
  private readonly sendOptions: SendOptions;
  private done = 0;

  constructor(
    private readonly services: SoakServices,
    agent: http.Agent,
    private readonly tally: Tally,
    private readonly stalls: LoopStalls,
    private readonly abortLimitMs: number,
    private readonly settings: RunSettings,
  ) {
    this.leaks = { secrets: SECRETS, origins: services.origins };
    this.sendOptions = {
      agent,
      baseUrl: services.url,
      hardTimeoutMs: HARD_TIMEOUT_MS,
      onAbort: (plan, at) => {
        const probe = probeAbort(services.openai, plan.id, at);
        this.tally.abortTotal++;
        if (probe.inFlight.length > 0) {
          const check: Promise<void> = this.checkLater(probe).finally(() => this.pendingAbortChecks.delete(check));
          this.pendingAbortChecks.add(check);
        }
      },
    };
  }

  /** Requests `from` … `to - 1`, `concurrency` at a time. */
  async range(from: number, to: number, concurrency: number): Promise<void> {
    let next = from;
    const worker = async (): Promise<void> => {
      while (next < to) {
        const plan = planRequest(this.settings.seed, next++, this.settings.abortRate, this.settings.weights);
        this.record(await send(plan, this.sendOptions));
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, to - from) }, worker));
  }

  async abortChecks(): Promise<void> {
    await Promise.all([...this.pendingAbortChecks]);
  }

  private record(exchange: Exchange): void {
    const verdict = checkExchange(exchange, this.leaks);
    const { plan } = exchange;
    this.tally.count(plan.protocol, verdict.outcome, verdict.violations.length);
    if (exchange.abortedAt === undefined && !exchange.timedOut) this.tally.latencies.push(exchange.endedAt - exchange.startedAt);
    for (const violation of verdict.violations) this.tally.violation(`${plan.id} (${plan.protocol}, ${plan.group}, ${plan.stream ? 'stream' : 'json'}, status ${exchange.status})`, violation, exchange.body);
    this.settings.onProgress?.(++this.done, this.settings.total);
  }

  private async checkLater(probe: AbortProbe): Promise<void> {
    await settleProbe(probe, this.stalls, this.abortLimitMs);
    const findings = checkAbort(probe, this.services.openai, this.stalls, this.abortLimitMs);
    this.tally.abortInFlight++;
    for (const delay of findings.closeDelays) this.tally.closeDelays.push(delay);
    for (const delay of findings.rawCloseDelays) this.tally.rawCloseDelays.push(delay);
    for (const violation of findings.violations) this.tally.violation(probe.id, violation);
  }
}

async function memoryAfter(services: SoakServices, baseline: MemorySample, check: MemoryCheck, tally: Tally): Promise<SoakReport['memory']> {
  while (services.gateway.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  const final = await settledMemory(1000);
  const rssGrowth = final.rss / baseline.peakRss - 1;
  const heapGrowth = final.heapUsed / baseline.heapUsed - 1;
  if (check.rss !== undefined && rssGrowth > check.rss) {
    tally.violation('process', `RSS ${mb(final.rss)} is ${percent(rssGrowth)} over the warm-up's peak ${mb(baseline.peakRss)}`);
  }
  if (check.heapUsed !== undefined && heapGrowth > check.heapUsed) {
    tally.violation('process', `heap ${mb(final.heapUsed)} is ${percent(heapGrowth)} over the post-warm-up heap ${mb(baseline.heapUsed)}`);
  }
  return { baseline, final, rssGrowth, heapGrowth };
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

/** Counts process-level failures: any unhandled rejection or uncaught exception is a bug somewhere. */
function watchProcess(tally: Tally): { counts: SoakReport['process']; stop(): void } {
  const counts = { unhandledRejections: 0, uncaughtExceptions: 0 };
  const onRejection = (reason: unknown): void => {
    counts.unhandledRejections++;
    tally.violation('process', `unhandledRejection: ${describe(reason)}`);
  };
  const onException = (error: unknown): void => {
    counts.uncaughtExceptions++;
    tally.violation('process', `uncaughtException: ${describe(error)}`);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    counts,
    stop: () => {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}

/**
 * Counts what the gateway logs by error type (an internal error's cause is kept, it names the bug), and
 * checks every entry, at every level, for the configured credentials: a log capture must hold none.
 */
function countingLogger(logged: Map<string, number>, tally: Tally): Logger {
  const checked = (level: string, obj: object, msg: string | undefined): void => {
    tally.logLines++;
    const line = `${msg ?? ''} ${safeJson(obj)}`;
    if (SECRETS.some((secret) => line.includes(secret))) tally.violation('log', `credential in a ${level} log line: ${msg ?? ''}`);
  };
  return {
    debug: (obj, msg) => checked('debug', obj, msg),
    info: (obj, msg) => checked('info', obj, msg),
    warn: (obj, msg) => {
      checked('warn', obj, msg);
      logged.set(`warn:${msg ?? ''}`, (logged.get(`warn:${msg ?? ''}`) ?? 0) + 1);
    },
    error: (obj, msg) => {
      checked('error', obj, msg);
      const { type, message, err, requestId } = obj as { type?: string; message?: string; err?: unknown; requestId?: string };
      const key = `${String(type)}: ${String(message).replace(/\d+/g, 'N')}`;
      logged.set(key, (logged.get(key) ?? 0) + 1);
      if (type === 'internal_error') tally.violation(`${requestId ?? '?'} (logged)`, `internal error cause: ${describe(err)}`);
    },
  };
}

/** A log entry as a log line would hold it; errors with their message and stack. */
function safeJson(obj: object): string {
  try {
    return JSON.stringify(obj, (_key, value: unknown) => (value instanceof Error ? { name: value.name, message: value.message, stack: value.stack } : value));
  } catch {
    return String(obj);
  }
}

function describe(value: unknown): string {
  return value instanceof Error ? (value.stack ?? value.message).split('\n').slice(0, 4).join(' | ') : String(value);
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The wire evidence kept with a listed violation: the start and the end of the body. */
const EVIDENCE_CHARS = 600;

class Tally {
  readonly outcomes = new Map<string, number>();
  /** Per protocol: outcome → count, and the violations found in its responses. */
  readonly byProtocol: Record<WireProtocol, { outcomes: Map<string, number>; violations: number }>;
  // Sized for the whole run up front (outside the V8 heap): per-request lists growing in the heap would
  // show up in the soak's own heap check.
  readonly latencies: Samples;
  readonly closeDelays: Samples;
  readonly rawCloseDelays: Samples;
  readonly kinds = new Map<string, number>();
  readonly listed: string[] = [];
  abortTotal = 0;
  abortInFlight = 0;
  violations = 0;
  logLines = 0;

  constructor(
    requests: number,
    private readonly weights: ProtocolWeights,
  ) {
    this.byProtocol = { chat: { outcomes: new Map(), violations: 0 }, responses: { outcomes: new Map(), violations: 0 }, messages: { outcomes: new Map(), violations: 0 } };
    this.latencies = new Samples(requests);
    this.closeDelays = new Samples(requests);
    this.rawCloseDelays = new Samples(requests);
  }

  count(protocol: WireProtocol, outcome: string, violations: number): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    const mine = this.byProtocol[protocol];
    mine.outcomes.set(outcome, (mine.outcomes.get(outcome) ?? 0) + 1);
    mine.violations += violations;
  }

  /** `body`: the response as received, listed with the first violations (its start and its end). */
  violation(where: string, message: string, body?: string): void {
    this.violations++;
    const kind = message.replace(/\d+/g, 'N'); // "closed 130 ms after" and "closed 145 ms after" are one kind
    this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + 1);
    if (this.listed.length >= MAX_LISTED_VIOLATIONS) return;
    const evidence = body === undefined ? '' : body.length <= 2 * EVIDENCE_CHARS ? `\n    body: ${JSON.stringify(body)}` : `\n    body (${body.length} chars): ${JSON.stringify(body.slice(0, EVIDENCE_CHARS))} … ${JSON.stringify(body.slice(-EVIDENCE_CHARS))}`;
    this.listed.push(`${where}: ${message}${evidence}`);
  }

  report(run: Pick<SoakReport, 'seed' | 'requests' | 'concurrency' | 'durationMs' | 'memory' | 'loggedErrors' | 'process' | 'environment'> & { services: SoakServices; faultsArmed: number }): SoakReport {
    const { services, faultsArmed, ...rest } = run;
    return {
      ...rest,
      outcomes: sortedCounts(this.outcomes),
      protocols: Object.fromEntries(
        Object.entries(this.byProtocol).map(([protocol, { outcomes, violations }]) => [
          protocol,
          { weight: this.weights[protocol as WireProtocol], requests: [...outcomes.values()].reduce((sum, n) => sum + n, 0), violations, outcomes: sortedCounts(outcomes) },
        ]),
      ) as SoakReport['protocols'],
      latencyMs: { p50: this.latencies.percentile(0.5), p99: this.latencies.percentile(0.99), max: this.latencies.percentile(1) },
      aborts: {
        total: this.abortTotal,
        inFlightUpstream: this.abortInFlight,
        closeP50Ms: this.closeDelays.percentile(0.5),
        closeP99Ms: this.closeDelays.percentile(0.99),
        closeMaxMs: this.closeDelays.percentile(1),
        rawCloseMaxMs: this.rawCloseDelays.percentile(1),
      },
      upstream: {
        openaiCalls: services.openai.reduce((sum, mock) => sum + mock.callCount(), 0),
        anthropicCalls: services.anthropic.callCount(),
        guardrailCalls: services.emulator.callCount,
        guardrailFaultsArmed: faultsArmed,
      },
      logLines: this.logLines,
      violationCount: this.violations,
      violationKinds: Object.fromEntries(this.kinds),
      violations: this.listed,
    };
  }
}

function sortedCounts(counts: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
}

/** Numbers in a typed array allocated once (grown by doubling only if a run records more than expected). */
class Samples {
  private values: Float64Array;
  private length = 0;

  constructor(capacity: number) {
    this.values = new Float64Array(Math.max(16, capacity));
  }

  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }

  percentile(p: number): number {
    if (this.length === 0) return 0;
    const sorted = this.values.slice(0, this.length).sort();
    return sorted[Math.min(this.length - 1, Math.ceil(p * this.length) - 1)]!;
  }
}
