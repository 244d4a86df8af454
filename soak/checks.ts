/**
 * Per-response checks of the soak, on the raw bytes the client received. Each returns the outcome label
 * the report counts and the violations found (an empty list when the response is what the invariants
 * allow: DESIGN.md, invariants 2, 3 and 5, and "no 500 but a bug").
 */
import type { Exchange } from './client.js';
import { STRICT_GROUP } from './services.js';
import { BLOCKED_WORD } from './upstream.js';

export interface Verdict {
  outcome: string;
  violations: string[];
}

export interface LeakPatterns {
  /** API keys and credentials configured on the gateway. */
  secrets: readonly string[];
  /** `host:port` of every local service. */
  origins: readonly string[];
}

const DONE_FRAME = 'data: [DONE]\n\n';
/** Taxonomy statuses a client may legitimately get (DESIGN.md, "Error taxonomy"), 500 excluded: that is a bug. */
const ERROR_STATUSES = new Set([400, 401, 403, 404, 429, 502, 503, 504]);
const STACK_TRACE = /\n\s+at \S|\(node:internal|\.[cm]?[jt]s:\d+:\d+/;
const URL_TEXT = /\bhttps?:\/\//i;

export function checkExchange(x: Exchange, leaks: LeakPatterns): Verdict {
  const leaked = leaksIn(x.body, leaks);
  if (x.timedOut) return { outcome: 'client-timeout', violations: ['response never ended (client hard timeout)', ...leaked] };
  if (x.abortedAt !== undefined) return { outcome: 'client-aborted', violations: leaked };
  if (x.status === 0) return { outcome: 'no-response', violations: [`no response: ${x.error ?? 'unknown'}`] };
  const violations = [...leaked];
  if (!x.complete || x.error !== undefined) violations.push(`response cut (${x.error ?? 'incomplete body'})`);
  const verdict = x.contentType.startsWith('text/event-stream') ? checkStream(x) : checkJson(x);
  violations.push(...verdict.violations);
  if (x.plan.invalid && verdict.outcome !== 'json-error:invalid_request_error') violations.push(`invalid request answered ${verdict.outcome} (${x.status})`);
  if (x.plan.group === STRICT_GROUP && x.body.includes(BLOCKED_WORD)) violations.push('blocked word reached the client through the fail-closed guardrail');
  return { outcome: verdict.outcome, violations };
}

function leaksIn(body: string, leaks: LeakPatterns): string[] {
  const found: string[] = [];
  if (STACK_TRACE.test(body)) found.push('stack trace in body');
  if (URL_TEXT.test(body) || leaks.origins.some((origin) => body.includes(origin))) found.push('URL in body');
  if (leaks.secrets.some((secret) => body.includes(secret))) found.push('credential in body');
  return found;
}

/** Invariant 2: `data:` frames, ending with `[DONE]` after a normal finish or exactly one error frame. */
function checkStream(x: Exchange): Verdict {
  const violations: string[] = [];
  if (!x.plan.stream) violations.push('SSE answer to a non-streaming request');
  if (x.status !== 200) violations.push(`SSE with status ${x.status}`);
  if (!x.body.endsWith(DONE_FRAME)) return { outcome: 'stream-truncated', violations: [...violations, `stream does not end with [DONE]: …${JSON.stringify(x.body.slice(-80))}`] };
  const frames = x.body.slice(0, -2).split('\n\n');
  const payloads: unknown[] = [];
  for (const frame of frames.slice(0, -1)) {
    if (frame === 'data: [DONE]') return { outcome: 'stream-after-done', violations: [...violations, 'data after [DONE]'] };
    const payload = frame.startsWith('data: ') && !frame.includes('\n') ? parseJson(frame.slice(6)) : undefined;
    if (payload === undefined) return { outcome: 'stream-malformed', violations: [...violations, `not a JSON data frame: ${JSON.stringify(frame.slice(0, 80))}`] };
    payloads.push(payload);
  }
  const errorAt = payloads.map((payload) => errorObjectOf(payload)).flatMap((error, i) => (error ? [{ error, i }] : []));
  if (errorAt.length > 1) violations.push(`${errorAt.length} error frames in one stream`);
  const first = errorAt[0];
  if (first === undefined) {
    if (!payloads.some(hasFinishReason)) violations.push('stream ended with [DONE] but without a finish reason or an error frame');
    return { outcome: 'ok:stream', violations };
  }
  if (first.i !== payloads.length - 1) violations.push('data after the error frame');
  if (first.i === 0) violations.push('committed stream whose first frame is an error (lazy commit)');
  violations.push(...errorShapeViolations(first.error, undefined));
  return { outcome: `in-band:${String(first.error.type)}`, violations };
}

/** Non-streamed answers and pre-commit errors: a completion, or one error object whose code is the status. */
function checkJson(x: Exchange): Verdict {
  const json = parseJson(x.body);
  if (json === undefined) return { outcome: 'json-invalid', violations: [`body is not JSON (status ${x.status}): ${JSON.stringify(x.body.slice(0, 80))}`] };
  if (x.status === 200) {
    const ok = isRecord(json) && json.object === 'chat.completion' && Array.isArray(json.choices) && json.choices.length > 0;
    return { outcome: 'ok:json', violations: ok ? [] : ['200 body is not a chat.completion'] };
  }
  const error = errorObjectOf(json);
  if (error === undefined) return { outcome: 'json-unknown', violations: [`status ${x.status} without an error object`] };
  const violations = errorShapeViolations(error, x.status);
  if (!ERROR_STATUSES.has(x.status)) violations.push(`unexpected status ${x.status}`);
  return { outcome: `json-error:${String(error.type)}`, violations };
}

/** Invariant 5: one shape, `{ message, code, type }`; `internal_error` only ever comes from a bug. */
function errorShapeViolations(error: Record<string, unknown>, status: number | undefined): string[] {
  const violations: string[] = [];
  if (typeof error.message !== 'string' || error.message === '' || typeof error.type !== 'string' || typeof error.code !== 'number') {
    violations.push(`error object without message/code/type: ${JSON.stringify(error).slice(0, 120)}`);
  }
  if (status !== undefined && error.code !== status) violations.push(`error code ${String(error.code)} differs from status ${status}`);
  if (error.type === 'internal_error' || error.code === 500) violations.push(`internal error: ${String(error.message)}`);
  return violations;
}

function errorObjectOf(payload: unknown): Record<string, unknown> | undefined {
  return isRecord(payload) && isRecord(payload.error) ? payload.error : undefined;
}

function hasFinishReason(payload: unknown): boolean {
  if (!isRecord(payload) || !Array.isArray(payload.choices)) return false;
  return payload.choices.some((choice) => isRecord(choice) && typeof choice.finish_reason === 'string');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
