/** Resident memory after a full garbage collection, for the "back to baseline after the load" check. */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** `global.gc` under `--expose-gc`; otherwise enabled at run time (the jest run has no such flag). */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

export interface MemorySample {
  rss: number;
  /** V8 heap in use: growth here (not only in RSS) points at objects kept alive. */
  heapUsed: number;
  /** Memory of Buffers and other objects outside the V8 heap. */
  external: number;
  /** The highest RSS of the process so far. */
  peakRss: number;
}

/** Waits for sockets and timers to wind down, collects twice (weak refs, finalizers), then samples. */
export async function settledMemory(waitMs: number): Promise<MemorySample> {
  const gc = collector();
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  gc();
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  const { rss, heapUsed, external } = process.memoryUsage();
  return { rss, heapUsed, external, peakRss: process.resourceUsage().maxRSS * 1024 };
}
