/**
 * Every target the benchmark measures, in one place. `baseline` and `direct` are the references; the
 * gateway setups are built inside `servers/gateway.ts` (one child process each) from `build()` below.
 *
 * Every gateway piece is taken from the built package (dist/cjs, `bench/package.ts`), as a user's app runs
 * it, not from lib/*.ts through tsx. A piece missing from the package (the fallback handler, the Bedrock
 * guardrail, in a build without them) makes its setup skip with a printed note instead of breaking the run.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { GatewayRouter } from '../lib/router.js';
import type { RouterOptions } from '../lib/router-config.js';
import { emulatorDefaults, gatewayPackage } from './package.js';
import { BENCH_MODELS, type BenchProtocol, MODEL_FAST, type Mode } from './workload.js';

/** Guardrail window in characters (one Bedrock text unit); also used for the window TTFB target. */
export const GUARDRAIL_WINDOW_CHARS = 1000;
/** Added by the Bedrock emulator to every ApplyGuardrail answer: a network + service round trip. */
export const GUARDRAIL_LATENCY_MS = 10;

export type TargetKind = 'baseline' | 'direct' | 'gateway';

export interface SetupEnv {
  /** The mock OpenAI upstream, e.g. `http://127.0.0.1:41234`. */
  mockUrl: string;
  /** The Bedrock emulator, for setups with `needsEmulator`. */
  emulatorUrl: string | undefined;
}

/** The middlewares mounted between `gatewayContext()` and `sseErrorWriter()`, and how to release them. */
export interface BuiltSetup {
  handlers: (RequestHandler | ErrorRequestHandler)[];
  close(): Promise<void>;
}

export interface Skipped {
  skip: string;
}

export interface Setup {
  name: string;
  kind: TargetKind;
  description: string;
  needsEmulator: boolean;
  /** Included in `--quick` runs. */
  quick: boolean;
  /** Measured in the throughput cells (default) and/or the memory run. */
  throughput?: boolean;
  memory?: boolean;
  /** Throughput cells: these modes and connection counts only (default: every mode, 1 and 50). */
  modes?: readonly Mode[];
  connections?: readonly number[];
  /**
   * Informational setups (no target): also reported as a ratio to this setup's cells (same mode and
   * connections, same run), which then runs whenever this one does, `--only` or not.
   */
  reference?: string;
  /**
   * The inbound protocol the setup serves and the load speaks (issue 16): its path, its request body, its
   * answer. @default 'chat'
   */
  protocol?: BenchProtocol;
  /** Gateway setups only: builds the middlewares (runs inside the gateway child process). */
  build?: (env: SetupEnv) => Promise<BuiltSetup | Skipped>;
}

export const SETUPS: Setup[] = [
  {
    name: 'baseline',
    kind: 'baseline',
    description: 'Express 5 + express.json() + keep-alive undici forward, answer piped back (the ceiling)',
    needsEmulator: false,
    quick: true,
    memory: true,
  },
  {
    name: 'direct',
    kind: 'direct',
    description: 'client straight to the mock upstream (no server in between)',
    needsEmulator: false,
    quick: true,
  },
  {
    name: 'router',
    kind: 'gateway',
    description: 'gatewayContext() + createRouter() + sseErrorWriter()',
    needsEmulator: false,
    quick: true,
    memory: true,
    build: async (env) => {
      const router = await loadRouter(env);
      return { handlers: [router], close: () => router.close() };
    },
  },
  // Issue #16: the Responses and Messages protocols through the same router, judged against the chat path
  // (`router`, same run): their CPU per request within 1.2× of it. Mapping the request and writing the
  // protocol's events is all that differs. Measured right after `router`, so the two are compared across
  // seconds, not minutes (a shared machine drifts: cells minutes apart differed by up to 10% in A/A runs).
  protocolSetup('responses'),
  protocolSetup('messages'),
  {
    // The same streams spread over eight copies of each deployment (least-busy): a second memory figure, with
    // eight connection pools instead of one (a deployment's pool is unbounded unless `maxConnections`).
    name: 'router-wide',
    kind: 'gateway',
    description: 'router with 8 identical deployments per group (least-busy): eight connection pools',
    needsEmulator: false,
    quick: false,
    throughput: false,
    memory: true,
    build: async (env) => {
      const { createRouter } = gatewayPackage();
      const router = createRouter({ ...routerOptions(env.mockUrl, [], WIDE_DEPLOYMENTS), strategy: 'least-busy' });
      return { handlers: [router], close: () => router.close() };
    },
  },
  // Issue #15: what tracing costs. `router` is the no-subscriber case (each publish point is one
  // `hasSubscribers` check); these two are judged against it, informational (no PASS/FAIL). The per-request
  // cost is what tracing adds, so json and the instant stream at 50 connections are enough (and keep the
  // full run short).
  {
    name: 'router+channels',
    kind: 'gateway',
    description: 'router + a do-nothing subscriber on the three tracing channels (the cost of publishing alone)',
    needsEmulator: false,
    quick: false,
    modes: ['json', 'stream'],
    connections: [50],
    reference: 'router',
    build: async (env) => {
      const { noopChannelSubscribers } = await import('./tracing.js');
      return routerWithTracing(env, noopChannelSubscribers());
    },
  },
  {
    name: 'router+otel',
    kind: 'gateway',
    description: 'router + instrumentGateway() (express-llm-gateway/otel) with the OpenTelemetry SDK: AsyncLocalStorage context, batch span processor and periodic metric reader to discarding exporters',
    needsEmulator: false,
    quick: false,
    modes: ['json', 'stream'],
    connections: [50],
    reference: 'router',
    build: async (env) => {
      const { benchTelemetry } = await import('./tracing.js');
      return routerWithTracing(env, await benchTelemetry());
    },
  },
  {
    name: 'router+fallbacks',
    kind: 'gateway',
    description: 'router + fallbackHandler() with fallbacks configured for every group, never triggered',
    needsEmulator: false,
    quick: false,
    build: async (env) => {
      const fallbackHandler = packageExport('fallbackHandler');
      if (typeof fallbackHandler === 'string') return { skip: fallbackHandler };
      const router = await loadRouter(env, FALLBACK_GROUPS);
      const handler = fallbackHandler({
        router,
        fallbacks: Object.fromEntries(BENCH_MODELS.map((name) => [name, [`${name}-fallback`]])),
      });
      return { handlers: [router, handler], close: () => router.close() };
    },
  },
  guardrailSetup('guardrail-window', 'window', true),
  guardrailSetup('guardrail-buffer', 'buffer', false),
];

const WIDE_DEPLOYMENTS = 8;

/** A spare group per model, the target of the (untriggered) fallbacks. */
const FALLBACK_GROUPS = BENCH_MODELS.map((name) => `${name}-fallback`);

export function setupNamed(name: string): Setup {
  const setup = SETUPS.find((s) => s.name === name);
  if (!setup) throw new Error(`unknown setup '${name}' (known: ${SETUPS.map((s) => s.name).join(', ')})`);
  return setup;
}

/** One group per benchmark model, forwarding the same model name to the mock (`copies` deployments each). */
export function routerOptions(mockUrl: string, extraGroups: readonly string[] = [], copies = 1): RouterOptions {
  const deployment = (model: string) => ({ provider: 'openai' as const, baseUrl: `${mockUrl}/v1`, model, apiKey: 'bench-key' });
  return {
    models: [
      ...BENCH_MODELS.map((name) => ({ name, deployments: Array.from({ length: copies }, () => deployment(name)) })),
      ...extraGroups.map((name) => ({ name, deployments: [deployment(MODEL_FAST)] })),
    ],
    logger: gatewayPackage().silentLogger,
  };
}

/** The router with a tracing subscriber already attached; `stop` detaches it when the setup closes. */
async function routerWithTracing(env: SetupEnv, stop: () => void | Promise<void>): Promise<BuiltSetup> {
  const router = await loadRouter(env);
  return {
    handlers: [router],
    close: async () => {
      await router.close();
      await stop();
    },
  };
}

async function loadRouter(env: SetupEnv, extraGroups: readonly string[] = []): Promise<GatewayRouter> {
  const { createRouter } = gatewayPackage();
  return createRouter(routerOptions(env.mockUrl, extraGroups));
}

/** The router behind `POST /v1/responses` or `POST /v1/messages`, measured against `router` (chat). */
function protocolSetup(protocol: 'responses' | 'messages'): Setup {
  return {
    name: `router-${protocol}`,
    kind: 'gateway',
    description: `the router behind gatewayContext({ protocol: '${protocol}' }): the same question and answer in the ${protocol === 'responses' ? 'OpenAI Responses' : 'Anthropic Messages'} protocol`,
    needsEmulator: false,
    quick: false,
    connections: [50],
    reference: 'router',
    protocol,
    build: async (env) => {
      const router = await loadRouter(env);
      return { handlers: [router], close: () => router.close() };
    },
  };
}

function guardrailSetup(name: string, mode: 'window' | 'buffer', quick: boolean): Setup {
  return {
    name,
    kind: 'gateway',
    description: `bedrockGuardrail() post_call, ${mode} mode (window ${GUARDRAIL_WINDOW_CHARS} chars), emulator +${GUARDRAIL_LATENCY_MS} ms, + router`,
    needsEmulator: true,
    quick,
    build: async (env) => {
      const bedrockGuardrail = packageExport('bedrockGuardrail');
      if (typeof bedrockGuardrail === 'string') return { skip: bedrockGuardrail };
      const { DEFAULT_GUARDRAIL } = emulatorDefaults();
      if (!env.emulatorUrl) throw new Error(`${name} needs the Bedrock emulator's url`);
      // Output only: the window target is one window's generation + one round trip (an input check
      // would add its own round trip before the model call, or run beside it with during_call).
      const guardrail = bedrockGuardrail({
        guardrailIdentifier: DEFAULT_GUARDRAIL.id,
        guardrailVersion: DEFAULT_GUARDRAIL.version,
        region: 'us-east-1',
        endpoint: env.emulatorUrl,
        credentials: { accessKeyId: 'BENCHKEY', secretAccessKey: 'bench-secret' },
        hooks: ['post_call'],
        streaming: { mode, windowSize: GUARDRAIL_WINDOW_CHARS },
        logger: gatewayPackage().silentLogger,
      });
      const router = await loadRouter(env);
      return { handlers: [guardrail, router], close: () => router.close() };
    },
  };
}

type GatewayPackage = ReturnType<typeof gatewayPackage>;

/** An export of the built package, or a note saying why the setup is skipped (a build without it). */
function packageExport<Name extends 'fallbackHandler' | 'bedrockGuardrail'>(name: Name): GatewayPackage[Name] | string {
  try {
    const value = gatewayPackage()[name] as GatewayPackage[Name] | undefined;
    return typeof value === 'function' ? value : `'${name}' is not exported by dist/cjs/index.js`;
  } catch (err) {
    return `dist/cjs/index.js did not load: ${(err as Error).message}`;
  }
}
