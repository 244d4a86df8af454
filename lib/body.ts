/**
 * Reads the JSON body of a request, whether or not the app mounted a body parser before us.
 */
import type { IncomingMessage } from 'node:http';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import {
  BadRequestError,
  ClientDisconnectedError,
  type GatewayError,
  RequestTimeoutError,
  UnsupportedMediaTypeError,
  fromBodyParserError,
} from './errors.js';

/** What body parsers leave on the request: `_body` is set once one of them consumed the stream. */
type ParsedRequest = IncomingMessage & { body?: unknown; _body?: boolean };

export interface BodyReadOptions {
  /** Largest body in bytes, both as received and once decoded (a small gzip bomb stops here). */
  limit: number;
  /** Milliseconds, from the start of the read, for the whole body to arrive; 0 for no deadline. */
  timeoutMs: number;
}

/** The `Content-Encoding`s read here, by the decoder each needs (`x-gzip` is gzip, RFC 9110 §8.4.1.3). */
const DECODERS: Readonly<Record<string, (() => Transform) | undefined>> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};
const ACCEPTED_ENCODINGS = 'gzip, deflate, br';

// Non-streaming decode of the whole body; like the body parsers, a leading BOM is dropped.
const utf8 = new TextDecoder('utf-8');

/**
 * Returns the parsed body. If `express.json()` (or `express.text()`/`raw()`) already consumed the stream, its
 * result is used; otherwise the stream is read here, whatever the content type (curl's `-d` sends
 * `application/x-www-form-urlencoded`, and the endpoint only speaks JSON anyway), decoded when it has a
 * `Content-Encoding` of gzip, deflate or br (anything else is a 415), within `limit` bytes and `timeoutMs`.
 */
export async function readJsonBody(req: IncomingMessage, options: BodyReadOptions): Promise<unknown> {
  const parsed = req as ParsedRequest;
  if (parsed._body === true || parsed.readableEnded) return fromParsedBody(parsed.body);
  const bytes = await readBody(req, options);
  return parseJson(utf8.decode(bytes));
}

/** The `Content-Encoding` decoder, none for identity, or a 415 for an encoding (or a chain of them) not read here. */
function decoderFor(req: IncomingMessage): Transform | undefined {
  const header = req.headers['content-encoding'];
  const encoding = (header ?? 'identity').trim().toLowerCase();
  if (encoding === 'identity' || encoding === '') return undefined;
  const create = Object.hasOwn(DECODERS, encoding) ? DECODERS[encoding] : undefined;
  if (create) return create();
  throw new UnsupportedMediaTypeError(`Request body: Content-Encoding '${header}' is not supported; use ${ACCEPTED_ENCODINGS} or none.`, {
    param: 'body',
    acceptEncoding: ACCEPTED_ENCODINGS,
  });
}

/** Worded as a body parser's own 413, so the gateway's read and `express.json()`'s read the same. */
function tooLarge(limit: number): GatewayError {
  return fromBodyParserError({ type: 'entity.too.large', status: 413, limit }) as GatewayError;
}

/**
 * One body read. The listeners are module functions that find it on the stream they were called on (under
 * `reads`): no closure per request.
 */
class BodyRead {
  readonly chunks: Buffer[] = [];
  /** Bytes off the wire. */
  received = 0;
  /** Bytes of the body (the same as received without an encoding). */
  decoded = 0;
  settled = false;
  timer: NodeJS.Timeout | undefined = undefined;
  resolve: (body: Buffer) => void = ignore;
  reject: (error: unknown) => void = ignore;

  constructor(
    readonly req: IncomingMessage,
    readonly decoder: Transform | undefined,
    readonly limit: number,
  ) {}
}

/**
 * The read in progress of a request (and of its decoder), for the listeners, which are module functions.
 * A weak map rather than a property: adding a property to Express's request objects costs about 1 µs per
 * request in a profile of the benchmark (their shapes vary per request), a weak map's entry about half.
 */
const reads = new WeakMap<IncomingMessage | Transform, BodyRead>();
/** The request (or its decoder) while its body is read. */
type Reading = IncomingMessage | Transform;

function ignore(): void {}

function readBody(req: IncomingMessage, { limit, timeoutMs }: BodyReadOptions): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(tooLarge(limit)); // no need to receive what will be refused
  let decoder: Transform | undefined;
  try {
    decoder = decoderFor(req);
  } catch (err) {
    return Promise.reject(err);
  }
  const read = new BodyRead(req, decoder, limit);
  return new Promise<Buffer>((resolve, reject) => {
    read.resolve = resolve;
    read.reject = reject;
    startReading(read, timeoutMs);
  });
}

function startReading(read: BodyRead, timeoutMs: number): void {
  const { req, decoder } = read;
  const output = decoder ?? req;
  if (timeoutMs > 0) read.timer = setTimeout(onTimeout, timeoutMs, read, timeoutMs);
  reads.set(req, read);
  req.on('close', onClose);
  req.on('error', onReadError);
  if (decoder) reads.set(decoder, read);
  output.on('data', onBody);
  output.on('end', onEnd);
  if (decoder) {
    req.on('data', onWire);
    decoder.on('error', onDecodeError);
    req.pipe(decoder);
  }
}

function onTimeout(read: BodyRead, timeoutMs: number): void {
  fail(read, new RequestTimeoutError(`Request body: not received within ${timeoutMs} ms.`, { param: 'body' }));
}

function onWire(this: Reading, chunk: Buffer): void {
  const read = reads.get(this);
  if (read === undefined) return; // removed while this event was being emitted
  read.received += chunk.length;
  // Bounds the wire too: a stream that decodes to little can still be endless.
  if (read.received > read.limit) fail(read, tooLarge(read.limit));
}

function onBody(this: Reading, chunk: Buffer): void {
  const read = reads.get(this);
  if (read === undefined) return; // removed while this event was being emitted
  read.decoded += chunk.length;
  if (read.decoded > read.limit) fail(read, tooLarge(read.limit));
  else read.chunks.push(chunk);
}

function onEnd(this: Reading): void {
  const read = reads.get(this);
  if (read === undefined) return; // removed while this event was being emitted
  if (!finish(read)) return;
  // A small body usually arrives in one chunk: no copy then.
  const { chunks } = read;
  read.resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, read.decoded));
}

function onClose(this: Reading): void {
  const read = reads.get(this);
  if (read === undefined) return; // removed while this event was being emitted
  // `close` after the whole message is the normal end of the stream; before it, the client left.
  if (!read.req.complete) fail(read, new ClientDisconnectedError());
}

function onDecodeError(this: Reading): void {
  const read = reads.get(this);
  if (read === undefined) return; // removed while this event was being emitted
  fail(read, new BadRequestError(`Request body: not valid ${String(read.req.headers['content-encoding']).trim()} data.`, { param: 'body' }));
}

function onReadError(this: Reading): void {
  const read = reads.get(this);
  if (read !== undefined) fail(read, new ClientDisconnectedError());
}

/** Stops listening; false when the read was already settled. */
function finish(read: BodyRead): boolean {
  if (read.settled) return false;
  read.settled = true;
  clearTimeout(read.timer);
  const { req, decoder } = read;
  const output = decoder ?? req;
  req.off('close', onClose);
  req.off('error', onReadError);
  output.off('data', onBody);
  output.off('end', onEnd);
  reads.delete(req);
  if (decoder) {
    req.off('data', onWire);
    req.unpipe(decoder);
    decoder.off('error', onDecodeError);
    decoder.destroy();
    reads.delete(decoder);
  }
  return true;
}

function fail(read: BodyRead, error: GatewayError): void {
  if (!finish(read)) return;
  // Whatever the client still sends is dropped rather than left in the socket's buffer: the answer closes
  // the connection (see gatewayContext), and closing over unread bytes resets it, which can cost the client
  // the answer.
  if (!read.req.complete) read.req.resume();
  read.reject(error);
}

function fromParsedBody(body: unknown): unknown {
  if (typeof body === 'string') return parseJson(body);
  if (Buffer.isBuffer(body)) return parseJson(utf8.decode(body));
  if (body === undefined) throw new BadRequestError('Request body: missing; expected a JSON object.', { param: 'body' });
  return body;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Only a body that failed to parse is looked at again (JSON.parse refuses a blank one too).
    if (text.trim() === '') throw new BadRequestError('Request body: empty; expected a JSON object.', { param: 'body' });
    throw new BadRequestError('Request body: not valid JSON.', { param: 'body' });
  }
}
