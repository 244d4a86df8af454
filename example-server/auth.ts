/**
 * A minimal API-key check in front of the gateway, to show where your own auth goes: requests must carry
 * `Authorization: Bearer <key>` with one of the configured keys, or get a 401 in the gateway's error
 * shape, so clients parse every error the same way. Replace it with your real auth (JWT, sessions, …).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { AuthenticationError, type ErrorBodyForm } from '../lib/index.js';

/** Comma-separated keys, as in `GATEWAY_API_KEYS=key-1,key-2`; blanks are ignored. */
export function parseApiKeys(list: string | undefined): string[] {
  return (list ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
}

export function apiKeyAuth(keys: readonly string[], errorBodyForm: ErrorBodyForm = 'gateway'): RequestHandler {
  // Comparing fixed-length digests in constant time does not reveal how much of a guessed key matched.
  const digests = keys.map(digest);
  return function exampleApiKeyAuth(req, res, next) {
    const presented = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    if (presented !== undefined && digests.some((known) => timingSafeEqual(known, digest(presented)))) {
      next();
      return;
    }
    const error = new AuthenticationError(presented === undefined ? 'Missing API key: send Authorization: Bearer <key>.' : 'Invalid API key.');
    res.status(error.status).set('WWW-Authenticate', 'Bearer').json(error.toBody(errorBodyForm));
  };
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
