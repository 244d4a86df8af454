/**
 * The attempt log: one entry per upstream call the request made (first try, retries, fallbacks), and the
 * `x-gateway-*` headers that describe it on every response, streamed or not, success or error.
 */

export type AttemptKind = 'first' | 'retry' | 'fallback';
export type AttemptOutcome = 'pending' | 'success' | 'error' | 'aborted';

export interface Attempt {
  /** The model group the attempt served (the requested one, or a fallback group). */
  group: string;
  /** The deployment's id inside its group. */
  deployment: string;
  provider: string;
  kind: AttemptKind;
  outcome: AttemptOutcome;
  /** HTTP-equivalent status of the failure (the taxonomy's), absent on success. */
  status?: number;
  /** The taxonomy's `type` slug of the failure, absent on success. */
  errorType?: string;
  latencyMs: number;
}

export const HEADER_REQUEST_ID = 'x-request-id';
export const HEADER_GROUP = 'x-gateway-model-group';
export const HEADER_DEPLOYMENT = 'x-gateway-deployment';
export const HEADER_ATTEMPTS = 'x-gateway-attempts';
export const HEADER_RETRIES = 'x-gateway-retries';
export const HEADER_FALLBACKS = 'x-gateway-fallbacks';

/** The headers describing the attempts so far; empty before the first attempt. */
export function attemptHeaders(attempts: readonly Attempt[]): Record<string, string> {
  const last = attempts.at(-1);
  if (!last) return {};
  let retries = 0;
  let fallbacks = 0;
  for (const a of attempts) {
    if (a.kind === 'retry') retries++;
    else if (a.kind === 'fallback') fallbacks++;
  }
  return {
    [HEADER_GROUP]: last.group,
    [HEADER_DEPLOYMENT]: last.deployment,
    [HEADER_ATTEMPTS]: String(attempts.length),
    [HEADER_RETRIES]: String(retries),
    [HEADER_FALLBACKS]: String(fallbacks),
  };
}
