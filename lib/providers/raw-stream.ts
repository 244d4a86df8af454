/**
 * A streamed call read in flowing mode, for an adapter whose whole per-read work is synchronous (split the
 * read into SSE events, turn them into chunks): the body's `'data'` events feed it, and the consumer's
 * `next()` gets the read's result from a promise resolved by the event itself. Per network read that is one
 * promise, no generator step and no `'readable'` tick (Readable's async iterator and any async generator on
 * top of it add a nextTick and one or more promise hops per read, paid per chunk on a paced stream).
 */
import type { Readable } from 'node:stream';
import { type AbortState, adapterFailure, expectEventStream, releaseBody, type UpstreamResponse } from './http.js';
import type { Deployment } from './types.js';

/** What one read's bytes (or the end of the body, `null`) give: a value to hand over, or `undefined` for nothing yet. */
export interface ReadStep<T> {
  /** One network read's bytes; `null` at the end of the body. Throws a failure (classified by the caller). */
  read(bytes: Buffer | null): T | undefined;
  /** Whether the stream is complete (its end marker came): the next `next()` ends the iteration, the connection reusable. */
  readonly completed: boolean;
  /** A failure to throw once the value before it was handed over, if any. */
  readonly failure: { error: unknown } | undefined;
}

/**
 * `streamResponse` with a synchronous translation step: opens the call on the first `next()`, checks the
 * answer is an event stream, then hands over what `step.read` makes of each read. Backpressure: while the
 * consumer is not waiting, a read is kept and the body paused, so a consumer that stops pulling stops the
 * socket. The signal is checked by `step` itself; every failure leaves classified by `adapterFailure`; the
 * connection is handed back exactly as `streamResponse` does (reused after a complete stream).
 */
export class FlowingStream<T> implements AsyncIterableIterator<T> {
  private body: Readable | undefined;
  private started = false;
  private over = false;
  private complete = false;
  /** Reads received while the consumer was not waiting (the body is paused meanwhile). */
  private readonly kept: Buffer[] = [];
  private ended = false;
  private endFed = false;
  private bodyFailure: { error: unknown } | undefined;
  private pending: { error: unknown } | undefined;
  private resolveWait: ((result: IteratorResult<T, void>) => void) | undefined;
  private rejectWait: ((error: unknown) => void) | undefined;

  constructor(
    private readonly open: () => Promise<UpstreamResponse>,
    private readonly step: ReadStep<T>,
    private readonly signal: AbortState,
    private readonly deployment: Deployment,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T, void>> {
    if (this.over) return Promise.resolve(DONE_RESULT);
    if (!this.started) return this.start();
    return this.pull();
  }

  return(): Promise<IteratorResult<T, void>> {
    if (!this.over) this.finish();
    return Promise.resolve(DONE_RESULT);
  }

  private async start(): Promise<IteratorResult<T, void>> {
    this.started = true;
    try {
      const response = await this.open();
      if (this.over) {
        // Returned while the call was being opened: nobody will read this body.
        releaseBody(response.body, false);
        return DONE_RESULT;
      }
      this.body = response.body as Readable;
      await expectEventStream(response, this.signal);
    } catch (error) {
      this.finish();
      throw adapterFailure(error, this.signal, this.deployment);
    }
    if (this.over) return DONE_RESULT;
    this.body.on('data', this.onData).on('end', this.onEnd).on('error', this.onError).on('close', this.onClose);
    return this.pull();
  }

  /** The next value when one can be made from what came; else waits for the body. */
  private pull(): Promise<IteratorResult<T, void>> {
    let result: IteratorResult<T, void> | undefined;
    try {
      result = this.advance();
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (result !== undefined) return Promise.resolve(result);
    if (this.body!.isPaused()) this.body!.resume();
    return new Promise(this.wait);
  }

  private readonly wait = (resolve: (result: IteratorResult<T, void>) => void, reject: (error: unknown) => void): void => {
    this.resolveWait = resolve;
    this.rejectWait = reject;
  };

  /** A result from what came (kept reads, end, failure), or `undefined` when it has to wait. Throws classified, once over. */
  private advance(): IteratorResult<T, void> | undefined {
    try {
      if (this.pending !== undefined) throw this.pending.error;
      if (this.step.completed) {
        this.complete = true;
        this.finish();
        return DONE_RESULT;
      }
      for (;;) {
        if (this.bodyFailure !== undefined) throw this.bodyFailure.error;
        let value: T | undefined;
        if (this.kept.length > 0) value = this.step.read(this.kept.shift()!);
        else if (this.ended && !this.endFed) {
          this.endFed = true;
          value = this.step.read(null);
        } else if (this.endFed) {
          this.complete = true;
          this.finish();
          return DONE_RESULT;
        } else return undefined;
        this.pending = this.step.failure;
        if (value !== undefined) return { value, done: false };
        if (this.pending !== undefined) throw this.pending.error;
        if (this.step.completed) {
          this.complete = true;
          this.finish();
          return DONE_RESULT;
        }
      }
    } catch (error) {
      this.finish();
      throw adapterFailure(error, this.signal, this.deployment);
    }
  }

  /** Hands the waiting consumer what the body brought, if anything can be made of it yet. */
  private wake(): void {
    const resolve = this.resolveWait;
    if (resolve === undefined) return;
    let result: IteratorResult<T, void> | undefined;
    try {
      result = this.advance();
    } catch (error) {
      const reject = this.rejectWait!;
      this.resolveWait = this.rejectWait = undefined;
      reject(error);
      return;
    }
    if (result === undefined) return;
    this.resolveWait = this.rejectWait = undefined;
    resolve(result);
  }

  private readonly onData = (bytes: Buffer): void => {
    this.kept.push(bytes);
    if (this.resolveWait === undefined) {
      // Nobody waits: keep the read, and let the body buffer (then the socket stop) until someone does.
      this.body!.pause();
      return;
    }
    this.wake();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.wake();
  };

  private readonly onError = (error: unknown): void => {
    this.bodyFailure ??= { error };
    this.wake();
  };

  private readonly onClose = (): void => {
    if (this.ended || this.bodyFailure !== undefined) return;
    // What Readable's async iterator throws for a body closed before its end.
    this.bodyFailure = { error: Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }) };
    this.wake();
  };

  /** Stops listening and hands the connection back (reused after a complete stream). */
  private finish(): void {
    this.over = true;
    const body = this.body;
    if (body === undefined) return;
    body.off('data', this.onData).off('end', this.onEnd).off('error', this.onError).off('close', this.onClose);
    this.kept.length = 0;
    releaseBody(body as UpstreamResponse['body'], this.complete);
  }
}

const DONE_RESULT: IteratorResult<never, void> = Object.freeze({ value: undefined, done: true });
