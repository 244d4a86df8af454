/**
 * The abort signal and timers of one upstream attempt. It aborts, with a classified error as the reason,
 * when the request is cancelled (client gone, a during-call check failed, the request deadline), when the
 * first content does not come in time, when the stream stalls, or when the whole call takes too long.
 * Adapters throw `signal.reason`, so the failure is classified before anybody sees it.
 */
import type { AttemptControl } from './context.js';
import { TimeoutError } from './errors.js';
import type { Deployment } from './providers/types.js';

export class UpstreamAttempt implements AttemptControl {
  private readonly controller = new AbortController();
  private readonly parent: AbortSignal;
  private readonly deployment: Deployment;
  private firstTokenTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly totalTimer: NodeJS.Timeout;
  private readonly onParentAbort = (): void => this.abort(this.parent.reason as Error);

  constructor(parent: AbortSignal, deployment: Deployment, streaming: boolean) {
    this.parent = parent;
    this.deployment = deployment;
    const { totalMs, firstTokenMs } = deployment.timeouts;
    this.totalTimer = setTimeout(() => this.abort(this.timeout('finish', totalMs)), totalMs);
    // Without streaming there is no "first token" to see before the whole answer: only the total applies.
    if (streaming) this.firstTokenTimer = setTimeout(() => this.abort(this.timeout('send its first token', firstTokenMs)), firstTokenMs);
    if (parent.aborted) this.abort(parent.reason as Error);
    else parent.addEventListener('abort', this.onParentAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** The first content arrived: from now on the idle timeout watches the gaps between chunks. */
  firstContent(): void {
    clearTimeout(this.firstTokenTimer);
    this.firstTokenTimer = undefined;
    const { idleMs } = this.deployment.timeouts;
    this.idleTimer = setTimeout(() => this.abort(this.timeout('send the next chunk', idleMs)), idleMs);
  }

  /** Another chunk arrived: restart the idle countdown (refresh() reuses the timer, no allocation). */
  chunk(): void {
    this.idleTimer?.refresh();
  }

  dispose(): void {
    clearTimeout(this.totalTimer);
    clearTimeout(this.firstTokenTimer);
    clearTimeout(this.idleTimer);
    this.parent.removeEventListener('abort', this.onParentAbort);
  }

  private timeout(what: string, ms: number): TimeoutError {
    return new TimeoutError(`Deployment '${this.deployment.id}' of '${this.deployment.group}' did not ${what} within ${ms} ms.`);
  }
}
