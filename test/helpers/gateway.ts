/**
 * A gateway app for tests, composed by hand from the pieces (context → router → error writer), served on
 * 127.0.0.1. It also keeps every request's context so tests can look at attempts and usage.
 */
import type { RequestHandler } from 'express';
import { fallbackHandler, gatewayContext, getContext, sseErrorWriter, silentLogger, type FallbackHandlerOptions, type GatewayContext } from '../../lib/index.js';
import { createRouter, type GatewayRouter } from '../../lib/router.js';
import { PROTOCOLS } from '../../lib/protocols/index.js';
import type { RouterOptions } from '../../lib/router-config.js';
import { createApp } from './express.js';
import { listen, type RunningServer } from './http.js';

export interface TestGateway extends RunningServer {
  router: GatewayRouter;
  contexts: GatewayContext[];
}

export interface GatewayExtras {
  /** Middlewares between the context and the router (guardrails). */
  before?: RequestHandler[];
  /** Mounts the fallback handler with these options. */
  fallbacks?: Omit<FallbackHandlerOptions, 'router'>;
}

export async function startGateway(options: RouterOptions, extra: GatewayExtras = {}): Promise<TestGateway> {
  const router = createRouter({ logger: silentLogger, ...options });
  const contexts: GatewayContext[] = [];
  const keep: RequestHandler = (req, _res, next) => {
    contexts.push(getContext(req));
    next();
  };
  const app = createApp();
  app.get('/v1/models', router.listModels);
  // Every protocol through the same pieces (the chat path first, as before).
  const protocols = Object.values(PROTOCOLS).filter((p) => p !== undefined);
  for (const protocol of protocols) app.post(protocol.path, gatewayContext({ protocol: protocol.name }), keep, ...(extra.before ?? []), router);
  if (extra.fallbacks) app.use(fallbackHandler({ router, ...extra.fallbacks }));
  app.use(sseErrorWriter({ logger: silentLogger, paths: protocols.map((p) => p.path) }));
  const server = await listen(app);
  return {
    ...server,
    router,
    contexts,
    close: async () => {
      await server.close();
      await router.close();
    },
  };
}
