/**
 * The results: one cell per (target, mode, connections), the targets of issue #14 judged against the
 * baseline's numbers of the same run, and the markdown printed at the end.
 */
import type { PairedWindowTiming } from './guardrail-timing.js';
import type { LoadResult, TimedResult } from './load.js';
import type { MemoryResult } from './memory.js';
import type { ImportTiming } from './import-time.js';
import type { SelfTime } from './profile-summary.js';
import type { TargetKind } from './setups.js';
import type { Mode } from './workload.js';

export interface Cell {
  setup: string;
  kind: TargetKind;
  mode: Mode;
  connections: number;
  load: LoadResult;
  /** 1 connection only: the timed loop (µs resolution, TTFB). */
  timed: TimedResult | undefined;
  /** CPU time (user + system) of the server process per completed request, µs; none for `direct`. */
  serverCpuUsPerReq: number | undefined;
  mockCpuUsPerReq: number;
  /** Largest RSS of the server process sampled during the cell, bytes. */
  serverRssMax: number | undefined;
}

export interface SetupOutcome {
  name: string;
  description: string;
  status: 'ok' | 'skipped' | 'failed';
  reason: string | undefined;
  /** Problems found by the one-request check before the load (wrong answer, missing [DONE], …). */
  checks: string[];
}

export interface GuardrailTiming {
  windowChars: number;
  emulatorLatencyMs: number;
  /** ApplyGuardrail over plain HTTP, one window of text, p50. */
  roundTripP50Ms: number;
  /** Direct to the mock, paced answer: time until more than `windowChars` characters had arrived. */
  windowGenerationP50Ms?: number | undefined;
  directTtfbP50Ms?: number;
  directTotalP50Ms?: number;
  /** Per guardrail setup: first byte of the paced answer (from the paired rounds when there are some). */
  ttfbP50Ms: Record<string, number>;
  /**
   * Per guardrail setup, the paired rounds (`bench/guardrail-timing.ts`): its first byte, and the window's
   * generation and the round trip measured at the same moments; the window target is judged on these.
   */
  paired?: Record<string, PairedWindowTiming>;
}

/** One measured cell of the paired rounds: server CPU µs/req (CPU counters around the cell ÷ completed requests). */
export interface PairedCpuCell {
  cpuUsPerReq: number;
  mockCpuUsPerReq: number;
  reqPerSec: number;
  requests: number;
  /** Socket errors + non-2xx answers during the cell. */
  errors: number;
}

/** One round of one mode: every process of the phase measured back to back, in `order`. */
export interface PairedCpuRound {
  round: number;
  mode: Mode;
  /** The setups in the order they were measured: the phase's order on odd rounds, reversed on even ones. */
  order: string[];
  cells: Record<string, PairedCpuCell>;
}

/**
 * The paired-rounds phase (`--ratio-rounds`): baseline, router and the protocol setups all started at once,
 * measured one after another in each round (order alternating per round), so the cells a CPU ratio divides
 * are seconds apart, not minutes; the CPU targets are judged on the median over rounds when there are some.
 */
export interface PairedCpu {
  connections: number;
  cellS: number;
  warmupS: number;
  rounds: PairedCpuRound[];
}

export interface TargetResult {
  target: string;
  measured: string;
  limit: string;
  result: 'PASS' | 'FAIL' | 'n/a';
  value: number | undefined;
}

const GATEWAY = 'router';
/** Issue #16: the protocol setups, each judged against the chat path (`router`) of the same run. */
const PROTOCOL_SETUPS = ['router-responses', 'router-messages'] as const;
const PROTOCOL_LIMIT = 1.2;
const MODE_LABEL: Record<Mode, string> = { json: 'json', stream: 'stream (20 chunks, instant)', paced: 'paced stream (20 chunks, 5 ms apart)' };

/** The router's profile pass: per mode, the gateway functions (script under dist/, the built package) by self time. */
export interface ProfileResult {
  mode: Mode;
  file: string;
  busyMs: number;
  gateway: SelfTime[];
  /** Self time by module, the top few, for context. */
  modules: SelfTime[];
}

export interface Measurements {
  cells: Cell[];
  guardrail: GuardrailTiming;
  memory: MemoryResult[];
  streams: number;
  loader: string;
  importTiming: ImportTiming | undefined;
  profiles: ProfileResult[] | undefined;
  /** Informational setups measured against another setup (`router+otel` → `router`), see `tracingCost()`. */
  references?: Record<string, string>;
  /** The paired rounds of the CPU ratio targets, when the phase ran. */
  pairedCpu?: PairedCpu | undefined;
}

/** The CPU ratios judged on the paired rounds: setup ÷ reference. */
export const PAIRED_RATIOS: readonly (readonly [setup: string, reference: string])[] = [
  [GATEWAY, 'baseline'],
  ...PROTOCOL_SETUPS.map((s) => [s, GATEWAY] as const),
];

/** setup ÷ reference server CPU µs/req, one value per paired round of `mode` that measured both. */
export function pairedCpuRatios(paired: PairedCpu | undefined, setup: string, reference: string, mode: Mode, field: 'cpuUsPerReq' | 'reqPerSec' = 'cpuUsPerReq'): number[] {
  const ratios: number[] = [];
  for (const round of paired?.rounds ?? []) {
    const own = round.cells[setup];
    const ref = round.cells[reference];
    if (round.mode === mode && own && ref && ref[field] > 0) ratios.push(own[field] / ref[field]);
  }
  return ratios;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One row of the tracing-cost table: a setup's cell against its reference's cell (same mode, connections). */
export interface RelativeCost {
  setup: string;
  reference: string;
  mode: Mode;
  connections: number;
  cpuUsPerReq: number | undefined;
  referenceCpuUsPerReq: number | undefined;
  /** CPU µs/req ÷ the reference's; informational, never judged. */
  cpuRatio: number | undefined;
  /** CPU µs/req ÷ the baseline's, for comparison with the headline table. */
  cpuRatioToBaseline: number | undefined;
  reqPerSecRatio: number | undefined;
}

/** Every cell of a setup that has a reference, beside the reference's cell of the same mode and connections. */
export function tracingCost(cells: readonly Cell[], references: Record<string, string> | undefined): RelativeCost[] {
  const rows: RelativeCost[] = [];
  for (const [setup, reference] of Object.entries(references ?? {})) {
    for (const cell of cells.filter((c) => c.setup === setup)) {
      const ref = findCell(cells, reference, cell.mode, cell.connections);
      const own = cell.serverCpuUsPerReq;
      const theirs = ref?.serverCpuUsPerReq;
      rows.push({
        setup,
        reference,
        mode: cell.mode,
        connections: cell.connections,
        cpuUsPerReq: own,
        referenceCpuUsPerReq: theirs,
        cpuRatio: own === undefined || theirs === undefined ? undefined : own / theirs,
        cpuRatioToBaseline: cpuRatio(cells, cell),
        reqPerSecRatio: ref === undefined ? undefined : cell.load.reqPerSec / ref.load.reqPerSec,
      });
    }
  }
  return rows;
}

export function findCell(cells: readonly Cell[], setup: string, mode: Mode, connections: number): Cell | undefined {
  return cells.find((c) => c.setup === setup && c.mode === mode && c.connections === connections);
}

/** Server CPU µs/req of a cell ÷ the baseline's, same mode and connections. */
export function cpuRatio(cells: readonly Cell[], cell: Cell): number | undefined {
  const base = findCell(cells, 'baseline', cell.mode, cell.connections)?.serverCpuUsPerReq;
  return base === undefined || cell.serverCpuUsPerReq === undefined ? undefined : cell.serverCpuUsPerReq / base;
}

export function reqRatio(cells: readonly Cell[], cell: Cell): number | undefined {
  const base = findCell(cells, 'baseline', cell.mode, cell.connections)?.load.reqPerSec;
  return base === undefined ? undefined : cell.load.reqPerSec / base;
}

/** The timed loop's p50 (`latency`) or TTFB p50 of a 1-connection cell minus `reference`'s. */
export function added(cells: readonly Cell[], cell: Cell, what: 'latency' | 'ttfb', reference = 'baseline'): number | undefined {
  const ref = findCell(cells, reference, cell.mode, 1)?.timed;
  const own = cell.timed;
  if (!ref || !own) return undefined;
  return what === 'latency' ? own.latencyP50Ms - ref.latencyP50Ms : own.ttfbP50Ms - ref.ttfbP50Ms;
}

export const PROFILE_LIMIT = 0.02;
export const IMPORT_LIMIT_MS = 150;

export function evaluateTargets(m: Measurements): TargetResult[] {
  const { cells, guardrail, memory, streams } = m;
  const targets: TargetResult[] = [];
  const at = (mode: Mode, connections: number): Cell | undefined => findCell(cells, GATEWAY, mode, connections);

  // The CPU ratios: on the paired rounds' median when the phase ran (cells seconds apart), otherwise on the
  // single cells of the throughput phase (minutes apart on a drifting shared machine).
  for (const mode of ['json', 'stream', 'paced'] as const) {
    const cell = at(mode, 50);
    const ratio = cell ? cpuRatio(cells, cell) : undefined;
    const base = findCell(cells, 'baseline', mode, 50)?.serverCpuUsPerReq;
    targets.push(
      cpuTarget(m.pairedCpu, GATEWAY, 'baseline', mode, `server CPU µs/req @50, ${GATEWAY} ÷ baseline, ${MODE_LABEL[mode]}`, ratio, () => `${cell!.serverCpuUsPerReq!.toFixed(0)} vs ${base!.toFixed(0)} µs`, 1.1),
    );
  }
  // req/s likewise: the paired rounds measure each cell with the same load generator, seconds apart.
  for (const mode of ['json', 'stream'] as const) {
    const cell = at(mode, 50);
    const ratio = cell ? reqRatio(cells, cell) : undefined;
    const target = `req/s @50, ${GATEWAY} ÷ baseline, ${MODE_LABEL[mode]} (${m.loader}${m.loader === 'wrk' ? '' : '; the target is for wrk'})`;
    const rounds = pairedCpuRatios(m.pairedCpu, GATEWAY, 'baseline', mode, 'reqPerSec');
    if (rounds.length === 0) targets.push(judge(target, ratio, (r) => `${r.toFixed(2)}×`, '≥ 0.90×', (r) => r >= 0.9));
    else {
      const single = ratio === undefined || Number.isNaN(ratio) ? '' : `; single cells ${ratio.toFixed(2)}×`;
      targets.push(
        judge(target, median(rounds), (r) => `${r.toFixed(2)}× (median of ${rounds.length} paired rounds: ${rounds.map((v) => v.toFixed(2)).join(', ')}${single})`, '≥ 0.90×', (r) => r >= 0.9),
      );
    }
  }
  for (const mode of ['stream', 'paced'] as const) {
    const cell = at(mode, 1);
    targets.push(judge(`added TTFB p50 @1 over the baseline's, ${MODE_LABEL[mode]}`, cell && added(cells, cell, 'ttfb'), ms, '≤ +0.30 ms', (a) => a <= 0.3));
  }
  {
    const cell = at('json', 1);
    targets.push(judge(`added p50 @1 over the baseline's, json`, cell && added(cells, cell, 'latency'), ms, '≤ +0.20 ms', (a) => a <= 0.2));
  }

  // Judged on the paired rounds (generation and round trip measured beside the first byte) when there are
  // some; otherwise on the direct setup's window generation and the round trip measured alone.
  const paired = guardrail.paired?.['guardrail-window'];
  const window = paired?.ttfbP50Ms ?? guardrail.ttfbP50Ms['guardrail-window'];
  const generation = paired?.windowGenerationP50Ms ?? guardrail.windowGenerationP50Ms;
  const roundTrip = paired?.roundTripP50Ms ?? guardrail.roundTripP50Ms;
  const bound = generation === undefined || Number.isNaN(generation) || Number.isNaN(roundTrip) ? undefined : generation + roundTrip + 2;
  const buffer = guardrail.paired?.['guardrail-buffer']?.ttfbP50Ms ?? guardrail.ttfbP50Ms['guardrail-buffer'];
  targets.push({
    ...judge(
      `guardrail window TTFB (paced answer${paired ? `, ${paired.rounds} paired rounds` : ''})`,
      bound === undefined ? undefined : window,
      (v) => `${v.toFixed(1)} ms${buffer === undefined ? '' : ` (buffer: ${buffer.toFixed(1)} ms)`}`,
      bound === undefined ? '≤ window generation + round trip + 2 ms' : `≤ ${generation!.toFixed(1)} + ${roundTrip.toFixed(1)} + 2 = ${bound.toFixed(1)} ms`,
      (v) => v <= bound!,
    ),
  });

  const held = (r: MemoryResult): boolean => r.opened === r.streams;
  const plain = memory.find((r) => r.target === GATEWAY);
  const run = plain && held(plain) ? plain : (memory.find((r) => r.target.startsWith(GATEWAY) && held(r)) ?? plain);
  const where = run && !held(run) ? ` (only ${run.opened}/${run.streams} streams were open at once)` : run && run !== plain ? ` (on ${run.target})` : '';
  if (plain) {
    targets.push(
      judge(`${plain.streams} slow streams open at once through ${GATEWAY}`, plain.opened, (n) => `${n} (upstream peak ${plain.peakUpstreamStreams})`, `${plain.streams}`, (n) => n === plain.streams),
    );
  }
  const growth = run && held(run) ? (run.openRss - run.idleRss) * (streams / run.streams) : undefined;
  targets.push(judge(`${streams} open streams: extra RSS over idle`, growth, (g) => `${(g / 1024 / 1024).toFixed(1)} MB${where}`, '≤ 100 MB', (g) => g <= 100 * 1024 * 1024));
  targets.push(
    judge(`RSS after all streams closed vs idle`, run?.afterCloseGrowth, (g) => `${g >= 0 ? '+' : ''}${(g * 100).toFixed(1)}%${where}`, '≤ +10%', (g) => g <= 0.1),
  );

  for (const setup of PROTOCOL_SETUPS) {
    for (const mode of ['json', 'stream', 'paced'] as const) {
      const cell = findCell(cells, setup, mode, 50);
      const chat = findCell(cells, GATEWAY, mode, 50);
      const ratio = cell?.serverCpuUsPerReq !== undefined && chat?.serverCpuUsPerReq !== undefined ? cell.serverCpuUsPerReq / chat.serverCpuUsPerReq : undefined;
      targets.push(
        cpuTarget(
          m.pairedCpu,
          setup,
          GATEWAY,
          mode,
          `server CPU µs/req @50, ${setup} ÷ ${GATEWAY} (chat), ${MODE_LABEL[mode]}`,
          ratio,
          () => `${cell!.serverCpuUsPerReq!.toFixed(0)} vs ${chat!.serverCpuUsPerReq!.toFixed(0)} µs`,
          PROTOCOL_LIMIT,
        ),
      );
    }
  }

  const imp = m.importTiming;
  targets.push(judge(`require('express-llm-gateway'), fresh node, dist/cjs, median`, imp?.requireMedianMs, (v) => `${v.toFixed(0)} ms`, `≤ ${IMPORT_LIMIT_MS} ms`, (v) => v <= IMPORT_LIMIT_MS));
  targets.push(judge(`import('express-llm-gateway'), fresh node, dist/esm, median`, imp?.importMedianMs, (v) => `${v.toFixed(0)} ms`, `≤ ${IMPORT_LIMIT_MS} ms`, (v) => v <= IMPORT_LIMIT_MS));

  const worst = m.profiles
    ?.flatMap((p) => p.gateway.slice(0, 1).map((g) => ({ ...g, mode: p.mode })))
    .sort((a, b) => b.share - a.share)[0];
  targets.push(
    judge(
      `profile of ${GATEWAY} @50 (json, stream, paced): largest gateway function (script under dist/) self time`,
      m.profiles && m.profiles.length > 0 ? (worst?.share ?? 0) : undefined,
      (v) => (worst ? `${(v * 100).toFixed(1)}% ${worst.name} (${worst.mode})` : 'none sampled'),
      `≤ ${(PROFILE_LIMIT * 100).toFixed(0)}% of busy time`,
      (v) => v <= PROFILE_LIMIT,
    ),
  );
  return targets;
}

/**
 * A CPU ratio target: judged on the median of the paired rounds when there are some (the single cells'
 * ratio shown beside it), otherwise on the single cells' ratio (`cellRatio`, `cellDetail` its µs).
 */
function cpuTarget(
  paired: PairedCpu | undefined,
  setup: string,
  reference: string,
  mode: Mode,
  target: string,
  cellRatio: number | undefined,
  cellDetail: () => string,
  limit: number,
): TargetResult {
  const rounds = pairedCpuRatios(paired, setup, reference, mode);
  const bound = `≤ ${limit.toFixed(2)}×`;
  if (rounds.length === 0) return judge(target, cellRatio, (r) => `${r.toFixed(2)}× (${cellDetail()})`, bound, (r) => r <= limit);
  const single = cellRatio === undefined || Number.isNaN(cellRatio) ? '' : `; single cells ${cellRatio.toFixed(2)}×`;
  return judge(
    target,
    median(rounds),
    (r) => `${r.toFixed(2)}× (median of ${rounds.length} paired rounds: ${rounds.map((v) => v.toFixed(2)).join(', ')}${single})`,
    bound,
    (r) => r <= limit,
  );
}

function judge(target: string, value: number | undefined, show: (v: number) => string, limit: string, passes: (v: number) => boolean): TargetResult {
  if (value === undefined || Number.isNaN(value)) return { target, measured: 'not measured', limit, result: 'n/a', value: undefined };
  return { target, measured: show(value), limit, result: passes(value) ? 'PASS' : 'FAIL', value };
}

function ms(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(3)} ms`;
}

export interface Report {
  measurements: Measurements;
  outcomes: SetupOutcome[];
  targets: TargetResult[];
  quick: boolean;
  header: string[];
}

const MODES_IN_ORDER: readonly Mode[] = ['json', 'stream', 'paced'];

export function renderReport({ measurements, outcomes, targets, quick, header }: Report): string {
  const { cells, guardrail, memory } = measurements;
  const lines: string[] = [...header, ''];
  const fix = (v: number | undefined, digits: number, suffix = ''): string => (v === undefined || Number.isNaN(v) ? '—' : `${v.toFixed(digits)}${suffix}`);
  const signed = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '—' : `${v >= 0 ? '+' : ''}${v.toFixed(3)}`);

  lines.push('## Headline: server CPU per request ÷ the baseline\'s (load-generator independent), same run', '');
  lines.push('| setup | mode | CPU µs/req @1 | CPU × base @1 | CPU µs/req @50 | **CPU × base @50** | req/s × base @50 | added p50 @1 vs base ms | added TTFB @1 vs base ms | added TTFB @1 vs direct ms |');
  lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|');
  const setups = [...new Set(cells.map((c) => c.setup))].filter((s) => s !== 'direct');
  for (const setup of setups) {
    for (const mode of MODES_IN_ORDER) {
      const one = findCell(cells, setup, mode, 1);
      const fifty = findCell(cells, setup, mode, 50);
      if (!one && !fifty) continue;
      lines.push(
        `| ${setup} | ${mode} | ${fix(one?.serverCpuUsPerReq, 0)} | ${fix(one && cpuRatio(cells, one), 2, '×')} | ${fix(fifty?.serverCpuUsPerReq, 0)} | ` +
          `**${fix(fifty && cpuRatio(cells, fifty), 2, '×')}** | ${fix(fifty && reqRatio(cells, fifty), 2, '×')} | ` +
          `${signed(one && added(cells, one, 'latency'))} | ${signed(one && added(cells, one, 'ttfb'))} | ${signed(one && added(cells, one, 'ttfb', 'direct'))} |`,
      );
    }
  }

  lines.push('', `## All cells (${measurements.loader}; req/s ratio = req/s ÷ baseline req/s, same mode and connections)`, '');
  lines.push('| setup | mode | conns | req/s | × baseline | p50 ms | p99 ms | timed p50 ms | TTFB p50 ms | server CPU µs/req | mock CPU µs/req | server RSS MB |');
  lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const cell of cells) {
    const errors = cell.load.errors + cell.load.non2xx;
    lines.push(
      `| ${cell.setup} | ${cell.mode} | ${cell.connections} | ${cell.load.reqPerSec.toFixed(0)}${errors ? ` (${cell.load.errors} errors, ${cell.load.non2xx} non-2xx)` : ''} | ` +
        `${fix(reqRatio(cells, cell), 2)} | ${cell.load.latencyP50Ms.toFixed(2)} | ${cell.load.latencyP99Ms.toFixed(2)} | ` +
        `${cell.timed ? cell.timed.latencyP50Ms.toFixed(3) : ''} | ${cell.timed ? cell.timed.ttfbP50Ms.toFixed(3) : ''} | ` +
        `${fix(cell.serverCpuUsPerReq, 0)} | ${fix(cell.mockCpuUsPerReq, 0)} | ${cell.serverRssMax === undefined ? '—' : (cell.serverRssMax / 1024 / 1024).toFixed(0)} |`,
    );
  }
  const notes = outcomes.filter((o) => o.status !== 'ok' || o.checks.length > 0);
  if (notes.length > 0) {
    lines.push('');
    for (const o of notes) lines.push(`- **${o.name}**: ${o.status === 'ok' ? `answer check failed: ${o.checks.join('; ')}` : `${o.status}: ${o.reason}`}`);
  }
  const all = tracingCost(cells, measurements.references);
  const isProtocol = (r: RelativeCost): boolean => (PROTOCOL_SETUPS as readonly string[]).includes(r.setup);
  const relativeTable = (rows: RelativeCost[]): void => {
    lines.push('| setup | mode | conns | CPU µs/req | reference | its CPU µs/req | **CPU × reference** | CPU × baseline | req/s × reference |');
    lines.push('|---|---|--:|--:|---|--:|--:|--:|--:|');
    for (const r of rows) {
      lines.push(
        `| ${r.setup} | ${r.mode} | ${r.connections} | ${fix(r.cpuUsPerReq, 0)} | ${r.reference} | ${fix(r.referenceCpuUsPerReq, 0)} | ` +
          `**${fix(r.cpuRatio, 2, '×')}** | ${fix(r.cpuRatioToBaseline, 2, '×')} | ${fix(r.reqPerSecRatio, 2, '×')} |`,
      );
    }
  };
  const protocols = all.filter(isProtocol);
  if (protocols.length > 0) {
    lines.push('', `## Protocols (issue #16): server CPU per request ÷ the chat path's (\`router\`), same run; target ≤ ${PROTOCOL_LIMIT.toFixed(2)}× (judged above)`, '');
    relativeTable(protocols);
  }
  if (measurements.pairedCpu && measurements.pairedCpu.rounds.length > 0) pairedTable(lines, measurements.pairedCpu);
  const relative = all.filter((r) => !isProtocol(r));
  if (relative.length > 0) {
    lines.push('', '## Tracing cost (issue #15): server CPU per request ÷ the no-subscriber router\'s, same run (informational, no PASS/FAIL)', '');
    relativeTable(relative);
    lines.push(
      '',
      '`router` has no subscriber (each publish point is one `hasSubscribers` check): whether that costs anything against a build ' +
        'without tracing cannot be measured in one run, so it is not a target. `router+channels`: a subscriber that does nothing (the ' +
        'cost of publishing); `router+otel`: `instrumentGateway()` with the OpenTelemetry SDK, exporters that discard. A few % either ' +
        'way is within one run\'s noise on a shared machine.',
    );
  }
  const guardSetups = Object.entries(guardrail.ttfbP50Ms);
  if (guardrail.windowGenerationP50Ms !== undefined && guardSetups.length > 0) {
    lines.push('', `## Guardrail first byte (paced answer, window ${guardrail.windowChars} chars, emulator +${guardrail.emulatorLatencyMs} ms)`, '');
    lines.push('| | p50 ms |', '|---|--:|');
    lines.push(`| direct alone: first byte | ${guardrail.directTtfbP50Ms?.toFixed(1)} |`);
    lines.push(`| direct alone: first ${guardrail.windowChars} chars generated | ${guardrail.windowGenerationP50Ms.toFixed(1)} |`);
    lines.push(`| direct alone: whole answer | ${guardrail.directTotalP50Ms?.toFixed(1)} |`);
    lines.push(`| ApplyGuardrail round trip alone | ${fix(guardrail.roundTripP50Ms, 1)} |`);
    for (const [name, ttfb] of guardSetups) {
      const p = guardrail.paired?.[name];
      if (p) {
        lines.push(`| ${name}, ${p.rounds} paired rounds: direct's first ${guardrail.windowChars} chars | ${p.windowGenerationP50Ms.toFixed(1)} |`);
        lines.push(`| ${name}, paired: ApplyGuardrail round trip from then | ${p.roundTripP50Ms.toFixed(1)} |`);
      }
      lines.push(`| ${name}: first byte | ${ttfb.toFixed(1)} |`);
    }
  }
  if (memory.length > 0) {
    lines.push('', '## Memory (slow streams held open; RSS of the server process after a full GC)', '');
    lines.push('| target | streams | open at once | upstream peak | idle RSS MB | open RSS MB | KB / stream | after close MB | vs idle | heap idle / open / after MB | completed | failed | abandoned |');
    lines.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const r of memory) {
      lines.push(
        `| ${r.target} | ${r.streams} | ${r.opened} | ${r.peakUpstreamStreams} | ${mb(r.idleRss)} | ${mb(r.openRss)} | ${(r.perStream / 1024).toFixed(1)} | ` +
          `${mb(r.afterCloseRss)} | ${(r.afterCloseGrowth * 100).toFixed(1)}% | ${mb(r.heapUsedIdle)} / ${mb(r.heapUsedOpen)} / ${mb(r.heapUsedAfter)} | ` +
          `${r.completed} | ${r.failed} | ${r.abandoned} |`,
      );
    }
  }
  const imp = measurements.importTiming;
  if (imp) {
    lines.push('', '## Loading the package (fresh `node`, built dist/, nothing configured: no Bedrock)', '');
    lines.push('| | median ms | runs ms |', '|---|--:|---|');
    lines.push(`| require('express-llm-gateway') (dist/cjs) | ${imp.requireMedianMs.toFixed(0)} | ${imp.requireMs.map((v) => v.toFixed(0)).join(', ')} |`);
    lines.push(`| import('express-llm-gateway') (dist/esm) | ${imp.importMedianMs.toFixed(0)} | ${imp.importMs.map((v) => v.toFixed(0)).join(', ')} |`);
    if (imp.built) lines.push('', `(${imp.built}: built with \`npm run build\` first)`);
  }
  if (measurements.profiles && measurements.profiles.length > 0) {
    lines.push('', `## Profile of ${GATEWAY} @50 (a separate pass with the V8 profiler on: its numbers are not in the tables above)`, '');
    lines.push('Gateway function = a function whose script is a file of the built package under dist/ (what the gateway setups run; lib/ for sources run through tsx; not node_modules, not Node internals). Self time as a share of the process\'s busy time (idle excluded; GC and native included).', '');
    for (const p of measurements.profiles) {
      lines.push(`### ${p.mode}: ${p.busyMs.toFixed(0)} ms busy; modules: ${p.modules.slice(0, 6).map((r) => `${r.name} ${(r.share * 100).toFixed(1)}%`).join(', ')}`, '');
      lines.push('| self % | gateway function |', '|--:|---|');
      for (const g of p.gateway.slice(0, 8)) lines.push(`| ${(g.share * 100).toFixed(1)}${g.share > PROFILE_LIMIT ? ' ⚠' : ''} | ${g.name} |`);
      lines.push('');
    }
  }
  lines.push(
    '',
    quick ? '## Targets (issue #14) — QUICK RUN: INDICATIVE ONLY, cells are too short to judge' : '## Targets (issue #14)',
    '',
    '| target | measured | limit | result |',
    '|---|---|---|---|',
  );
  for (const t of targets) lines.push(`| ${t.target} | ${t.measured} | ${t.limit} | ${t.result}${quick && t.result !== 'n/a' ? ' (indicative)' : ''} |`);
  const counted = targets.filter((t) => t.result !== 'n/a');
  lines.push('', `${counted.filter((t) => t.result === 'PASS').length}/${counted.length} targets pass${targets.length > counted.length ? `, ${targets.length - counted.length} not measured` : ''}${quick ? ' (quick run: indicative)' : ''}.`);
  return lines.join('\n');
}

/** The paired rounds: each round's server CPU µs/req per process, its ratios, and the medians judged. */
function pairedTable(lines: string[], paired: PairedCpu): void {
  const setups = [...new Set(paired.rounds.flatMap((r) => r.order))];
  const ratios = PAIRED_RATIOS.filter(([setup, reference]) => setups.includes(setup) && setups.includes(reference));
  const rounds = Math.max(...paired.rounds.map((r) => r.round));
  lines.push(
    '',
    `## Paired rounds: server CPU µs/req @${paired.connections}, every process running, measured back to back (${paired.warmupS} s warm-up + ${paired.cellS} s each, order reversed every other round); the CPU targets are judged on the medians`,
    '',
  );
  lines.push(`| mode | round | ${setups.join(' | ')} | ${ratios.map(([s, r]) => `${s} ÷ ${r}`).join(' | ')} |`);
  lines.push(`|---|---|${setups.map(() => '--:|').join('')}${ratios.map(() => '--:|').join('')}`);
  for (const mode of MODES_IN_ORDER) {
    const ofMode = paired.rounds.filter((r) => r.mode === mode);
    if (ofMode.length === 0) continue;
    for (const round of ofMode) {
      const us = setups.map((s) => {
        const c = round.cells[s];
        return c === undefined ? '—' : `${c.cpuUsPerReq.toFixed(0)}${c.errors > 0 ? ` (${c.errors} errors)` : ''}`;
      });
      const rs = ratios.map(([s, r]) => {
        const own = round.cells[s];
        const ref = round.cells[r];
        return own && ref ? `${(own.cpuUsPerReq / ref.cpuUsPerReq).toFixed(2)}×` : '—';
      });
      lines.push(`| ${mode} | ${round.round}/${rounds}${round.order[0] === setups[0] ? '' : ' (reversed)'} | ${us.join(' | ')} | ${rs.join(' | ')} |`);
    }
    const medians = ratios.map(([s, r]) => {
      const values = pairedCpuRatios(paired, s, r, mode);
      return values.length === 0 ? '—' : `**${median(values).toFixed(2)}×**`;
    });
    lines.push(`| ${mode} | median | ${setups.map(() => '').join(' | ')} | ${medians.join(' | ')} |`);
  }
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
