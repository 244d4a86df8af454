/**
 * The window guardrail's first-byte target alone, repeated: `npx tsx bench/guardrail-only.ts [reps] [setup]`
 * (default 5 repetitions of `guardrail-window`). Starts the mock, the Bedrock emulator and the setup's
 * gateway (dist/cjs: build it first, `npm run build`), runs the paired rounds of `npm run bench`
 * (`guardrail-timing.ts`, 40 rounds each) `reps` times and prints each bound and margin, then the median
 * margin. About 7 s a repetition, instead of a full bench run; for A/B work on a shared machine.
 */
import { pairedWindowTiming } from './guardrail-timing.js';
import { ServerProcess, killAll } from './processes.js';
import { GUARDRAIL_LATENCY_MS, GUARDRAIL_WINDOW_CHARS } from './setups.js';

async function start(label: string, script: string, args: string[]): Promise<ServerProcess> {
  const started = await ServerProcess.start(label, script, args);
  if (!(started instanceof ServerProcess)) throw new Error(`${label} skipped: ${started.skipped}`);
  return started;
}

async function main(): Promise<void> {
  const reps = Number(process.argv[2] ?? 5);
  const setup = process.argv[3] ?? 'guardrail-window';
  const mock = await start('mock upstream', 'mock-upstream.ts', ['openai']);
  const emulator = await start('bedrock emulator', 'mock-upstream.ts', ['bedrock', `--latency=${GUARDRAIL_LATENCY_MS}`]);
  const gateway = await start(setup, 'gateway.ts', [setup, mock.url, emulator.url]);
  const margins: number[] = [];
  for (let i = 0; i < reps; i++) {
    const p = await pairedWindowTiming({
      gatewayOrigin: gateway.url,
      mockOrigin: mock.url,
      emulatorOrigin: emulator.url,
      windowChars: GUARDRAIL_WINDOW_CHARS,
      rounds: 40,
      maxSeconds: 6,
      warmupRounds: 2,
    });
    const bound = p.windowGenerationP50Ms + p.roundTripP50Ms + 2;
    margins.push(bound - p.ttfbP50Ms);
    console.log(
      `TTFB ${p.ttfbP50Ms.toFixed(1)} ms, bound ${bound.toFixed(1)} (generation ${p.windowGenerationP50Ms.toFixed(1)} + round trip ` +
        `${p.roundTripP50Ms.toFixed(1)} + 2), margin ${(bound - p.ttfbP50Ms).toFixed(2)} ms, ${p.rounds} rounds, ${p.errors} errors`,
    );
  }
  margins.sort((a, b) => a - b);
  console.log(`median margin ${margins[Math.floor(margins.length / 2)]!.toFixed(2)} ms over ${reps} repetitions`);
  await Promise.all([gateway.stop(), emulator.stop(), mock.stop()]);
}

main().then(
  () => {
    killAll();
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
