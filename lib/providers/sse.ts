/**
 * Incremental Server-Sent Events reading for the adapters: network chunks in, `{ event, data }` out, as
 * they complete. Nothing but the current partial event is ever buffered, and that is bounded.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { UpstreamError } from '../errors.js';
import type { Deployment, UpstreamRequest } from './types.js';

export interface SseEvent {
  /** The `event:` field, when the frame had one. */
  event?: string | undefined;
  data: string;
}

/** One event this large is a broken or hostile upstream, not an answer. */
const MAX_EVENT_CHARS = 8 * 1024 * 1024;

/**
 * Yields the events of an SSE body. The decoder runs in streaming mode, so a multi-byte UTF-8 character
 * split across two network chunks comes out whole. At the end, an event missing only its blank line is
 * still delivered (lenient with `data: [DONE]` at the very end); judging truncation is the adapter's job.
 * The caller owns `chunks`: stopping the loop early neither drains nor destroys it. Once `signal` is
 * aborted, no further event comes out (events already received included): its reason is thrown.
 */
export async function* readSse(chunks: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<SseEvent, void, undefined> {
  const pending: EventSourceMessage[] = [];
  let tooLarge = false;
  const parser = createParser({
    onEvent: (event) => pending.push(event),
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') tooLarge = true;
    },
    maxBufferSize: MAX_EVENT_CHARS,
  });
  const decoder = new TextDecoder();
  for await (const chunk of chunks) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    if (tooLarge) throw new UpstreamError(`The upstream sent an event larger than ${MAX_EVENT_CHARS} characters.`);
    if (pending.length === 0) continue;
    for (const event of pending) {
      signal.throwIfAborted();
      yield event;
    }
    pending.length = 0;
  }
  // The end of the body ends the last line and the event in progress. eventsource-parser's
  // `reset({ consume: true })` parses an unterminated last line but never dispatches the event, and a
  // trailing `\r` (a CR line ending, or the first half of `\r\n`) stays pending: a blank line resolves both.
  parser.feed(`${decoder.decode()}\n\n`);
  if (tooLarge) throw new UpstreamError(`The upstream sent an event larger than ${MAX_EVENT_CHARS} characters.`);
  for (const event of pending) {
    signal.throwIfAborted();
    yield event;
  }
}

/** Why an event's data is not a JSON object (returned, not thrown: the policy decides what it costs). */
export class MalformedEvent {
  constructor(
    readonly reason: string,
    readonly cause?: unknown,
  ) {}
}

/**
 * Parses one event's data as a JSON object, with one `JSON.parse` per event: the object, or a
 * `MalformedEvent` saying why not. Data that is only whitespace (a bare `data:` line, which some servers
 * send as a keep-alive) is `undefined`: nothing was sent, so nothing is wrong.
 */
export function parseEventData(data: string): Record<string, unknown> | MalformedEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch (error) {
    // Only on the failure path: a healthy stream never pays for the blank check.
    return data.trim() === '' ? undefined : new MalformedEvent('not JSON', error);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return new MalformedEvent('not a JSON object');
  return value as Record<string, unknown>;
}

/**
 * What a stream does with a malformed event, per the deployment's `malformedChunks` policy: the returned
 * function reports the event to the request's `onMalformedChunk`, then throws `UpstreamError` (502,
 * "malformed chunk (<reason>)") under `error`, or returns under `skip` so the adapter drops the event.
 */
export function malformedEventHandler(deployment: Deployment, request: UpstreamRequest): (event: MalformedEvent) => void {
  const skip = deployment.malformedChunks === 'skip';
  const report = request.onMalformedChunk;
  return (event) => {
    report?.(event.reason, skip);
    if (!skip) {
      throw new UpstreamError(`The upstream sent a malformed chunk (${event.reason}).`, event.cause === undefined ? {} : { cause: event.cause });
    }
  };
}
