/**
 * An inbound protocol (issue 16): what differs between `POST /v1/chat/completions`, `POST /v1/responses`
 * and `POST /v1/messages`, and nothing else.
 *
 * A protocol validates the client's body and maps it to the internal request (the chat-completions shape
 * every guardrail, the router, the fallback handler and every provider adapter already speak), and writes
 * the internal answer (chat chunks, a chat completion, a `GatewayError`) in its own wire form. Everything
 * between (context, guardrails, router, fallbacks, the lazy-commit writer, the error writer) is
 * protocol-neutral, so each invariant holds for every protocol without a second implementation.
 */
import type { ErrorBodyForm, GatewayError } from '../errors.js';
import type { StreamChunk } from '../raw-chunk.js';
import type { ChatCompletion, ChatCompletionRequest } from '../types.js';

export type ProtocolName = 'chat' | 'responses' | 'messages';

/** What a protocol's writer knows of the answer it writes. */
export interface AnswerInfo {
  /** The gateway's request id, unique per request: the ids of the answer (`resp_…`, `msg_…`) derive from it. */
  readonly id: string;
  /** The model the client asked for, as it wrote it (the answer names this model, not the deployment's). */
  readonly model: string;
  /** Seconds since the epoch when the answer was created. */
  readonly created: number;
  /**
   * The internal request exactly as `toChatRequest` returned it (the same object, before any guardrail
   * masking replaced it), for protocols whose answer repeats the request's settings (Responses).
   */
  readonly request?: ChatCompletionRequest;
}

/**
 * Writes one streamed answer as the protocol's server-sent events. One encoder per response; its methods
 * are called in stream order, the first `chunk` only once the response commits (the status line and the
 * SSE headers are out). Every method returns complete frames (each event ends with a blank line), or `''`.
 */
export interface ProtocolEncoder {
  /**
   * The frames for one internal chunk (content, tool-call deltas, a finish reason, or the usage chunk with
   * `choices: []`). Only choice 0 is the answer for a protocol without `n`.
   */
  chunk(chunk: StreamChunk): string;
  /** The frames that end the stream normally, after the last chunk (the usage chunk included). */
  end(): string;
  /**
   * The frames that end a committed stream with `error`: exactly one protocol-native terminal error that
   * real clients surface as an error with its message and type (and whatever the protocol needs after it),
   * never anything that looks like a success.
   */
  error(error: GatewayError, form: ErrorBodyForm, extra?: Record<string, unknown>): string;
  /**
   * Ends the stream as a normal answer stopped by a content filter (a guardrail's soft block): `text` is
   * added to the answer as content, then the protocol's normal ending with its content-filter stop reason.
   */
  softStop(text: string): string;
}

export interface Protocol {
  readonly name: ProtocolName;
  /** The POST path it serves, relative to where the gateway is mounted (e.g. `/v1/responses`). */
  readonly path: string;
  /** Compiles the request validator now (a factory calls it at start-up); otherwise it is compiled on first use. */
  compile?(): void;
  /**
   * Validates a parsed JSON body (the ajv validator is compiled once, on first use) and maps it to the
   * internal request. Throws a `BadRequestError` whose message and `param` name the offending field as the
   * client wrote it (`input[2].content[0].image_url`), for anything it cannot carry faithfully.
   */
  toChatRequest(body: unknown): ChatCompletionRequest;
  /** A new writer for one streamed answer. */
  encoder(answer: AnswerInfo): ProtocolEncoder;
  /**
   * The JSON body of a whole (non-streaming) answer. `rawBody` is the upstream's own text of `completion`
   * when nothing changed it (the chat protocol sends it as it came; the others ignore it).
   */
  completion(completion: ChatCompletion, answer: AnswerInfo, rawBody?: string): string;
  /** The JSON body of a whole answer stopped by a content filter (a soft block), with `text` as its content. */
  softCompletion(text: string, answer: AnswerInfo): string;
  /**
   * The JSON body of an error answered before commit (with `error.status`). `form` is the gateway's
   * configured body form for chat-style errors; a protocol with one fixed error shape ignores it.
   */
  errorBody(error: GatewayError, form: ErrorBodyForm, extra?: Record<string, unknown>): unknown;
}
