/**
 * The Express under test: 5 by default, 4 when EXPRESS_MAJOR=4 (jest.config.js then maps every `express`
 * import, the library's included, to the `express4` alias), so the same suite runs on both majors.
 */
import express, { type Express } from 'express';
import type { RequestHandlerParams } from 'express-serve-static-core';
import { listen, type RunningServer } from './http.js';

export { express };

export const EXPRESS_MAJOR = Number((require('express/package.json') as { version: string }).version.split('.')[0]);

export function createApp(): Express {
  const app = express();
  app.set('env', 'production'); // the default handler would otherwise print stacks; we must never reach it
  return app;
}


/** An app (`createApp`) with `handlers` mounted in order, served on 127.0.0.1 (e.g. `serve(createGateway(…))`). */
export async function serve(...handlers: RequestHandlerParams[]): Promise<RunningServer> {
  const app = createApp();
  for (const handler of handlers) app.use(handler);
  return listen(app);
}
