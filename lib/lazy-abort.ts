/**
 * Abort state without an `AbortSignal` until somebody reads one. On Node 20 an AbortSignal (an EventTarget
 * with its own listener map) costs about 2 µs and 1 KB, and most requests and attempts end without anybody
 * asking for it: the gateway's own pieces read `aborted`/`reason` or listen through plain lists. The
 * request's abort state (`RequestAbort` in context.ts) and each upstream attempt (`UpstreamAttempt`) build on it.
 */
export abstract class LazyAbort<Reason = unknown> {
  aborted = false;
  reason: Reason | undefined = undefined;
  private controller: AbortController | undefined = undefined;

  /** Made on first use, already aborted (with the same reason) when the abort came first. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Records the abort and aborts the signal when it exists; false when it had already happened. */
  protected abortOnce(reason: Reason): boolean {
    if (this.aborted) return false;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    return true;
  }
}
