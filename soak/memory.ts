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

/** Waits for sockets and timers to wind down, collects twice (weak refs, finalizers), then samples RSS. */
export async function settledRss(waitMs: number): Promise<number> {
  const gc = collector();
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  gc();
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  return process.memoryUsage().rss;
}
