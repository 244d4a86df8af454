/**
 * The baseline: the practical ceiling for any Express gateway. Express 5, `express.json()`, a keep-alive
 * undici forward of the parsed body to the mock upstream, and the answer piped back. Nothing else: no
 * validation, no routing, no SSE parsing, no error handling beyond a 502.
 *
 * Usage (from bench/run.ts): `baseline.ts <upstream url>`.
 */
import { pipeline } from 'node:stream/promises';
import express from 'express';
import { Agent } from 'undici';
import { CHAT_PATH } from '../workload.js';
import { listen } from './listen.js';
import { runChild } from './child.js';

const upstream = process.argv[2];
if (!upstream) throw new Error('baseline.ts <upstream url>');

void runChild('baseline', async () => {
  const agent = new Agent({ connections: 4096, keepAliveTimeout: 4_000, pipelining: 1 });
  const app = express();
  app.post(CHAT_PATH, express.json({ limit: '10mb' }), async (req, res) => {
    try {
      const answer = await agent.request({
        origin: upstream,
        path: CHAT_PATH,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: req.headers.authorization ?? '' },
        body: JSON.stringify(req.body),
      });
      res.status(answer.statusCode);
      for (const name of ['content-type', 'content-length']) {
        const value = answer.headers[name];
        if (typeof value === 'string') res.setHeader(name, value);
      }
      await pipeline(answer.body, res);
    } catch {
      if (!res.headersSent) res.status(502).end();
      else res.destroy();
    }
  });
  const server = await listen(app);
  return { url: server.url, close: async () => { await server.close(); await agent.close(); } };
});
