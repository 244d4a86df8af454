/**
 * The request id every response the gateway writes carries (`x-request-id`): the client's own when it sent
 * a usable one and the gateway trusts it, otherwise a new one.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HEADER_REQUEST_ID } from './attempts.js';

/** 1 to 128 visible ASCII characters: safe to echo in a header and to log. */
const USABLE_ID = /^[\x21-\x7e]{1,128}$/;

export interface RequestIdPolicy {
  /** Use the client's `x-request-id` when it is usable. */
  trust: boolean;
  /** Makes a new id. */
  generate: (req: IncomingMessage) => string;
}

export const DEFAULT_REQUEST_ID_POLICY: RequestIdPolicy = { trust: true, generate: () => randomUUID() };

/** The id for this request, by the policy. */
export function requestIdOf(req: IncomingMessage, policy: RequestIdPolicy = DEFAULT_REQUEST_ID_POLICY): string {
  const given = req.headers[HEADER_REQUEST_ID];
  if (policy.trust && typeof given === 'string' && USABLE_ID.test(given)) return given;
  return policy.generate(req);
}

/**
 * Sets the response's `x-request-id` (unless an earlier gateway middleware already did) and returns it.
 * The header is set early, so every way the response can end (an answer, a JSON error) carries it.
 */
export function echoRequestId(req: IncomingMessage, res: ServerResponse, policy?: RequestIdPolicy): string {
  const existing = res.getHeader(HEADER_REQUEST_ID);
  if (typeof existing === 'string') return existing;
  const id = requestIdOf(req, policy);
  if (!res.headersSent) res.setHeader(HEADER_REQUEST_ID, id);
  return id;
}
