/**
 * The abort state and timers of one upstream attempt. It aborts, with a classified error as the reason,
 * when the request is cancelled (client gone, a during-call check failed, the request deadline), when the
 * first content does not come in time, when the stream stalls, or when the whole call takes too long.
 * Adapters throw the reason, so the failure is classified before anybody sees it.
 *
 * Per attempt this costs one timer and no `AbortSignal` unless someone reads `signal` (an output filter, an
 * adapter that needs one): undici takes the attempt itself as its signal (see `UpstreamAbort`). Most attempts
 * end long before any timeout, so the timer is armed for the earliest time one could fire and, when it fires
 * early (a chunk moved the idle deadline on), re-armed for what is left. A chunk only moves a number. The
 * attempt listens to the request's abort state (a plain list, not an EventTarget); once disposed, it ignores it.
 */
import type { AttemptControl } from './context.js';
import { TimeoutError } from './errors.js';
import { LazyAbort } from './lazy-abort.js';
import type { Deployment } from './providers/types.js';
import type { ChatCompletionRequest } from './types.js';

/** Which timeout watches the stream besides the total: none (not streaming), the first token, or the gaps. */
type Phase = 'none' | 'first' | 'idle';

/** Told when the request aborts (see `RequestAbortSource.onAbort`). */
export interface RequestAbortListener {
  requestAborted(reason: unknown): void;
}

/** What ends every attempt of a request (the context's abort state, or the router's own with during-call checks). */
export interface RequestAbortSource {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** The request's `AbortSignal` (made on first use). */
  readonly signal: AbortSignal;
  abort(reason: unknown): void;
  /** Calls `listener.requestAborted` when the request aborts (not when it already has: check `aborted`). */
  onAbort(listener: RequestAbortListener): void;
}

/**
 * The attempt as undici's request `signal` (undici takes an EventEmitter with `on`/`once`/`removeListener`
 * and `aborted`/`reason` besides an `AbortSignal`): no `AbortSignal` is made for an attempt nobody else asks
 * one of. The router puts it on the request it hands the adapter (see `upstreamAbortOf`).
 */
export interface UpstreamAbort {
  readonly aborted: boolean;
  readonly reason: unknown;
  on(event: string, listener: () => void): unknown;
  once(event: string, listener: () => void): unknown;
  removeListener(event: string, listener: () => void): unknown;
}

const UPSTREAM_ABORT = Symbol('express-llm-gateway.upstreamAbort');

/** The request an adapter gets from the router: `signal` is made on first use. */
export class AttemptRequest {
  readonly [UPSTREAM_ABORT]: UpstreamAttempt;
  constructor(
    readonly body: ChatCompletionRequest,
    control: UpstreamAttempt,
    readonly requestId: string,
    /** For a stream: told of each malformed chunk (see `UpstreamRequest.onMalformedChunk`). */
    readonly onMalformedChunk?: (reason: string, skipped: boolean) => void,
  ) {
    this[UPSTREAM_ABORT] = control;
  }

  get signal(): AbortSignal {
    return this[UPSTREAM_ABORT].signal;
  }
}

/**
 * Adapters that read the request's signal only through `upstreamAbortOf` and never copy the request (the
 * OpenAI-compatible one registers itself): the router hands these an `AttemptRequest`, every other adapter
 * (a custom one, a traced wrapper that spreads the request) a plain request with the attempt's `signal`.
 */
export const lazySignalAdapters = new WeakSet<object>();

/** What to give undici as the request's signal: the attempt itself when the router made the request, else its signal. */
export function upstreamAbortOf(request: { readonly signal: AbortSignal }): AbortSignal | UpstreamAbort {
  return request instanceof AttemptRequest ? request[UPSTREAM_ABORT] : request.signal;
}

/** `signal` is made when someone asks for it (an output filter, an adapter other than the OpenAI one). */
export class UpstreamAttempt extends LazyAbort<Error> implements AttemptControl, UpstreamAbort {
  /** undici's listeners (see `UpstreamAbort`). */
  private listeners: (() => void)[] | undefined = undefined;
  private disposed = false;
  private readonly deployment: Deployment;
  /** `performance.now()` deadlines: the whole call, and the first token or the next chunk (by `phase`). */
  private readonly totalAt: number;
  private phase: Phase;
  private phaseAt: number;
  private timer: NodeJS.Timeout | undefined;

  /** `parent`: the request's abort state (an `AbortSignal` also does, at the cost of a listener on it). */
  constructor(parent: RequestAbortSource | AbortSignal, deployment: Deployment, streaming: boolean) {
    super();
    this.deployment = deployment;
    const { totalMs, firstTokenMs, idleMs } = deployment.timeouts;
    const now = performance.now();
    this.totalAt = now + totalMs;
    // Without streaming there is no "first token" to see before the whole answer: only the total applies.
    this.phase = streaming ? 'first' : 'none';
    this.phaseAt = streaming ? now + firstTokenMs : Infinity;
    // Not later than the idle timeout either: the first content moves the next deadline to at least that.
    const firstCheck = streaming ? Math.min(totalMs, firstTokenMs, idleMs) : totalMs;
    this.timer = setTimeout(onTimer, firstCheck, this);
    if (parent.aborted) this.abort(parent.reason as Error);
    else if ('onAbort' in parent) parent.onAbort(this);
    else parent.addEventListener('abort', () => this.requestAborted(parent.reason), { once: true });
  }

  abort(reason: Error): void {
    if (!this.abortOnce(reason)) return;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }

  /** The request aborted: so does this attempt, unless it is over. */
  requestAborted(reason: unknown): void {
    if (!this.disposed) this.abort(reason as Error);
  }

  on(event: string, listener: () => void): this {
    if (event === 'abort' && !this.aborted) (this.listeners ??= []).push(listener);
    return this;
  }

  once(event: string, listener: () => void): this {
    return this.on(event, listener);
  }

  removeListener(event: string, listener: () => void): this {
    const listeners = this.listeners;
    if (event === 'abort' && listeners) {
      const i = listeners.indexOf(listener);
      if (i >= 0) listeners.splice(i, 1);
    }
    return this;
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
    this.disposed = true;
  }

  /** @internal the timer fired: abort if a deadline passed, else wait for the earliest one left. */
  checkDeadlines(): void {
    this.timer = undefined;
    const now = performance.now();
    const { totalMs, firstTokenMs, idleMs } = this.deployment.timeouts;
    if (now >= this.totalAt) return this.abort(this.timeout('finish', totalMs));
    if (now >= this.phaseAt) {
      return this.abort(this.phase === 'first' ? this.timeout('send its first token', firstTokenMs) : this.timeout('send the next chunk', idleMs));
    }
    if (this.aborted || this.disposed) return;
    this.timer = setTimeout(onTimer, Math.ceil(Math.min(this.totalAt, this.phaseAt) - now), this);
  }

  private timeout(what: string, ms: number): TimeoutError {
    return new TimeoutError(`Deployment '${this.deployment.id}' of '${this.deployment.group}' did not ${what} within ${ms} ms.`);
  }
}

/** One function for every attempt's timer (the attempt comes as its argument): no closure per attempt. */
function onTimer(attempt: UpstreamAttempt): void {
  attempt.checkDeadlines();
}
