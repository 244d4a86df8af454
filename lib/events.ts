/**
 * Events for users' own accounting and for metrics: one summary per finished request, built from the
 * context once the response is closed. No prompt or completion text is in it.
 */
import type { Attempt } from './attempts.js';
import type { GatewayContext, GuardrailRecord } from './context.js';
import { ClientDisconnectedError } from './errors.js';
import type { Usage } from './types.js';

export interface RequestSummary {
  requestId: string;
  /** The model group the client asked for. */
  model: string;
  stream: boolean;
  /** The HTTP status sent (200 for a stream that failed after commit: see `errorType`). */
  status: number;
  /** The error the response ended with (JSON or in-band), if any. */
  errorType: string | undefined;
  /** The client left before the response finished. */
  clientAborted: boolean;
  /** Whether the response was committed (status line sent) before it ended. */
  committed: boolean;
  /** Milliseconds from the context's creation to the status line, when one went out. */
  timeToFirstByteMs: number | undefined;
  durationMs: number;
  attempts: readonly Attempt[];
  guardrails: readonly GuardrailRecord[];
  usage: Usage | undefined;
}

export interface GatewayEvents {
  /** A chat request passed validation and got its context. */
  onRequestStart?(ctx: GatewayContext): void;
  /** A chat request's response closed (finished, failed, or the client left). */
  onRequestEnd?(summary: RequestSummary): void;
}

/** The summary of a request whose response just closed. */
export function summarize(ctx: GatewayContext, statusCode: number, finished: boolean): RequestSummary {
  const { writer } = ctx;
  const clientAborted = !finished && (!ctx.signal.aborted || ctx.signal.reason instanceof ClientDisconnectedError);
  return {
    requestId: ctx.id,
    model: ctx.model,
    stream: ctx.stream,
    status: statusCode,
    errorType: writer.failure?.type ?? (clientAborted ? 'client_disconnected' : undefined),
    clientAborted,
    committed: writer.committedAt !== undefined,
    timeToFirstByteMs: writer.committedAt === undefined ? undefined : writer.committedAt - ctx.startedAt,
    durationMs: performance.now() - ctx.startedAt,
    attempts: ctx.attempts,
    guardrails: ctx.guardrails,
    usage: ctx.usage,
  };
}
