/**
 * Reads the JSON body of a request, whether or not the app mounted a body parser before us.
 */
import type { IncomingMessage } from 'node:http';
import getRawBody from 'raw-body';
import { BadRequestError, ClientDisconnectedError } from './errors.js';

/** What body parsers leave on the request: `_body` is set once one of them consumed the stream. */
type ParsedRequest = IncomingMessage & { body?: unknown; _body?: boolean };

/**
 * Returns the parsed body. If `express.json()` (or `express.text()`/`raw()`) already consumed the stream, its
 * result is used; otherwise the stream is read here, up to `limit` bytes, whatever the content type (curl's
 * `-d` sends `application/x-www-form-urlencoded`, and the endpoint only speaks JSON anyway).
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const parsed = req as ParsedRequest;
  if (parsed._body === true || parsed.readableEnded) return fromParsedBody(parsed.body);
  let text: string;
  try {
    text = await getRawBody(req, { limit, length: req.headers['content-length'], encoding: 'utf8' });
  } catch (err) {
    if ((err as { type?: unknown }).type === 'request.aborted') throw new ClientDisconnectedError();
    throw err; // raw-body's own errors (too large, size mismatch) are classified by toGatewayError
  }
  return parseJson(text);
}

function fromParsedBody(body: unknown): unknown {
  if (typeof body === 'string') return parseJson(body);
  if (Buffer.isBuffer(body)) return parseJson(body.toString('utf8'));
  if (body === undefined) throw new BadRequestError('Request body: missing; expected a JSON object.', { param: 'body' });
  return body;
}

function parseJson(text: string): unknown {
  if (text.trim() === '') throw new BadRequestError('Request body: empty; expected a JSON object.', { param: 'body' });
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequestError('Request body: not valid JSON.', { param: 'body' });
  }
}
