/**
 * Events for users' own accounting and for metrics: one summary per finished request, built once the
 * response closed *and* the router's work for it settled, so the usage in it is final (a client that
 * leaves closes the response before the aborted upstream call has been accounted). No prompt or
 * completion text is in it.
 */
import type { ProtocolName } from './protocols/types.js';
import type { Attempt } from './attempts.js';
import type { GatewayContext, GuardrailRecord } from './context.js';
import { ClientDisconnectedError } from './errors.js';
import type { Usage } from './types.js';

export interface RequestSummary {
  requestId: string;
  /** The model group the client asked for. */
  model: string;
  stream: boolean;
  /** The protocol the client spoke: `chat`, `responses` or `messages`. */
  protocol: ProtocolName;
  /**
   * How the request ended, as a status code: the HTTP status sent (200 for a stream that failed after
   * commit: see `errorType`), or 499 when the client left before the response finished (nginx's
   * convention), whatever had gone out by then.
   */
  status: number;
  /** The status line that actually went out, if one did (it differs from `status` only when the client left). */
  httpStatus: number | undefined;
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
  /**
   * Tokens of the upstream attempt that ended the request (the answer, or the failure the request ended
   * with), on every ending: a normal answer, a client that left, a failure mid-stream, a timeout, a
   * guardrail block. As the upstream reported it when it did; otherwise estimated from the characters the
   * gateway saw (prompt and completion, about 4 a token) and marked `estimated: true`. `undefined` when no
   * upstream call was made (a `pre_call` guardrail block, a bad model name) or the upstream refused the call
   * outright (an HTTP error: nothing was generated).
   */
  usage: Usage | undefined;
}

/** What the response looked like when it closed (captured then: the summary may be built a little later). */
export interface ResponseEnding {
  statusCode: number;
  headersSent: boolean;
  /** The response was written to its end (not cut by the client leaving). */
  finished: boolean;
  /** `performance.now()` when it closed. */
  at: number;
}

export interface GatewayEvents {
  /** A chat request passed validation and got its context. */
  onRequestStart?(ctx: GatewayContext): void;
  /** A chat request's response closed (finished, failed, or the client left). */
  onRequestEnd?(summary: RequestSummary): void;
}

/** The summary of a request whose response closed (`ending`) and whose router work has settled. */
export function summarize(ctx: GatewayContext, ending: ResponseEnding): RequestSummary {
  const { writer } = ctx;
  const clientAborted = !ending.finished && (!ctx.signal.aborted || ctx.signal.reason instanceof ClientDisconnectedError);
  return {
    requestId: ctx.id,
    model: ctx.model,
    stream: ctx.stream,
    protocol: ctx.protocol,
    status: clientAborted ? CLIENT_CLOSED_STATUS : ending.statusCode,
    httpStatus: ending.headersSent ? ending.statusCode : undefined,
    errorType: writer.failure?.type ?? (clientAborted ? 'client_disconnected' : undefined),
    clientAborted,
    committed: writer.committedAt !== undefined,
    timeToFirstByteMs: writer.committedAt === undefined ? undefined : writer.committedAt - ctx.startedAt,
    durationMs: ending.at - ctx.startedAt,
    attempts: ctx.attempts,
    guardrails: ctx.guardrails,
    usage: ctx.usage,
  };
}

/** `ClientDisconnectedError`'s status: the request ended because the client closed it. */
const CLIENT_CLOSED_STATUS = new ClientDisconnectedError().status;
