/** Messages between the orchestrator and the server processes (see `servers/child.ts`). */
export interface StatsMessage {
  type: 'stats';
  /** Bytes. */
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** Peak RSS of the process so far, bytes. */
  maxRss: number;
  /** Cumulative CPU time of the process, microseconds. */
  cpuUserUs: number;
  cpuSystemUs: number;
  gcAvailable: boolean;
  /** Live counters a server reports (e.g. the mock's upstream streams in flight). */
  live: Record<string, number>;
}

export interface ReadyMessage {
  type: 'ready';
  url: string;
  info: Record<string, unknown>;
}

export interface FailedMessage {
  type: 'failed';
  error: string;
}

/** Orchestrator → child: start the CPU profiler, or stop it and write the profile to `file`. */
export interface ProfileRequest {
  type: 'profile';
  action: 'start' | 'stop';
  file?: string;
  /** Sampling interval, µs (start only). */
  intervalUs?: number;
}

export interface ProfiledMessage {
  type: 'profiled';
  file: string | undefined;
  error?: string;
}

export type ChildMessage = StatsMessage | ReadyMessage | FailedMessage | SkippedMessage | ProfiledMessage;

export interface SkippedMessage {
  type: 'skipped';
  reason: string;
}
