/**
 * Router configuration: model groups and their deployments, routing strategy, retries, cooldowns and
 * timeouts. Validated with ajv when `createRouter()` runs; a bad entry throws naming its path
 * (`router.models[1].deployments[0].provider`). Everything per request is precomputed here.
 */
import type { Logger } from './logger.js';
import { consoleLogger, withRedaction } from './logger.js';
import { registerSecret } from './redact.js';
import { GatewayConfigError, definedOnly, optionsValidator } from './options.js';
import type { Deployment, DeploymentOptions, MalformedChunkPolicy, ProviderAdapter, ProviderName, TimeoutOptions } from './providers/types.js';
import type { Store } from './store.js';
import { MemoryStore } from './store.js';

export type RoutingStrategy = 'weighted' | 'least-busy' | 'lowest-latency' | 'ordered';

/** The taxonomy `type` slugs the router may retry. */
export type RetryableType = 'rate_limit_exceeded' | 'upstream_error' | 'timeout' | 'connection_error';

export interface ModelGroupOptions {
  /** What clients send as `model`. `'*'` is the wildcard group: it serves every model no other group names. */
  name: string;
  /** Other names clients may use for this group. */
  aliases?: string[];
  /** At least one. With the wildcard group, a deployment `model: '*'` forwards the client's model name. */
  deployments: DeploymentOptions[];
}

export interface RetryOptions {
  /**
   * Further attempts inside a group after the first one fails (so `2` means up to 3 calls).
   * @default 2
   */
  maxRetries?: number;
  /**
   * Error types worth another attempt. Deterministic failures (bad request, auth, content policy, context
   * window) are never retried whatever this says: the same request would fail the same way.
   * @default ['rate_limit_exceeded', 'upstream_error', 'timeout', 'connection_error']
   */
  retryOn?: RetryableType[];
  /**
   * Backoff before retrying the same deployment (only when no other healthy deployment is left):
   * full jitter over `initialMs × 2^n`, capped at `maxMs` and by the request deadline.
   * @default { initialMs: 250, maxMs: 4000 }
   */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * Retry a timed-out deployment (connect, first-token, idle before commit, total) in the same request.
   * Off by default: a deployment that stayed silent for a whole timeout is likely to stay silent for the
   * next one too, so the next attempt goes to another deployment of the group or, when none is left, the
   * request goes to its fallback at once (total time ≈ one timeout, not one per retry). Connection
   * failures (refused, reset) are retried with backoff either way.
   * @default false
   */
  retryTimeoutsOnSameDeployment?: boolean;
}

export interface CooldownOptions {
  /**
   * Failures inside `windowMs` that take a deployment out of rotation.
   * @default 3
   */
  failureThreshold?: number;
  /** @default 60000 */
  windowMs?: number;
  /**
   * How long a deployment stays out after too many failures, or after a 429 without `Retry-After`.
   * @default 30000
   */
  durationMs?: number;
}

export interface RouterOptions {
  /** The model groups. Names and aliases must be unique. */
  models: ModelGroupOptions[];
  /**
   * How a deployment is chosen inside a group: `weighted` random by `weight`, `least-busy` (fewest
   * requests in flight on this instance), `lowest-latency` (lowest recent time to first token), or
   * `ordered` (the first healthy deployment in the order they are listed: a primary with standbys).
   * Deployments in cooldown or over their rpm/tpm are skipped, and a retry prefers one the request has
   * not tried yet.
   * @default 'weighted'
   */
  strategy?: RoutingStrategy;
  retries?: RetryOptions;
  cooldown?: CooldownOptions;
  /** Defaults for every deployment's timeouts (each deployment may override them). */
  timeouts?: TimeoutOptions;
  /**
   * Upper bound for the whole request: every attempt, retry, backoff and fallback.
   * @default 600000
   */
  deadlineMs?: number;
  /**
   * What a stream does with an upstream event that breaks its protocol (data that is not JSON, `choices`
   * that is not an array): `error` ends the attempt with a 502 `upstream_error` (retried or fallen back
   * before commit, the in-band error frame after); `skip` drops the event and keeps streaming, with one
   * warning per request (no content logged) and every such event counted in the metrics
   * (`malformed_chunks_total`). Frames that carry nothing for the client (keep-alives, `event: ping`,
   * SSE comments, unknown event types, metadata objects without `choices`) are skipped under both.
   * Bedrock streams are parsed by the AWS SDK, which fails on a broken message whatever this says.
   * @default 'error'
   */
  malformedChunks?: MalformedChunkPolicy;
  /**
   * Where cooldowns, failure counts, usage and latency stats live. Use a shared store (Redis) when several
   * gateway instances serve the same deployments.
   * @default a new in-memory store
   */
  store?: Store;
  /** @default console, for warnings and errors only */
  logger?: Logger;
  /**
   * Adapters for custom providers, or to replace a built-in one (tests, instrumentation): called once per
   * deployment when the router is created.
   */
  adapterFactory?: (deployment: Deployment) => ProviderAdapter | undefined;
}

export interface ModelGroup {
  name: string;
  deployments: Deployment[];
}

export interface ResolvedRouterConfig {
  groups: Map<string, ModelGroup>;
  /** Every name and alias, to its group. */
  byName: Map<string, ModelGroup>;
  wildcard: ModelGroup | undefined;
  strategy: RoutingStrategy;
  maxRetries: number;
  retryOn: ReadonlySet<string>;
  retryTimeoutsOnSameDeployment: boolean;
  backoffInitialMs: number;
  backoffMaxMs: number;
  failureThreshold: number;
  failureWindowMs: number;
  cooldownMs: number;
  deadlineMs: number;
  store: Store;
  logger: Logger;
}

export const PROVIDERS: readonly ProviderName[] = ['openai', 'azure', 'anthropic', 'bedrock'];
const RETRYABLE_TYPES: readonly RetryableType[] = ['rate_limit_exceeded', 'upstream_error', 'timeout', 'connection_error'];

const DEFAULT_TIMEOUTS: Required<TimeoutOptions> = { connectMs: 5_000, firstTokenMs: 60_000, idleMs: 30_000, totalMs: 600_000 };
const DEFAULT_BASE_URLS: Partial<Record<ProviderName, string>> = {
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com',
};

const positiveInteger = { type: 'integer', minimum: 1 } as const;
/** Static AWS credentials (Bedrock deployments, and guardrails in a config file). */
export const awsCredentialsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['accessKeyId', 'secretAccessKey'],
  properties: { accessKeyId: { type: 'string' }, secretAccessKey: { type: 'string' }, sessionToken: { type: 'string' } },
} as const;
const positiveNumber = { type: 'number', exclusiveMinimum: 0 } as const;
const timeoutsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { connectMs: positiveInteger, firstTokenMs: positiveInteger, idleMs: positiveInteger, totalMs: positiveInteger },
} as const;

/** JSON Schema of `RouterOptions` (functions and objects such as `store` are checked separately). */
export const routerOptionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['models'],
  properties: {
    models: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'deployments'],
        properties: {
          name: { type: 'string', minLength: 1 },
          aliases: { type: 'array', items: { type: 'string', minLength: 1 } },
          deployments: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['provider', 'model'],
              properties: {
                id: { type: 'string', minLength: 1 },
                provider: { enum: PROVIDERS },
                baseUrl: { type: 'string', pattern: '^https?://' },
                model: { type: 'string', minLength: 1 },
                // A string, false (no key), or in code a function: JSON Schema cannot say "function", so
                // the rest is checked when the router is created (checkApiKey).
                apiKey: { description: "The provider's API key, or false for a server that needs none (local vLLM, Ollama)." },
                apiVersion: { type: 'string', minLength: 1 },
                region: { type: 'string', minLength: 1 },
                awsCredentials: awsCredentialsSchema,
                headers: { type: 'object', additionalProperties: { type: 'string' } },
                weight: positiveNumber,
                rpm: positiveInteger,
                tpm: positiveInteger,
                contextWindow: positiveInteger,
                defaultMaxTokens: positiveInteger,
                maxConnections: positiveInteger,
                timeouts: timeoutsSchema,
              },
            },
          },
        },
      },
    },
    strategy: { enum: ['weighted', 'least-busy', 'lowest-latency', 'ordered'] },
    retries: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxRetries: { type: 'integer', minimum: 0, maximum: 10 },
        retryOn: { type: 'array', items: { enum: RETRYABLE_TYPES } },
        backoff: {
          type: 'object',
          additionalProperties: false,
          properties: { initialMs: { type: 'integer', minimum: 0 }, maxMs: { type: 'integer', minimum: 0 } },
        },
        retryTimeoutsOnSameDeployment: { type: 'boolean' },
      },
    },
    cooldown: {
      type: 'object',
      additionalProperties: false,
      properties: { failureThreshold: positiveInteger, windowMs: positiveInteger, durationMs: positiveInteger },
    },
    timeouts: timeoutsSchema,
    deadlineMs: positiveInteger,
    malformedChunks: { enum: ['error', 'skip'] },
    store: { type: 'object' },
    logger: { type: 'object' },
    adapterFactory: {},
  },
} as const;

const validateRouterOptions = optionsValidator(routerOptionsSchema, 'router');

export function parseRouterOptions(options: RouterOptions): ResolvedRouterConfig {
  const given = definedOnly(options);
  validateRouterOptions(given);
  const defaults = { ...DEFAULT_TIMEOUTS, ...definedOnly(given.timeouts) };
  const groups = new Map<string, ModelGroup>();
  const byName = new Map<string, ModelGroup>();
  (given.models ?? []).forEach((groupOptions, g) => {
    const group: ModelGroup = {
      name: groupOptions.name,
      deployments: resolveDeployments(groupOptions, g, defaults, given.malformedChunks ?? 'error'),
    };
    for (const [i, name] of [groupOptions.name, ...(groupOptions.aliases ?? [])].entries()) {
      if (byName.has(name)) {
        const field = i === 0 ? `router.models[${g}].name` : `router.models[${g}].aliases[${i - 1}]`;
        throw new GatewayConfigError(field, `the name '${name}' is already used by another group or alias.`);
      }
      byName.set(name, group);
    }
    groups.set(group.name, group);
  });
  const retries = definedOnly(given.retries);
  const backoff = definedOnly(retries.backoff);
  const cooldown = definedOnly(given.cooldown);
  if (given.adapterFactory !== undefined && typeof given.adapterFactory !== 'function') {
    throw new GatewayConfigError('router.adapterFactory', 'expected a function (deployment) => ProviderAdapter | undefined.');
  }
  return {
    groups,
    byName,
    wildcard: groups.get('*'),
    strategy: given.strategy ?? 'weighted',
    maxRetries: retries.maxRetries ?? 2,
    retryOn: new Set(retries.retryOn ?? RETRYABLE_TYPES),
    retryTimeoutsOnSameDeployment: retries.retryTimeoutsOnSameDeployment ?? false,
    backoffInitialMs: backoff.initialMs ?? 250,
    backoffMaxMs: backoff.maxMs ?? 4_000,
    failureThreshold: cooldown.failureThreshold ?? 3,
    failureWindowMs: cooldown.windowMs ?? 60_000,
    cooldownMs: cooldown.durationMs ?? 30_000,
    deadlineMs: given.deadlineMs ?? 600_000,
    store: given.store ?? new MemoryStore(),
    logger: withRedaction(given.logger ?? consoleLogger),
  };
}

function resolveDeployments(
  group: ModelGroupOptions,
  g: number,
  defaults: Required<TimeoutOptions>,
  malformedChunks: MalformedChunkPolicy,
): Deployment[] {
  const seen = new Map<string, number>();
  return group.deployments.map((options, d) => {
    const field = `router.models[${g}].deployments[${d}]`;
    const baseUrl = options.baseUrl ?? DEFAULT_BASE_URLS[options.provider];
    if (options.provider === 'azure' && baseUrl === undefined) {
      throw new GatewayConfigError(`${field}.baseUrl`, "is required for Azure OpenAI (e.g. 'https://NAME.openai.azure.com').");
    }
    checkApiKey(options, `${field}.apiKey`);
    registerDeploymentSecrets(options);
    if (options.model === '*' && group.name !== '*') {
      throw new GatewayConfigError(`${field}.model`, "'*' (forward the client's model) is only allowed in the wildcard group '*'.");
    }
    const id = options.id ?? uniqueId(`${options.provider}/${options.model}`, seen);
    if (options.id !== undefined && seen.has(options.id)) {
      throw new GatewayConfigError(`${field}.id`, `'${options.id}' is used twice in group '${group.name}'.`);
    }
    seen.set(id, 1);
    return {
      ...options,
      ...(baseUrl === undefined ? {} : { baseUrl: baseUrl.replace(/\/+$/, '') }),
      id,
      group: group.name,
      weight: options.weight ?? 1,
      timeouts: { ...defaults, ...definedOnly(options.timeouts) },
      // On the deployment, so every adapter (custom ones from `adapterFactory` too) learns it when created.
      malformedChunks,
    };
  });
}

/** Every credential a deployment carries is redacted by value from what reaches clients and logs. */
function registerDeploymentSecrets(options: DeploymentOptions): void {
  if (typeof options.apiKey === 'string') registerSecret(options.apiKey);
  registerSecret(options.awsCredentials?.secretAccessKey);
  registerSecret(options.awsCredentials?.sessionToken);
  // Extra headers often carry credentials of their own (a gateway token, a tenant key).
  for (const value of Object.values(options.headers ?? {})) registerSecret(value);
}

/** Providers whose every request carries an API key (Bedrock signs with AWS credentials instead). */
const KEYED_PROVIDERS: ReadonlySet<ProviderName> = new Set(['openai', 'azure', 'anthropic']);

/**
 * A keyed provider without a key fails here, not on the first request: there, the upstream's 401 would
 * look like the client's own credentials were wrong. `apiKey: process.env.X` with `X` unset is the usual
 * way to get here, so the message says that; a server that needs no key says so with `false`.
 */
function checkApiKey(options: DeploymentOptions, field: string): void {
  const { apiKey, provider } = options as { apiKey: unknown; provider: ProviderName };
  if (typeof apiKey === 'function' || apiKey === false) return;
  if (typeof apiKey === 'string' && apiKey.trim() !== '') return;
  if (apiKey !== undefined && apiKey !== null && typeof apiKey !== 'string') {
    throw new GatewayConfigError(field, 'expected a string, a function returning one, or false (a server that needs no key).');
  }
  if (!KEYED_PROVIDERS.has(provider)) return;
  const got = typeof apiKey === 'string' ? 'an empty string' : String(apiKey);
  throw new GatewayConfigError(
    field,
    `is required for provider '${provider}' (got ${got}; was it read from an environment variable that is not set?). ` +
      'For a server that needs no key (a local vLLM, Ollama), write apiKey: false.',
  );
}

function uniqueId(base: string, seen: Map<string, number>): string {
  if (!seen.has(base)) return base;
  let n = 2;
  while (seen.has(`${base}#${n}`)) n++;
  return `${base}#${n}`;
}
