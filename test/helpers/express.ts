/**
 * The Express under test: 5 by default, 4 when EXPRESS_MAJOR=4 (installed as the `express4` alias), so the
 * same suite runs against both majors in CI.
 */
import type { Express } from 'express';

type ExpressFactory = typeof import('express');

export const EXPRESS_MAJOR = process.env['EXPRESS_MAJOR'] === '4' ? 4 : 5;

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const express: ExpressFactory = EXPRESS_MAJOR === 4 ? require('express4') : require('express');

export function createApp(): Express {
  const app = express();
  app.set('env', 'production'); // the default handler would otherwise print stacks; we must never reach it
  return app;
}

