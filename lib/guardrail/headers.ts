/**
 * The guardrail part of the response headers. Kept apart from the middleware so the context can build
 * headers without importing the guardrail (which imports the context).
 */
import type { GuardrailRecord } from '../context.js';

export const HEADER_GUARDRAIL = 'x-gateway-guardrail';
export const HEADER_GUARDRAIL_UNITS = 'x-gateway-guardrail-units';

/** The strongest action per guardrail and side: a block outranks an error, which outranks a mask. */
const ACTION_RANK: Readonly<Record<GuardrailRecord['action'], number>> = { NONE: 0, MASKED: 1, ERROR: 2, BLOCKED: 3 };

/**
 * Response headers describing the guardrail checks so far: `x-gateway-guardrail: <name>=<SOURCE>:<ACTION>;…`
 * (the strongest action per guardrail and side, in first-check order) and `x-gateway-guardrail-units: <N>`
 * (text units of every call). Empty without records. Headers go out at commit, so they cover the checks
 * made before the first byte (input checks, the first output window, a whole buffered answer).
 */
export function guardrailHeaders(records: readonly GuardrailRecord[]): Record<string, string> {
  if (records.length === 0) return {};
  const strongest = new Map<string, GuardrailRecord['action']>();
  let units = 0;
  for (const r of records) {
    units += r.units;
    const key = `${headerToken(r.guardrail)}=${r.source}`;
    const seen = strongest.get(key);
    if (seen === undefined || ACTION_RANK[r.action] > ACTION_RANK[seen]) strongest.set(key, r.action);
  }
  const entries = [...strongest].map(([key, action]) => `${key}:${action}`);
  return { [HEADER_GUARDRAIL]: entries.join(';'), [HEADER_GUARDRAIL_UNITS]: String(units) };
}

/** A name that cannot break the header's syntax: visible ASCII without the separators `;`, `=` and `,`. */
function headerToken(name: string): string {
  return name.replace(/[^\x21-\x7e]|[;=,]/g, '_');
}
