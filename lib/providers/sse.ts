/**
 * Incremental Server-Sent Events reading for the adapters: network chunks in, `{ event, data }` out, as
 * they complete. Nothing but the current partial event is ever buffered, and that is bounded.
 */
import { StringDecoder } from 'node:string_decoder';
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
 * split across two network chunks comes out whole (and a byte order mark at the very start is dropped). At
 * the end, an event missing only its blank line is still delivered (lenient with `data: [DONE]` at the very
 * end); judging truncation is the adapter's job.
 * The caller owns `chunks`: stopping the loop early neither drains nor destroys it. Once `signal` is
 * aborted, no further event comes out (events already received included): its reason is thrown.
 */
export async function* readSse(chunks: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<SseEvent, void, undefined> {
  for await (const events of readSseBatches(chunks, signal)) {
    for (const event of events) {
      signal.throwIfAborted();
      yield event;
    }
  }
}

/**
 * `readSse` by network read: yields the events each read completed, as one array (never empty), so a
 * consumer pays one asynchronous step per read rather than per event. The signal is checked before each
 * array; a consumer that waits in the middle of one checks it again itself.
 */
export async function* readSseBatches(chunks: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<SseEvent[], void, undefined> {
  const splitter = new SseSplitter();
  for await (const chunk of chunks) {
    const events = splitter.feed(chunk);
    if (events === undefined) continue;
    signal.throwIfAborted();
    yield events;
  }
  const events = splitter.end();
  if (events === undefined) return;
  signal.throwIfAborted();
  yield events;
}

/**
 * The synchronous core of `readSseBatches`: bytes in (`feed`, one network read at a time), the events that
 * read completed out (an array, never empty, or `undefined`), then `end()` once the body ended. Throws
 * `UpstreamError` for an event past the size bound. For a reader that pulls the body itself (one
 * asynchronous step per read instead of one per generator layer).
 */
export class SseSplitter {
  private pending: EventSourceMessage[] = [];
  private tooLarge = false;
  private started = false;
  // Node's StringDecoder, not TextDecoder: the same streaming UTF-8 decoding, without the ICU converter a
  // TextDecoder opens on its first call (a few µs per stream, measured).
  private readonly decoder = new StringDecoder('utf8');
  private readonly parser = createParser({
    onEvent: (event) => this.pending.push(event),
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') this.tooLarge = true;
    },
    maxBufferSize: MAX_EVENT_CHARS,
  });

  /** The events completed by this read, if any. */
  feed(chunk: Uint8Array): SseEvent[] | undefined {
    let text = this.decoder.write(chunk as Buffer);
    if (!this.started && text !== '') {
      this.started = true;
      if (text.charCodeAt(0) === BOM) text = text.slice(1);
    }
    this.parser.feed(text);
    return this.take();
  }

  /** The events the end of the body completes, if any. */
  end(): SseEvent[] | undefined {
    // The end of the body ends the last line and the event in progress. eventsource-parser's
    // `reset({ consume: true })` parses an unterminated last line but never dispatches the event, and a
    // trailing `\r` (a CR line ending, or the first half of `\r\n`) stays pending: a blank line resolves both.
    let rest = this.decoder.end();
    if (!this.started && rest.charCodeAt(0) === BOM) rest = rest.slice(1);
    this.parser.feed(`${rest}\n\n`);
    return this.take();
  }

  private take(): SseEvent[] | undefined {
    if (this.tooLarge) throw new UpstreamError(`The upstream sent an event larger than ${MAX_EVENT_CHARS} characters.`);
    if (this.pending.length === 0) return undefined;
    const events = this.pending;
    this.pending = [];
    return events;
  }
}

const BOM = 0xfeff;

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
