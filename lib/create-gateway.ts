/**
 * `createGateway(config)`: the pieces mounted in the right order, in one call. Returns the middlewares to
 * mount: a router that serves `POST /v1/chat/completions`, `POST /v1/responses` and `POST /v1/messages`
 * (each: context for its protocol → guardrails → router → fallback handler → SSE error writer, the same
 * pieces), `GET /v1/models` and, when configured, the pass-through's own paths, then
 * the error writer for body-parser failures on those paths. Every other request, and every error that is
 * not the gateway's, goes on to the host app. Each piece stays exported for teams who compose by hand.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Express from 'express';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import { requireDependency } from './require.cjs';
import { bedrockGuardrail } from './bedrock-guardrail.js';
import { type GatewayContext, claimRequest, gatewayContext, getContext } from './context.js';
import type { GatewayEvents } from './events.js';
import { MethodNotAllowedError, ServiceUnavailableError } from './errors.js';
import { registerUrlCredentials } from './redact.js';
import { fallbackHandler } from './fallback-handler.js';
import { type GatewayFileConfig, type GatewayGuardrailConfig, type GatewayStoreConfig, validateGatewayConfig } from './gateway-config.js';
import { type Logger, consoleLogger, withRedaction } from './logger.js';
import { type GatewayMetrics, type PrometheusMetricsOptions, combineEvents, prometheusMetrics } from './metrics.js';
import { GatewayConfigError, assertCalledAsFactory } from './options.js';
import { passThrough } from './passthrough.js';
import type { Deployment, ProviderAdapter } from './providers/types.js';
import { RedisStore } from './redis-store.js';
import { createRouter, type GatewayRouter } from './router.js';
import { echoRequestId } from './request-id.js';
import { sseErrorWriter } from './sse-error-writer.js';
import { PROTOCOLS } from './protocols/index.js';
import type { Protocol } from './protocols/types.js';
import { MemoryStore, type Store } from './store.js';

export interface GatewayOptions extends Omit<GatewayFileConfig, 'store'> {
  /**
   * The state store: a `Store` instance (e.g. `new RedisStore({ client })`), or a store config
   * (`{ type: 'redis', url }` needs the optional `ioredis` package installed).
   * @default { type: 'memory' }
   */
  store?: GatewayStoreConfig | Store;
  /**
   * Where every piece logs (pino-compatible).
   * @default console, warnings and errors only
   */
  logger?: Logger;
  /** Request start/end hooks for your own accounting (see `GatewayEvents`). */
  events?: GatewayEvents;
  /** Custom or replacement provider adapters (see `RouterOptions.adapterFactory`). */
  adapterFactory?: (deployment: Deployment) => ProviderAdapter | undefined;
  /**
   * Prometheus metrics (see `prometheusMetrics`), alongside your `events`; serve them with
   * `app.get('/metrics', gateway.metrics!.handler)`. `true` uses the defaults (a registry of their own).
   * @default off
   */
  metrics?: boolean | PrometheusMetricsOptions;
}

/**
 * What `createGateway()` returns: the middlewares to mount with `app.use(gateway)` (or under a prefix,
 * `app.use('/llm', gateway)`): the gateway's router, then an error handler for body-parser failures on its
 * own paths. Express flattens the array.
 */
export interface Gateway extends Array<RequestHandler | ErrorRequestHandler> {
  /** The router inside (its `dispatch`, `listModels`, …). */
  readonly router: GatewayRouter;
  /** Chat requests in flight. */
  readonly inFlight: number;
  /** The Prometheus metrics, when the `metrics` option is set. */
  readonly metrics: GatewayMetrics | undefined;
  /**
   * For a graceful shutdown (after the HTTP server stopped accepting): new chat requests get a 503
   * `service_unavailable` with `Retry-After: 1` and `Connection: close` (another instance can answer them);
   * the requests in flight get up to `deadlineMs` to finish, then the rest end with the same error ("The
   * server is shutting down."): a JSON error before commit, the in-band frame and `[DONE]` after it. Never
   * a cut stream.
   */
  drain(deadlineMs: number): Promise<void>;
  /** Releases connection pools and, when the gateway created it, the Redis connection. */
  close(): Promise<void>;
}

export function createGateway(options: GatewayOptions): Gateway {
  assertCalledAsFactory(options, 'createGateway');
  const { store: storeOption, logger: givenLogger = consoleLogger, adapterFactory, events, metrics: metricsOption, ...serializable } = options;
  const logger = withRedaction(givenLogger);
  const isStoreInstance = storeOption !== undefined && typeof (storeOption as Store).getCooldowns === 'function';
  validateGatewayConfig({ ...serializable, ...(isStoreInstance || storeOption === undefined ? {} : { store: storeOption }) });
  const config = serializable as Omit<GatewayFileConfig, 'store'>;
  const { store, release } = isStoreInstance ? { store: storeOption as Store, release: undefined } : buildStore(storeOption as GatewayStoreConfig | undefined, logger);

  const router = atPath(
    { 'router.models': 'models', router: 'router' },
    () => createRouter({ models: config.models, ...config.router, store, logger, ...(adapterFactory ? { adapterFactory } : {}) }),
  );
  const fallbacks = config.fallbacks ?? {};
  const fallback = atPath({ 'fallbackHandler.fallbacks': 'fallbacks.general', 'fallbackHandler.contentPolicyFallbacks': 'fallbacks.contentPolicy', 'fallbackHandler.contextWindowFallbacks': 'fallbacks.contextWindow', 'fallbackHandler.fallbackOnGuardrail': 'fallbacks.onGuardrail', fallbackHandler: 'fallbacks' }, () =>
    fallbackHandler({
      router,
      ...(fallbacks.general ? { fallbacks: fallbacks.general } : {}),
      ...(fallbacks.contentPolicy ? { contentPolicyFallbacks: fallbacks.contentPolicy } : {}),
      ...(fallbacks.contextWindow ? { contextWindowFallbacks: fallbacks.contextWindow } : {}),
      ...(fallbacks.generalForSpecific !== undefined ? { generalForSpecific: fallbacks.generalForSpecific } : {}),
      ...(fallbacks.maxFallbacks !== undefined ? { maxFallbacks: fallbacks.maxFallbacks } : {}),
      ...(fallbacks.disableHeader ? { disableHeader: fallbacks.disableHeader } : {}),
      ...(fallbacks.onGuardrail !== undefined ? { fallbackOnGuardrail: fallbacks.onGuardrail } : {}),
      ...(fallbacks.continuation ? { continuation: fallbacks.continuation } : {}),
    }),
  );
  const metrics = metricsOption
    ? atPath({ prometheusMetrics: 'metrics' }, () => prometheusMetrics({ canonicalGroup: router.canonicalGroup, ...(metricsOption === true ? {} : metricsOption) }))
    : undefined;
  const allEvents = metrics ? combineEvents(metrics.events, events) : events;
  const guardrails = (config.guardrails ?? []).map((guardrail, i) => guardrailFor(guardrail, i, router, logger));
  const form = config.errors?.bodyForm ?? 'gateway';
  const protocols = Object.values(PROTOCOLS).filter((protocol): protocol is Protocol => protocol !== undefined && config.protocols?.[protocol.name] !== false);
  const errors = sseErrorWriter({ errorBodyForm: form, logger, paths: protocols.map((protocol) => protocol.path) });

  const active = new Set<GatewayContext>();
  let draining = false;
  const track: RequestHandler = (req, res, next) => {
    // Keep-alive connections can still bring requests while the server drains: another instance answers them.
    if (draining) {
      next(new ServiceUnavailableError());
      return;
    }
    const ctx = getContext(req);
    active.add(ctx);
    res.once('close', () => active.delete(ctx));
    next();
  };

  // Express is the host app's (a peer dependency): loaded here, where it is used, rather than with the package.
  const routes = (requireDependency('express') as typeof Express).Router();
  for (const protocol of protocols) {
    const context = atPath({ gatewayContext: 'context' }, () => gatewayContext({ ...config.context, logger, protocol: protocol.name, ...(allEvents ? { events: allEvents } : {}) }));
    routes.post(protocol.path, context, track, ...guardrails, router, fallback);
  }
  routes.get('/v1/models', router.listModels);
  // Before the pass-through: another method on a path the gateway interprets is never proxied.
  for (const protocol of protocols) routes.all(protocol.path, methodNotAllowed(['POST']));
  routes.all('/v1/models', methodNotAllowed(['GET', 'HEAD']));
  const { passthrough } = config;
  if (passthrough) routes.use(atPath({ passThrough: 'passthrough' }, () => passThrough({ ...passthrough, errorBodyForm: form })));
  routes.use(errors);
  // Express skips routers while an error is pending: a body parser mounted before the gateway that fails
  // never reaches the routes above. The writer, mounted beside them, answers those on the gateway's paths.
  const gateway = [routes, errors] as unknown as Gateway;
  Object.defineProperty(gateway, 'router', { value: router });
  Object.defineProperty(gateway, 'inFlight', { get: () => active.size });
  Object.defineProperty(gateway, 'metrics', { value: metrics });
  gateway.drain = (deadlineMs) => {
    draining = true;
    return drain(active, deadlineMs);
  };
  gateway.close = async () => {
    await router.close();
    await release?.();
  };
  return gateway;
}

/**
 * Answers a method a gateway path does not serve (`GET /v1/chat/completions`, `OPTIONS`) with a JSON 405
 * naming the allowed ones in `Allow`, through the error writer, where Express alone would send its HTML 404.
 * Mounted on the gateway's own paths only, so every other path still goes on to the host app. A CORS
 * preflight is the host's: a cors() middleware mounted before the gateway answers it.
 */
function methodNotAllowed(allow: readonly string[]): RequestHandler {
  return function llmGatewayMethodNotAllowed(req: Request, res: Response, next: NextFunction): void {
    if (allow.includes(req.method)) {
      next();
      return;
    }
    claimRequest(req);
    echoRequestId(req, res);
    next(new MethodNotAllowedError(allow));
  };
}

async function drain(active: Set<GatewayContext>, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (active.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
  for (const ctx of active) ctx.cancel(new ServiceUnavailableError());
  while (active.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** A guardrail restricted to the groups it names (compared by canonical group, so aliases count). */
function guardrailFor(guardrail: GatewayGuardrailConfig, index: number, router: GatewayRouter, logger: Logger): RequestHandler {
  const { groups, ...options } = guardrail;
  groups?.forEach((group, g) => {
    if (!router.hasGroup(group)) throw new GatewayConfigError(`guardrails[${index}].groups[${g}]`, `'${group}' is not a configured model group or alias.`);
  });
  const middleware = atPath({ bedrockGuardrail: `guardrails[${index}]` }, () => bedrockGuardrail({ ...options, logger }));
  if (!groups) return middleware;
  const applies = new Set(groups.map((g) => router.canonicalGroup(g)));
  return function llmGatewayGroupGuardrail(req: Request, res: Response, next: NextFunction): void {
    if (applies.has(router.canonicalGroup(getContext(req).model))) middleware(req, res, next);
    else next();
  };
}

function buildStore(config: GatewayStoreConfig | undefined, logger: Logger): { store: Store; release?: () => Promise<void> } {
  if (!config || config.type === 'memory') return { store: new MemoryStore() };
  const Redis = loadIoredis();
  registerUrlCredentials(config.url);
  // Fail fast while disconnected, and time commands out with the store (commandTimeout = the store's
  // timeoutMs; a silent connection is dropped, which frees the commands abandoned on it): the store falls
  // back to local state instead of queueing commands.
  const clientOptions = RedisStore.clientOptions();
  const client = new Redis(config.url!, { ...clientOptions, lazyConnect: false });
  client.on('error', () => {}); // outages are reported once by the store itself
  return {
    store: new RedisStore({ client, logger, timeoutMs: clientOptions.commandTimeout, ...(config.prefix !== undefined ? { prefix: config.prefix } : {}) }),
    release: async () => {
      client.disconnect();
    },
  };
}

type IoredisConstructor = new (url: string, options: object) => ConstructorParameters<typeof RedisStore>[0]['client'] & {
  on(event: 'error', listener: () => void): unknown;
  disconnect(): void;
};

/** ioredis is an optional peer: resolved from the application, only when a Redis store is configured. */
function loadIoredis(): IoredisConstructor {
  try {
    const required = createRequire(join(process.cwd(), 'package.json'))('ioredis') as { default?: IoredisConstructor } & IoredisConstructor;
    return required.default ?? required;
  } catch {
    throw new GatewayConfigError('store.type', "'redis' needs the ioredis package: npm install ioredis.");
  }
}

/** Runs a factory and renames its option paths to where they live in the gateway config. */
function atPath<T>(renames: Record<string, string>, build: () => T): T {
  try {
    return build();
  } catch (err) {
    if (!(err instanceof GatewayConfigError)) throw err;
    const prefix = Object.keys(renames)
      .sort((a, b) => b.length - a.length)
      .find((from) => err.field === from || err.field.startsWith(`${from}.`) || err.field.startsWith(`${from}[`));
    if (prefix === undefined) throw err;
    const field = renames[prefix]! + err.field.slice(prefix.length);
    throw new GatewayConfigError(field, err.message.replace(/^.*?': /, ''), err.code);
  }
}
