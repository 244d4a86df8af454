/**
 * Pass-through for the endpoints the gateway does not interpret (embeddings, files, moderation, …):
 * proxied with http-proxy-middleware to one upstream, with its credentials injected, the request id
 * forwarded and echoed, and failures answered in the gateway's error shape.
 */
import { randomUUID } from 'node:crypto';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createProxyMiddleware, fixRequestBody } from 'http-proxy-middleware';
import { ConnectionError, type ErrorBodyForm, ERROR_BODY_FORMS } from './errors.js';
import { assertCalledAsFactory, definedOnly, optionsValidator } from './options.js';
import { ResponseWriter } from './response-writer.js';

export interface PassThroughOptions {
  /** The upstream origin and base path, e.g. `https://api.openai.com` (requests keep their own path). */
  target: string;
  /** Sent as `Authorization: Bearer …` instead of whatever the client sent. */
  apiKey?: string;
  /** Extra headers for every proxied request. */
  headers?: Record<string, string>;
  /**
   * Upstream time limit in ms.
   * @default 120000
   */
  timeoutMs?: number;
  /** @default 'gateway' */
  errorBodyForm?: ErrorBodyForm;
}

const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    required: ['target'],
    properties: {
      target: { type: 'string', pattern: '^https?://' },
      apiKey: { type: 'string' },
      headers: { type: 'object', additionalProperties: { type: 'string' } },
      timeoutMs: { type: 'integer', minimum: 1 },
      errorBodyForm: { enum: ERROR_BODY_FORMS },
    },
  },
  'passThrough',
);

const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;

export function passThrough(options: PassThroughOptions): RequestHandler {
  assertCalledAsFactory(options, 'passThrough');
  const given = definedOnly(options);
  validateOptions(given);
  const form = given.errorBodyForm ?? 'gateway';
  const extraHeaders = given.headers ?? {};
  const proxy = createProxyMiddleware<IncomingMessage, ServerResponse>({
    target: options.target,
    changeOrigin: true,
    proxyTimeout: given.timeoutMs ?? 120_000,
    on: {
      proxyReq(proxyReq: ClientRequest, req: IncomingMessage) {
        if (given.apiKey !== undefined) proxyReq.setHeader('authorization', `Bearer ${given.apiKey}`);
        for (const [name, value] of Object.entries(extraHeaders)) proxyReq.setHeader(name, value);
        proxyReq.setHeader('x-request-id', String(req.headers['x-request-id']));
        // A body parser mounted before us consumed the stream: write the parsed body back.
        fixRequestBody(proxyReq, req);
      },
      error(_err: Error, _req: IncomingMessage, res: ServerResponse | import('node:net').Socket) {
        if (!('writeHead' in res)) return;
        new ResponseWriter(res).fail(new ConnectionError('The upstream could not be reached.'), form);
      },
    },
  });
  return function llmGatewayPassThrough(req: Request, res: Response, next: NextFunction): void {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    req.headers['x-request-id'] = id;
    res.setHeader('x-request-id', id);
    void proxy(req, res, next);
  };
}
