/**
 * The results: one cell per (target, streaming or not, connections), the targets of issue #7 judged
 * against the baseline and direct numbers of the same run, and the markdown printed at the end.
 */
import type { LoadResult, TimedResult } from './load.js';
import type { MemoryResult } from './memory.js';
import type { TargetKind } from './setups.js';

export interface Cell {
  setup: string;
  kind: TargetKind;
  stream: boolean;
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
  /** Per guardrail setup: first byte of the paced answer. */
  ttfbP50Ms: Record<string, number>;
}

export interface TargetResult {
  target: string;
  measured: string;
  limit: string;
  result: 'PASS' | 'FAIL' | 'n/a';
  value: number | undefined;
}

const GATEWAY = 'router';

export function evaluateTargets(cells: Cell[], guardrail: GuardrailTiming, memory: MemoryResult[], streams: number): TargetResult[] {
  const find = (setup: string, stream: boolean, connections: number): Cell | undefined =>
    cells.find((c) => c.setup === setup && c.stream === stream && c.connections === connections);
  const targets: TargetResult[] = [];

  for (const [stream, floor] of [[false, 0.8], [true, 0.7]] as const) {
    const base = find('baseline', stream, 50);
    const gw = find(GATEWAY, stream, 50);
    const ratio = base && gw ? gw.load.reqPerSec / base.load.reqPerSec : undefined;
    targets.push(judge(`${stream ? 'streaming (20 chunks)' : 'non-streaming'} req/s @50 conns, ${GATEWAY} / baseline`, ratio, (r) => `${r.toFixed(2)}×`, `≥ ${floor.toFixed(2)}×`, (r) => r >= floor));
  }
  for (const stream of [false, true]) {
    const direct = find('direct', stream, 1)?.timed;
    const gw = find(GATEWAY, stream, 1)?.timed;
    const added = direct && gw ? gw.latencyP50Ms - direct.latencyP50Ms : undefined;
    targets.push(judge(`added p50 @1 conn vs direct, ${stream ? 'streaming' : 'non-streaming'}`, added, ms, '≤ 0.30 ms', (a) => a <= 0.3));
  }
  for (const stream of [true, false]) {
    const direct = find('direct', stream, 1)?.timed;
    const gw = find(GATEWAY, stream, 1)?.timed;
    const added = direct && gw ? gw.ttfbP50Ms - direct.ttfbP50Ms : undefined;
    targets.push(judge(`added TTFB @1 conn vs direct, ${stream ? 'streaming' : 'non-streaming'}`, added, ms, '≤ 1.00 ms', (a) => a <= 1));
  }

  const window = guardrail.ttfbP50Ms['guardrail-window'];
  const generation = guardrail.windowGenerationP50Ms;
  const bound = generation === undefined || Number.isNaN(guardrail.roundTripP50Ms) ? undefined : generation + guardrail.roundTripP50Ms + 2;
  const buffer = guardrail.ttfbP50Ms['guardrail-buffer'];
  targets.push({
    ...judge(
      'guardrail window TTFB (paced answer)',
      bound === undefined ? undefined : window,
      (v) => `${v.toFixed(1)} ms${buffer === undefined ? '' : ` (buffer: ${buffer.toFixed(1)} ms)`}`,
      bound === undefined ? '≤ window generation + round trip + 2 ms' : `≤ ${generation!.toFixed(1)} + ${guardrail.roundTripP50Ms.toFixed(1)} + 2 = ${bound.toFixed(1)} ms`,
      (v) => v <= bound!,
    ),
  });

  const held = (m: MemoryResult): boolean => m.opened === m.streams;
  const plain = memory.find((m) => m.target === GATEWAY);
  const run = plain && held(plain) ? plain : (memory.find((m) => m.target.startsWith(GATEWAY) && held(m)) ?? plain);
  const where = run && !held(run) ? ` (only ${run.opened}/${run.streams} streams were open at once)` : run && run !== plain ? ` (on ${run.target})` : '';
  if (plain) {
    targets.push(
      judge(`${plain.streams} slow streams open at once through ${GATEWAY}`, plain.opened, (n) => `${n} (upstream peak ${plain.peakUpstreamStreams})`, `${plain.streams}`, (n) => n === plain.streams),
    );
  }
  const growth = run && held(run) ? (run.openRss - run.idleRss) * (streams / run.streams) : undefined;
  targets.push(judge(`${streams} open streams: extra RSS`, growth, (g) => `${(g / 1024 / 1024).toFixed(1)} MB${where}`, '≤ 100 MB', (g) => g <= 100 * 1024 * 1024));
  targets.push(
    judge(`RSS after all streams closed vs idle`, run?.afterCloseGrowth, (g) => `${g >= 0 ? '+' : ''}${(g * 100).toFixed(1)}%${where}`, '≤ +10%', (g) => g <= 0.1),
  );
  return targets;
}

function judge(target: string, value: number | undefined, show: (v: number) => string, limit: string, passes: (v: number) => boolean): TargetResult {
  if (value === undefined || Number.isNaN(value)) return { target, measured: 'not measured', limit, result: 'n/a', value: undefined };
  return { target, measured: show(value), limit, result: passes(value) ? 'PASS' : 'FAIL', value };
}

function ms(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(3)} ms`;
}

export interface Report {
  cells: Cell[];
  outcomes: SetupOutcome[];
  targets: TargetResult[];
  guardrail: GuardrailTiming;
  memory: MemoryResult[];
}

export function renderReport({ cells, outcomes, targets, guardrail, memory }: Report): string {
  const lines: string[] = [];
  lines.push('## Throughput and latency (ratio = req/s ÷ baseline req/s, same mode and connections, same run)', '');
  lines.push('| setup | mode | conns | req/s | × baseline | p50 ms | p99 ms | timed p50 ms | TTFB p50 ms | server CPU µs/req | server RSS MB |');
  lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const cell of cells) {
    const base = cells.find((c) => c.setup === 'baseline' && c.stream === cell.stream && c.connections === cell.connections);
    const ratio = base ? cell.load.reqPerSec / base.load.reqPerSec : Number.NaN;
    const errors = cell.load.errors + cell.load.non2xx;
    lines.push(
      `| ${cell.setup} | ${cell.stream ? 'stream' : 'json'} | ${cell.connections} | ${cell.load.reqPerSec.toFixed(0)}${errors ? ` (${errors} errors)` : ''} | ` +
        `${ratio.toFixed(2)} | ${cell.load.latencyP50Ms.toFixed(2)} | ${cell.load.latencyP99Ms.toFixed(2)} | ` +
        `${cell.timed ? cell.timed.latencyP50Ms.toFixed(3) : ''} | ${cell.timed ? cell.timed.ttfbP50Ms.toFixed(3) : ''} | ` +
        `${cell.serverCpuUsPerReq === undefined ? '—' : cell.serverCpuUsPerReq.toFixed(0)} | ${cell.serverRssMax === undefined ? '—' : (cell.serverRssMax / 1024 / 1024).toFixed(0)} |`,
    );
  }
  const notes = outcomes.filter((o) => o.status !== 'ok' || o.checks.length > 0);
  if (notes.length > 0) {
    lines.push('');
    for (const o of notes) lines.push(`- **${o.name}**: ${o.status === 'ok' ? `answer check failed: ${o.checks.join('; ')}` : `${o.status}: ${o.reason}`}`);
  }
  const guardSetups = Object.entries(guardrail.ttfbP50Ms);
  if (guardrail.windowGenerationP50Ms !== undefined && guardSetups.length > 0) {
    lines.push('', `## Guardrail first byte (paced answer, window ${guardrail.windowChars} chars, emulator +${guardrail.emulatorLatencyMs} ms)`, '');
    lines.push('| | p50 ms |', '|---|--:|');
    lines.push(`| direct: first byte | ${guardrail.directTtfbP50Ms?.toFixed(1)} |`);
    lines.push(`| direct: first ${guardrail.windowChars} chars generated | ${guardrail.windowGenerationP50Ms.toFixed(1)} |`);
    lines.push(`| direct: whole answer | ${guardrail.directTotalP50Ms?.toFixed(1)} |`);
    lines.push(`| ApplyGuardrail round trip | ${guardrail.roundTripP50Ms.toFixed(1)} |`);
    for (const [name, ttfb] of guardSetups) lines.push(`| ${name}: first byte | ${ttfb.toFixed(1)} |`);
  }
  if (memory.length > 0) {
    lines.push('', '## Memory (slow streams held open; RSS of the server process after a full GC)', '');
    lines.push('| target | streams | open at once | upstream peak | idle RSS MB | open RSS MB | KB / stream | after close MB | vs idle | heap idle / open / after MB | completed | failed | abandoned |');
    lines.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const m of memory) {
      lines.push(
        `| ${m.target} | ${m.streams} | ${m.opened} | ${m.peakUpstreamStreams} | ${mb(m.idleRss)} | ${mb(m.openRss)} | ${(m.perStream / 1024).toFixed(1)} | ` +
          `${mb(m.afterCloseRss)} | ${(m.afterCloseGrowth * 100).toFixed(1)}% | ${mb(m.heapUsedIdle)} / ${mb(m.heapUsedOpen)} / ${mb(m.heapUsedAfter)} | ` +
          `${m.completed} | ${m.failed} | ${m.abandoned} |`,
      );
    }
  }
  lines.push('', '## Targets (issue #7)', '', '| target | measured | limit | result |', '|---|---|---|---|');
  for (const t of targets) lines.push(`| ${t.target} | ${t.measured} | ${t.limit} | ${t.result} |`);
  return lines.join('\n');
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
