/**
 * The upstreams, each in its own process: `mock-upstream.ts openai [--slow-delay=MS] [--track-inflight]`
 * (the mock OpenAI server every target forwards to) or `mock-upstream.ts bedrock --latency=MS` (the
 * Bedrock ApplyGuardrail emulator for the guardrail setups).
 */
import { startBedrockEmulator } from '../../lib/testing/bedrock-emulator.js';
import { startMockOpenAI } from '../../lib/testing/mock-openai.js';
import { mockScenarios } from '../workload.js';
import { runChild, type Started } from './child.js';

const [kind, ...flags] = process.argv.slice(2);

function flag(name: string, fallback: number): number {
  const given = flags.find((f) => f.startsWith(`--${name}=`));
  return given === undefined ? fallback : Number(given.slice(name.length + 3));
}

async function startOpenAI(): Promise<Started> {
  const trackInflight = flags.includes('--track-inflight');
  const streams = flag('streams', 0);
  const mock = await startMockOpenAI({
    name: 'mock-openai',
    scenarios: mockScenarios(flag('slow-delay', 500)),
    // The call log is a shifting array: keep it tiny for throughput, big enough to count open streams.
    maxCallLog: trackInflight ? Math.max(64, streams * 2) : 16,
  });
  let peak = 0;
  const open = (): number => {
    let n = 0;
    for (const call of mock.calls) if (call.closedAt === undefined) n++;
    return n;
  };
  const timer = trackInflight ? setInterval(() => (peak = Math.max(peak, open())), 50) : undefined;
  return {
    url: mock.url,
    live: (): Record<string, number> =>
      trackInflight ? { inflight: open(), peakInflight: peak, calls: mock.callCount() } : { calls: mock.callCount() },
    close: async () => {
      if (timer) clearInterval(timer);
      await mock.close();
    },
  };
}

async function startBedrock(): Promise<Started> {
  const emulator = await startBedrockEmulator({ latencyMs: flag('latency', 0), maxCallLog: 16 });
  return {
    url: emulator.url,
    live: () => ({ calls: emulator.callCount }),
    close: () => emulator.close(),
  };
}

void runChild(`mock-upstream ${kind}`, kind === 'bedrock' ? startBedrock : startOpenAI);
