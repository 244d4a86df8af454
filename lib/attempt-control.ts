/**
 * The abort signal and timers of one upstream attempt. It aborts, with a classified error as the reason,
 * when the request is cancelled (client gone, a during-call check failed, the request deadline), when the
 * first content does not come in time, when the stream stalls, or when the whole call takes too long.
 * Adapters throw `signal.reason`, so the failure is classified before anybody sees it.
 *
 * Per attempt this costs one AbortController and one timer: most attempts end long before any timeout, so
 * the timer is armed for the earliest time one could fire and, when it fires early (a chunk moved the idle
 * deadline on), re-armed for what is left. A chunk only moves a number. The request's signal gets one
 * listener per request, shared by its attempts, and never removed (it goes with the signal).
 */
import type { AttemptControl } from './context.js';
import { TimeoutError } from './errors.js';
import type { Deployment } from './providers/types.js';

/** Which timeout watches the stream besides the total: none (not streaming), the first token, or the gaps. */
type Phase = 'none' | 'first' | 'idle';

export class UpstreamAttempt implements AttemptControl {
  private readonly controller = new AbortController();
  private readonly parent: AbortSignal;
  private readonly deployment: Deployment;
  /** `performance.now()` deadlines: the whole call, and the first token or the next chunk (by `phase`). */
  private readonly totalAt: number;
  private phase: Phase;
  private phaseAt: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(parent: AbortSignal, deployment: Deployment, streaming: boolean) {
    this.parent = parent;
    this.deployment = deployment;
    const { totalMs, firstTokenMs, idleMs } = deployment.timeouts;
    const now = performance.now();
    this.totalAt = now + totalMs;
    // Without streaming there is no "first token" to see before the whole answer: only the total applies.
    this.phase = streaming ? 'first' : 'none';
    this.phaseAt = streaming ? now + firstTokenMs : Infinity;
    // Not later than the idle timeout either: the first content moves the next deadline to at least that.
    const firstCheck = streaming ? Math.min(totalMs, firstTokenMs, idleMs) : totalMs;
    this.timer = setTimeout(this.onTimer, firstCheck);
    if (parent.aborted) this.abort(parent.reason as Error);
    else watch(parent, this);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** The first content arrived: from now on the idle timeout watches the gaps between chunks. */
  firstContent(): void {
    this.phase = 'idle';
    this.phaseAt = performance.now() + this.deployment.timeouts.idleMs;
  }

  /** Another chunk arrived: the idle countdown starts again (the timer catches up when it fires). */
  chunk(): void {
    if (this.phase === 'idle') this.phaseAt = performance.now() + this.deployment.timeouts.idleMs;
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    unwatch(this.parent, this);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    const now = performance.now();
    const { totalMs, firstTokenMs, idleMs } = this.deployment.timeouts;
    if (now >= this.totalAt) return this.abort(this.timeout('finish', totalMs));
    if (now >= this.phaseAt) {
      return this.abort(this.phase === 'first' ? this.timeout('send its first token', firstTokenMs) : this.timeout('send the next chunk', idleMs));
    }
    if (this.controller.signal.aborted) return;
    this.timer = setTimeout(this.onTimer, Math.ceil(Math.min(this.totalAt, this.phaseAt) - now));
  };

  private timeout(what: string, ms: number): TimeoutError {
    return new TimeoutError(`Deployment '${this.deployment.id}' of '${this.deployment.group}' did not ${what} within ${ms} ms.`);
  }
}

/** The attempts listening to each request signal (a request's attempts run one after another). */
const watchers = new WeakMap<AbortSignal, Set<UpstreamAttempt>>();

function watch(parent: AbortSignal, attempt: UpstreamAttempt): void {
  let attempts = watchers.get(parent);
  if (attempts === undefined) {
    const listening = new Set<UpstreamAttempt>();
    parent.addEventListener('abort', () => {
      for (const a of listening) a.abort(parent.reason as Error);
    }, { once: true });
    watchers.set(parent, listening);
    attempts = listening;
  }
  attempts.add(attempt);
}

function unwatch(parent: AbortSignal, attempt: UpstreamAttempt): void {
  watchers.get(parent)?.delete(attempt);
}
