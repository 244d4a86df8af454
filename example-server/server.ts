/**
 * The example server: an ordinary Express app with its own routes and auth, and the gateway mounted next
 * to them. The default config (`gateway.yaml`) points at mock providers and a Bedrock guardrail emulator
 * started in this process, so it runs offline with no accounts.
 *
 *   npm start                                 # example-server/gateway.yaml on http://127.0.0.1:3000
 *   npm start -- --config my-gateway.yaml     # or GATEWAY_CONFIG=my-gateway.yaml npm start
 *
 * Environment:
 *   PORT                  port to listen on (default 3000; 0 picks a free one, printed at start-up)
 *   HOST                  interface to listen on (default 127.0.0.1)
 *   GATEWAY_CONFIG        config file (default example-server/gateway.yaml); `--config <file>` wins
 *   GATEWAY_API_KEYS      comma-separated keys; when set, everything but /health needs
 *                         `Authorization: Bearer <key>`
 *   SHUTDOWN_DEADLINE_MS  on SIGTERM/SIGINT, how long requests in flight may still run (default 10000)
 *   OTEL                  `console`: print the gateway's OpenTelemetry spans (example-server/telemetry.ts)
 * The config file may reference any variable (`${OPENAI_API_KEY}`), plus MOCK_OPENAI_URL,
 * MOCK_ANTHROPIC_URL and BEDROCK_EMULATOR_URL, the embedded services.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express from 'express';
import { createGateway, loadGatewayConfig, type ErrorBodyForm, type Gateway } from '../lib/index.js';
import { apiKeyAuth, parseApiKeys } from './auth.js';
import { startEmbeddedServices, type EmbeddedServices } from './mocks.js';
import { startConsoleTelemetry } from './telemetry.js';
import { walkthroughText } from './walkthrough.js';

interface Settings {
  configFile: string;
  port: number;
  host: string;
  apiKeys: string[];
  shutdownDeadlineMs: number;
  otel: 'console' | undefined;
}

/** After the gateway drained, how long other connections (pass-through, idle keep-alive) get to finish. */
const CONNECTION_GRACE_MS = 1000;
/** How often the server checks whether its parent (`npm start`) went away. */
const ORPHAN_CHECK_MS = 250;

async function main(): Promise<void> {
  const settings = readSettings(process.argv.slice(2), process.env);
  if (settings.otel === 'console') startConsoleTelemetry();
  const services = await startEmbeddedServices();
  let gateway: Gateway;
  let server: Server;
  try {
    const config = loadGatewayConfig(settings.configFile, { env: { ...process.env, ...services.env } });
    gateway = createGateway({ ...config, metrics: true });
    server = await listen(createApp(gateway, settings.apiKeys, config.errors?.bodyForm), settings.port, settings.host);
  } catch (err) {
    await services.close();
    throw err;
  }
  const baseUrl = baseUrlOf(server.address() as AddressInfo);
  console.log(`config: ${settings.configFile}\n`);
  console.log(walkthroughText(baseUrl, { withApiKey: settings.apiKeys.length > 0 }));
  // Last, so that whoever waits for this line (a terminal, a test) has the walkthrough above it.
  console.log(`express-llm-gateway example server listening on ${baseUrl} (Ctrl-C to stop)`);
  stopOnSignals(server, gateway, services, settings.shutdownDeadlineMs);
}

/** The application: its own routes, its own auth, and the gateway mounted like any other middleware. */
function createApp(gateway: Gateway, apiKeys: string[], errorBodyForm: ErrorBodyForm | undefined): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // Before the auth, so that load balancers and orchestrators can probe it without a key.
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  if (apiKeys.length > 0) app.use(apiKeyAuth(apiKeys, errorBodyForm));
  // Behind the auth: metrics name the model groups and deployments.
  if (gateway.metrics) app.get('/metrics', gateway.metrics.handler);
  app.use(gateway);
  return app;
}

function readSettings(args: string[], env: NodeJS.ProcessEnv): Settings {
  return {
    configFile: configArgument(args) ?? (env['GATEWAY_CONFIG'] || join(__dirname, 'gateway.yaml')),
    port: integerSetting(env, 'PORT', 3000, 65535),
    host: env['HOST'] || '127.0.0.1',
    apiKeys: parseApiKeys(env['GATEWAY_API_KEYS']),
    shutdownDeadlineMs: integerSetting(env, 'SHUTDOWN_DEADLINE_MS', 10_000, Number.MAX_SAFE_INTEGER),
    otel: otelSetting(env['OTEL']),
  };
}

function otelSetting(value: string | undefined): 'console' | undefined {
  if (value === undefined || value === '') return undefined;
  if (value !== 'console') throw new Error(`OTEL must be 'console' (or unset), got '${value}'.`);
  return value;
}

/** `--config <file>` or `--config=<file>`. */
function configArgument(args: string[]): string | undefined {
  const at = args.findIndex((arg) => arg === '--config' || arg.startsWith('--config='));
  if (at < 0) return undefined;
  const value = args[at] === '--config' ? args[at + 1] : args[at]!.slice('--config='.length);
  if (!value) throw new Error('--config needs a file name.');
  return value;
}

function integerSetting(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > max) throw new Error(`${name} must be an integer from 0 to ${max}, got '${text}'.`);
  return value;
}

function listen(app: express.Express, port: number, host: string): Promise<Server> {
  const server = createServer(app);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** The URL to paste into curl: a wildcard address is reached through loopback. */
function baseUrlOf({ address, port }: AddressInfo): string {
  const host = address === '0.0.0.0' ? '127.0.0.1' : address === '::' ? '::1' : address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Graceful shutdown: stop accepting, let requests in flight finish up to the deadline (open streams then
 * end with the in-band shutdown error frame and `[DONE]`, never cut), then release everything and exit 0.
 * A second signal exits at once.
 */
function stopOnSignals(server: Server, gateway: Gateway, services: EmbeddedServices, deadlineMs: number): void {
  let stopping = false;
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log(`${signal}: finishing ${gateway.inFlight} request(s) in flight (up to ${deadlineMs} ms)…`);
    const closed = new Promise((resolve) => server.close(resolve));
    await gateway.drain(deadlineMs);
    server.closeIdleConnections();
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, CONNECTION_GRACE_MS).unref())]);
    server.closeAllConnections();
    await gateway.close();
    await services.close();
    console.log('stopped');
    process.exit(0);
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => stop(signal).catch(exitWithError));
  // `npm start` runs this process under `sh -c`, which does not pass SIGTERM on: a container runtime or
  // systemd stopping npm kills the shell and leaves this server behind, orphaned. Being re-parented is
  // that same request to stop.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent && !stopping) stop('SIGTERM').catch(exitWithError);
  }, ORPHAN_CHECK_MS).unref();
}

function exitWithError(err: unknown): never {
  console.error(`example server: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}

main().catch(exitWithError);
