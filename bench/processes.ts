/**
 * Server processes under test, seen from the orchestrator: each is forked with its own Node (through tsx)
 * and an IPC channel, so its RSS and CPU time are its own and not the load generator's. Every process
 * started here is killed when the run ends, fails or is interrupted (Ctrl-C).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { resolve } from 'node:path';
import type { ChildMessage, ProfiledMessage, ProfileRequest, StatsMessage } from './protocol.js';

const SERVERS_DIR = resolve(__dirname, 'servers');
const START_TIMEOUT_MS = 60_000;
const STATS_TIMEOUT_MS = 10_000;

const running = new Set<ChildProcess>();

export class ServerProcess {
  private pending: ((stats: StatsMessage) => void)[] = [];
  private profiling: ((message: ProfiledMessage) => void)[] = [];

  private constructor(
    readonly label: string,
    readonly url: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'stats') this.pending.shift()?.(message);
      if (message.type === 'profiled') this.profiling.shift()?.(message);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Forks `bench/servers/<script>` and waits for it to listen. Resolves with `{ skipped }` when the
   * setup reported that a piece it needs is not available.
   */
  static start(label: string, script: string, args: string[], execArgv: string[] = []): Promise<ServerProcess | { skipped: string }> {
    const profileDir = process.env.BENCH_PROFILE;
    // One folder per server; tsx's loader thread writes its own (small) profile beside the main thread's.
    const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(profileDir, label.replace(/[^\w+-]+/g, '_'))}`] : [];
    const child = fork(resolve(SERVERS_DIR, script), args, {
      execArgv: ['--import', 'tsx', '--expose-gc', ...profile, ...execArgv],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // The AWS SDK's notice that it will need Node 22 from 2027 says nothing about this run.
      env: { ...process.env, NODE_ENV: 'production', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    });
    running.add(child);
    child.once('exit', () => running.delete(child));
    return new Promise((resolveStart, reject) => {
      const timer = setTimeout(() => fail(new Error(`${label}: not ready after ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      const onExit = (code: number | null, signal: string | null): void =>
        fail(new Error(`${label}: exited before it was ready (code ${code}, signal ${signal})`));
      const fail = (err: Error): void => {
        clearTimeout(timer);
        child.off('exit', onExit);
        child.kill('SIGKILL');
        reject(err);
      };
      child.once('exit', onExit);
      const onMessage = (message: ChildMessage): void => {
        if (message.type === 'ready') {
          clearTimeout(timer);
          child.off('exit', onExit);
          child.off('message', onMessage);
          resolveStart(new ServerProcess(label, message.url, child));
        } else if (message.type === 'skipped') {
          clearTimeout(timer);
          child.off('exit', onExit);
          child.off('message', onMessage);
          child.kill('SIGKILL');
          resolveStart({ skipped: message.reason });
        } else if (message.type === 'failed') {
          fail(new Error(`${label}: ${message.error}`));
        }
      };
      child.on('message', onMessage);
    });
  }

  /** The process's memory and CPU counters; with `gc`, after a full garbage collection. */
  stats(gc = false): Promise<StatsMessage> {
    return new Promise((resolveStats, reject) => {
      if (!this.child.connected) {
        reject(new Error(`${this.label}: process is gone`));
        return;
      }
      const timer = setTimeout(() => reject(new Error(`${this.label}: no stats answer`)), STATS_TIMEOUT_MS);
      this.pending.push((stats) => {
        clearTimeout(timer);
        resolveStats(stats);
      });
      this.child.send({ type: 'stats', gc });
    });
  }

  /** Starts the V8 CPU profiler in the process (inspector session), or stops it and writes `file`. */
  profile(action: 'start' | 'stop', file?: string): Promise<string | undefined> {
    return new Promise((resolveProfile, reject) => {
      if (!this.child.connected) {
        reject(new Error(`${this.label}: process is gone`));
        return;
      }
      const timer = setTimeout(() => reject(new Error(`${this.label}: no profile answer`)), 30_000);
      this.profiling.push((message) => {
        clearTimeout(timer);
        if (message.error) reject(new Error(`${this.label}: profiler: ${message.error}`));
        else resolveProfile(message.file);
      });
      const request: ProfileRequest = { type: 'profile', action, ...(file ? { file } : {}) };
      this.child.send(request);
    });
  }

  /** Asks the process to close, and kills it if it has not exited in time (a CPU profile takes a while to write). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((done) => this.child.once('exit', () => done()));
    if (this.child.connected) this.child.send({ type: 'stop' });
    else this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), process.env.BENCH_PROFILE ? 15_000 : 1_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Kills every server process still running (synchronous, for exit and signal handlers). */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/** Kills the children however the orchestrator ends. */
export function installCleanup(): void {
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping the server processes\n`);
      killAll();
      process.exit(130);
    });
  }
}
