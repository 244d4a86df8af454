/**
 * UpstreamAttempt's one timer (issue 14): the total, first-token and idle timeouts each fire at their own
 * deadline (never before it, and not long after), chunks keep an idle stream alive without re-arming
 * anything, and the request's signal reaches the running attempt only (one shared listener). Real timers,
 * short durations; the bounds allow for a loaded machine.
 */
import { once } from 'node:events';
import { AttemptRequest, UpstreamAttempt, upstreamAbortOf } from '../lib/attempt-control.js';
import { RequestAbort } from '../lib/context.js';
import { TimeoutError } from '../lib/errors.js';
import type { Deployment } from '../lib/providers/types.js';

function deployment(timeouts: Partial<Deployment['timeouts']>): Deployment {
  return {
    id: 'd1',
    group: 'g',
    provider: 'openai',
    model: 'm',
    timeouts: { connectMs: 1000, firstTokenMs: 10_000, idleMs: 10_000, totalMs: 10_000, ...timeouts },
  } as Deployment;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits for the attempt to abort; resolves with the reason and the ms it took from `since`. */
async function aborted(attempt: UpstreamAttempt, since: number): Promise<{ reason: Error; afterMs: number }> {
  if (!attempt.signal.aborted) await once(attempt.signal, 'abort');
  return { reason: attempt.signal.reason as Error, afterMs: performance.now() - since };
}

const attempts: UpstreamAttempt[] = [];
function start(parent: AbortSignal | RequestAbort, timeouts: Partial<Deployment['timeouts']>, streaming: boolean): UpstreamAttempt {
  const attempt = new UpstreamAttempt(parent, deployment(timeouts), streaming);
  attempts.push(attempt);
  return attempt;
}
afterEach(() => attempts.splice(0).forEach((a) => a.dispose()));

describe.each([false, true])('stream: %s', (streaming) => {
  it('the total timeout fires at totalMs, naming the deployment and the bound', async () => {
    const t0 = performance.now();
    const attempt = start(new AbortController().signal, { totalMs: 80, firstTokenMs: 5000, idleMs: 5000 }, streaming);
    if (streaming) attempt.firstContent();
    const tick = streaming ? setInterval(() => attempt.chunk(), 10) : undefined;
    const { reason, afterMs } = await aborted(attempt, t0);
    clearInterval(tick);
    expect(reason).toBeInstanceOf(TimeoutError);
    expect(reason.message).toBe("Deployment 'd1' of 'g' did not finish within 80 ms.");
    expect(afterMs).toBeGreaterThanOrEqual(79);
    expect(afterMs).toBeLessThan(1000);
  });

  it("the request's signal aborts the running attempt with its reason, and not one already disposed", async () => {
    const request = new AbortController();
    const first = start(request.signal, {}, streaming);
    first.dispose();
    const second = start(request.signal, {}, streaming);
    const reason = new Error('client gone');
    request.abort(reason);
    expect(second.signal.aborted).toBe(true);
    expect(second.signal.reason).toBe(reason);
    expect(first.signal.aborted).toBe(false);
    // Started after the request ended: aborted at once.
    expect(start(request.signal, {}, streaming).signal.reason).toBe(reason);
  });

  it('dispose stops every timer', async () => {
    const attempt = start(new AbortController().signal, { totalMs: 30, firstTokenMs: 20, idleMs: 20 }, streaming);
    attempt.dispose();
    await sleep(80);
    expect(attempt.signal.aborted).toBe(false);
  });
});

describe('streaming timeouts', () => {
  it('the first-token timeout fires at firstTokenMs when no content came (a role chunk does not count)', async () => {
    const t0 = performance.now();
    const attempt = start(new AbortController().signal, { firstTokenMs: 70, idleMs: 30 }, true);
    attempt.chunk();
    const { reason, afterMs } = await aborted(attempt, t0);
    expect(reason.message).toBe("Deployment 'd1' of 'g' did not send its first token within 70 ms.");
    expect(afterMs).toBeGreaterThanOrEqual(69);
    expect(afterMs).toBeLessThan(1000);
  });

  it('chunks keep the stream alive past every idle and first-token deadline; a gap of idleMs ends it', async () => {
    const attempt = start(new AbortController().signal, { firstTokenMs: 40, idleMs: 60 }, true);
    attempt.firstContent();
    const until = performance.now() + 300;
    while (performance.now() < until) {
      await sleep(15);
      attempt.chunk();
      expect(attempt.signal.aborted).toBe(false);
    }
    const lastChunk = performance.now();
    const { reason, afterMs } = await aborted(attempt, lastChunk);
    expect(reason.message).toBe("Deployment 'd1' of 'g' did not send the next chunk within 60 ms.");
    expect(afterMs).toBeGreaterThanOrEqual(59);
    expect(afterMs).toBeLessThan(1000);
  });

  it('an idle timeout longer than the first-token one still applies from the first content on', async () => {
    const attempt = start(new AbortController().signal, { firstTokenMs: 20, idleMs: 120 }, true);
    await sleep(5);
    attempt.firstContent();
    const t1 = performance.now();
    await sleep(60); // past the first-token deadline: no longer watched
    expect(attempt.signal.aborted).toBe(false);
    const { reason, afterMs } = await aborted(attempt, t1);
    expect(reason.message).toContain('did not send the next chunk within 120 ms');
    expect(afterMs).toBeGreaterThanOrEqual(119);
  });
});

/**
 * No AbortSignal unless someone asks (issue 14): the request's abort state (`RequestAbort`) and the attempt
 * make their signals on first use, already aborted when the abort came first; undici takes the attempt itself
 * as its signal (the EventEmitter form: `on`/`once`/`removeListener`, `aborted`, `reason`).
 */
describe('lazy abort state', () => {
  it('a request signal made after the abort is aborted with its reason; one made before aborts with it', () => {
    const late = new RequestAbort();
    const reason = new Error('client gone');
    late.abort(reason);
    late.abort(new Error('second abort: ignored'));
    expect(late.signal.aborted).toBe(true);
    expect(late.signal.reason).toBe(reason);
    const early = new RequestAbort();
    const signal = early.signal;
    expect(signal.aborted).toBe(false);
    early.abort(reason);
    expect(signal.aborted).toBe(true);
    expect(early.signal).toBe(signal);
  });

  it.each([false, true])("the request's abort reaches the running attempt only (signal read before: %s)", (signalFirst) => {
    const request = new RequestAbort();
    const first = start(request, {}, false);
    first.dispose();
    const second = start(request, {}, false);
    const signal = signalFirst ? second.signal : undefined;
    const heard: string[] = [];
    const listener = (): void => void heard.push('undici');
    second.once('abort', listener);
    second.on('abort', () => heard.push('other'));
    const reason = new Error('client gone');
    request.abort(reason);
    expect(second.aborted).toBe(true);
    expect(second.reason).toBe(reason);
    expect(heard).toEqual(['undici', 'other']);
    expect((signal ?? second.signal).aborted).toBe(true);
    expect(second.signal.reason).toBe(reason);
    expect(first.aborted).toBe(false);
    // Listeners removed by undici (its body closed) are not called.
    const third = start(new RequestAbort(), {}, false);
    third.once('abort', listener);
    third.removeListener('abort', listener);
    third.abort(reason);
    expect(heard).toEqual(['undici', 'other']);
  });

  it('an attempt started on an aborted request is aborted at once', () => {
    const request = new RequestAbort();
    const reason = new Error('gone before the attempt');
    request.abort(reason);
    const attempt = start(request, {}, true);
    expect(attempt.aborted).toBe(true);
    expect(attempt.signal.reason).toBe(reason);
  });

  it('the OpenAI adapter gets an AttemptRequest whose signal is the attempt’s; undici gets the attempt itself', () => {
    const attempt = start(new RequestAbort(), {}, false);
    const request = new AttemptRequest({ model: 'm', messages: [] }, attempt, 'id-1');
    expect(upstreamAbortOf(request)).toBe(attempt);
    expect(request.signal).toBe(attempt.signal);
    const plain = { body: { model: 'm', messages: [] }, signal: attempt.signal, requestId: 'id-1' };
    expect(upstreamAbortOf(plain)).toBe(attempt.signal);
  });
});
