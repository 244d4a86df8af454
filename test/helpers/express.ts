/**
 * The Express under test: 5 by default, 4 when EXPRESS_MAJOR=4 (jest.config.js then maps every `express`
 * import, the library's included, to the `express4` alias), so the same suite runs on both majors.
 */
import express, { type Express } from 'express';

export { express };

export const EXPRESS_MAJOR = Number((require('express/package.json') as { version: string }).version.split('.')[0]);

export function createApp(): Express {
  const app = express();
  app.set('env', 'production'); // the default handler would otherwise print stacks; we must never reach it
  return app;
}

