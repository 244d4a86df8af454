/**
 * The fault soak (soak/soak.ts), CI size: 1,000 mixed requests, streaming and not, some abandoned by the
 * client, through upstreams and a guardrail that fail in every way the mocks know. Any violation of the
 * invariants (a cut stream, a second error frame, a 500, a leaked key or URL, an unhandled rejection, an
 * upstream left open after an abort, memory not coming back) fails the test and is listed.
 */
import { runSoak } from '../soak/soak.js';

test('1,000 requests through failing upstreams and guardrails break no invariant', async () => {
  const report = await runSoak({ requests: 1000, concurrency: 25, seed: 20240601, warmup: 300 });

  expect(report.violations).toEqual([]);
  expect(report.violationCount).toBe(0);
  // The soak exercised what it claims to: answers, errors before and after commit, and client aborts
  // while an upstream call was in flight.
  const count = (prefix: string): number => Object.entries(report.outcomes).reduce((sum, [outcome, n]) => sum + (outcome.startsWith(prefix) ? n : 0), 0);
  expect(count('ok:stream')).toBeGreaterThan(0);
  expect(count('ok:json')).toBeGreaterThan(0);
  expect(count('json-error:')).toBeGreaterThan(0);
  expect(count('in-band:')).toBeGreaterThan(0);
  expect(report.outcomes['client-aborted']).toBeGreaterThan(0);
  expect(report.aborts.inFlightUpstream).toBeGreaterThan(0);
  expect(report.upstream.guardrailFaultsArmed).toBeGreaterThan(0);
}, 60_000);
