/**
 * The child side of the orchestrator's IPC protocol, shared by every server under test.
 *
 * - `{ type: 'ready', url, info }` once listening;
 * - on `{ type: 'stats', gc }`: `{ type: 'stats', ... }` with this process's RSS, heap and CPU time
 *   (optionally after a full GC, when run with `--expose-gc`);
 * - on `{ type: 'profile', action: 'start' }` / `{ type: 'profile', action: 'stop', file }`: starts the
 *   V8 CPU profiler through `node:inspector` / stops it and writes the `.cpuprofile` to `file`; answers
 *   `{ type: 'profiled', file }` (the bench profiles only the cells, not the start-up);
 * - exits when the parent says `{ type: 'stop' }`, when the IPC channel closes (parent gone: Ctrl-C,
 *   crash) or on SIGTERM, so no server outlives a run.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { findSourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { ProfileRequest, StatsMessage } from '../protocol.js';

export interface Started {
  url: string;
  info?: Record<string, unknown>;
  /** Live counters sent with every stats answer. */
  live?: () => Record<string, number>;
  close(): Promise<void>;
}

export async function runChild(name: string, start: () => Promise<Started>): Promise<void> {
  if (!process.send) throw new Error(`${name}: start me through bench/run.ts (needs an IPC channel)`);
  let started: Started | undefined;
  const exit = (code: number): void => {
    const closing = started?.close().catch(() => undefined) ?? Promise.resolve();
    // A close that hangs (a stream still open) must not keep the process alive.
    setTimeout(() => process.exit(code), 500).unref();
    void closing.then(() => process.exit(code));
  };
  process.on('disconnect', () => exit(0));
  process.on('SIGTERM', () => exit(0));
  process.on('SIGINT', () => undefined); // the parent handles Ctrl-C and tells us to stop
  process.on('message', (message: { type?: string; gc?: boolean } | ProfileRequest) => {
    if (message.type === 'stop') exit(0);
    if (message.type === 'stats') process.send?.(stats((message as { gc?: boolean }).gc === true, started?.live));
    if (message.type === 'profile') {
      profile(message as ProfileRequest).then(
        (file) => process.send?.({ type: 'profiled', file }),
        (err: unknown) => process.send?.({ type: 'profiled', file: undefined, error: (err as Error).message }),
      );
    }
  });
  try {
    started = await start();
  } catch (err) {
    process.stderr.write(`${name}: failed to start: ${(err as Error).stack ?? String(err)}\n`);
    process.send({ type: 'failed', error: (err as Error).message });
    setTimeout(() => process.exit(1), 100);
    return;
  }
  process.send({ type: 'ready', url: started.url, info: started.info ?? {} });
}

function stats(gc: boolean, live: (() => Record<string, number>) | undefined): StatsMessage {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (gc && collect) {
    collect();
    collect();
  }
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  return {
    type: 'stats',
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    external: memory.external,
    arrayBuffers: memory.arrayBuffers,
    maxRss: process.resourceUsage().maxRSS * 1024,
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    gcAvailable: collect !== undefined,
    live: live?.() ?? {},
  };
}

let session: Session | undefined;

function post<T>(method: string, params?: Record<string, unknown>): Promise<T> {
  return new Promise((resolvePost, reject) => session!.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolvePost(result as T))));
}

async function profile(request: ProfileRequest): Promise<string | undefined> {
  if (request.action === 'start') {
    session ??= new Session();
    session.connect();
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: request.intervalUs ?? 250 });
    await post('Profiler.start');
    return undefined;
  }
  if (!session) throw new Error('the profiler was not started');
  const { profile: result } = await post<{ profile: unknown }>('Profiler.stop');
  session.disconnect();
  session = undefined;
  writeFileSync(request.file!, JSON.stringify(mapToSources(result as ProfileJson)));
  return request.file;
}

interface ProfileJson {
  nodes: { callFrame: { url: string; lineNumber: number; columnNumber: number } }[];
  sourceMapped?: boolean;
}

/**
 * tsx compiles each TypeScript file to a line or two: with `--enable-source-maps` (the bench's profile pass
 * starts this process with it), the positions of the repository's own files are mapped back to their
 * source lines, so functions (anonymous ones too) are told apart and found.
 */
function mapToSources(profile: ProfileJson): ProfileJson {
  if (!process.execArgv.includes('--enable-source-maps')) return profile;
  for (const { callFrame } of profile.nodes) {
    if (!callFrame.url.startsWith('file://') || callFrame.url.includes('/node_modules/')) continue;
    try {
      const map = findSourceMap(fileURLToPath(callFrame.url)) ?? findSourceMap(callFrame.url);
      const entry = map?.findEntry(callFrame.lineNumber, callFrame.columnNumber) as { originalLine?: number; originalColumn?: number } | undefined;
      if (entry?.originalLine !== undefined) {
        callFrame.lineNumber = entry.originalLine;
        callFrame.columnNumber = entry.originalColumn ?? 0;
      }
    } catch {
      // left as compiled
    }
  }
  profile.sourceMapped = true;
  return profile;
}
