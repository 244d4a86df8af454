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
  /**
   * Malformed events in this attempt's stream (`router.malformedChunks`): every one skipped, or the one
   * that ended it. Absent when there were none.
   */
  malformedChunks?: number;
}

export const HEADER_REQUEST_ID = 'x-request-id';
export const HEADER_GROUP = 'x-gateway-model-group';
export const HEADER_DEPLOYMENT = 'x-gateway-deployment';
export const HEADER_ATTEMPTS = 'x-gateway-attempts';
export const HEADER_RETRIES = 'x-gateway-retries';
export const HEADER_FALLBACKS = 'x-gateway-fallbacks';
/** Every attempt, in order: `group/deployment:status:type` (`:200` for a success), comma-separated. */
export const HEADER_ATTEMPT_LOG = 'x-gateway-attempt-log';

/** The headers describing the attempts so far; empty before the first attempt. */
export function attemptHeaders(attempts: readonly Attempt[]): Record<string, string> {
  const last = attempts.at(-1);
  if (!last) return {};
  let retries = 0;
  let fallbacks = 0;
  let log = '';
  for (const a of attempts) {
    if (a.kind === 'retry') retries++;
    else if (a.kind === 'fallback') fallbacks++;
    log = log === '' ? describeAttempt(a) : `${log}, ${describeAttempt(a)}`;
  }
  // Literal keys (the HEADER_* values above): a literal object is built from a template, computed keys are not.
  return {
    'x-gateway-model-group': last.group,
    'x-gateway-deployment': last.deployment,
    'x-gateway-attempts': String(attempts.length),
    'x-gateway-retries': String(retries),
    'x-gateway-fallbacks': String(fallbacks),
    'x-gateway-attempt-log': log,
  } satisfies Record<typeof HEADER_GROUP | typeof HEADER_DEPLOYMENT | typeof HEADER_ATTEMPTS | typeof HEADER_RETRIES | typeof HEADER_FALLBACKS | typeof HEADER_ATTEMPT_LOG, string>;
}

function describeAttempt(a: Attempt): string {
  const failed = a.outcome === 'error' || a.outcome === 'aborted';
  return `${a.group}/${a.deployment}:${failed ? `${a.status ?? 0}:${a.errorType ?? 'error'}` : '200'}`;
}

/** The attempt list carried in the final error body when more than one attempt was made. */
export function attemptSummary(attempts: readonly Attempt[]): { group: string; deployment: string; status: number; type: string }[] {
  return attempts.map((a) => ({ group: a.group, deployment: a.deployment, status: a.status ?? 200, type: a.errorType ?? 'success' }));
}
