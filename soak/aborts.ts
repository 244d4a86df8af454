/**
 * Invariant 4 under load: when a client leaves, the upstream call in flight for it closes promptly. The
 * OpenAI-compatible mocks log the `x-request-id` the gateway forwards and when each exchange closed, so a
 * client abort is matched to the calls that were open at that moment and checked once they had time to
 * close. Times are net of event-loop stalls (see `stalls.ts`): a stalled loop delays everyone alike.
 */
import type { MockCall, MockServer } from '../lib/testing/index.js';
import type { LoopStalls } from './stalls.js';

export interface AbortProbe {
  id: string;
  abortedAt: number;
  /** The upstream calls of this request that were open when the client left. */
  inFlight: MockCall[];
}

export interface AbortFindings {
  /** Milliseconds from the client abort to the upstream close, net of stalls, one per call in flight. */
  closeDelays: number[];
  /** The same, as measured (stalls included). */
  rawCloseDelays: number[];
  violations: string[];
}

/** Time given beyond the limit before a call that is still open counts as never closed. */
const SLACK_MS = 150;
const POLL_MS = 25;

/** Snapshot at the moment of the abort (the call objects stay live: the mock fills `closedAt` in later). */
export function probeAbort(mocks: readonly MockServer[], id: string, abortedAt: number): AbortProbe {
  const inFlight = mocks.flatMap((mock) => mock.calls.filter((call) => call.headers['x-request-id'] === id && call.closedAt === undefined));
  return { id, abortedAt, inFlight };
}

/** Waits until every call of the probe closed, or the limit and some slack passed (net of stalls). */
export async function settleProbe(probe: AbortProbe, stalls: LoopStalls, limitMs: number): Promise<void> {
  const netElapsed = (): number => Date.now() - probe.abortedAt - stalls.stalledBetween(probe.abortedAt, Date.now());
  while (probe.inFlight.some((call) => call.closedAt === undefined) && netElapsed() <= limitMs + SLACK_MS) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export function checkAbort(probe: AbortProbe, mocks: readonly MockServer[], stalls: LoopStalls, limitMs: number): AbortFindings {
  const findings: AbortFindings = { closeDelays: [], rawCloseDelays: [], violations: [] };
  const net = (to: number): number => to - probe.abortedAt - stalls.stalledBetween(probe.abortedAt, to);
  for (const call of probe.inFlight) {
    if (call.closedAt === undefined) {
      findings.violations.push(`upstream call still open ${net(Date.now())} ms (net of stalls) after the client left`);
      continue;
    }
    const delay = net(call.closedAt);
    findings.closeDelays.push(delay);
    findings.rawCloseDelays.push(call.closedAt - probe.abortedAt);
    if (delay > limitMs) findings.violations.push(`upstream call closed ${delay} ms (net of stalls) after the client left (limit ${limitMs} ms)`);
  }
  const late = mocks.flatMap((mock) => mock.calls.filter((call) => call.headers['x-request-id'] === probe.id && net(call.receivedAt) > limitMs));
  if (late.length > 0) findings.violations.push(`${late.length} upstream call(s) started more than ${limitMs} ms (net of stalls) after the client left`);
  return findings;
}
