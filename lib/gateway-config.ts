/**
 * The gateway configuration: one object (or a YAML/JSON file) describing model groups, routing,
 * fallbacks, guardrails, the error body form and the state store. `createGateway()` takes the object; the
 * file loader substitutes `${ENV_VAR}` references from an environment the caller passes in, then both
 * validate against `gatewayConfigSchema`, the JSON Schema shipped in the package, and fail at start-up
 * with the path and what was expected.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import type * as Yaml from 'yaml';
import { requireDependency } from './require.cjs';
import type { ErrorBodyForm } from './errors.js';
import { ERROR_BODY_FORMS } from './errors.js';
import { type FallbackMap, continuationSchema, fallbackLimitsSchema, fallbackMapSchema } from './fallback-handler.js';
import { GatewayConfigError, optionsValidator } from './options.js';
import { BODY_TIMEOUT_SCHEMA } from './context.js';
import { guardrailOptionsSchema } from './bedrock-guardrail.js';
import { type PassThroughOptions, passThroughOptionsSchema } from './passthrough.js';
import { awsCredentialsSchema, routerOptionsSchema, type ModelGroupOptions, type RetryOptions, type CooldownOptions, type RoutingStrategy } from './router-config.js';
import type { MalformedChunkPolicy, TimeoutOptions } from './providers/types.js';

export interface GatewayGuardrailConfig {
  /** Name used in records, logs and headers. @default guardrailIdentifier */
  name?: string;
  guardrailIdentifier: string;
  guardrailVersion: string;
  region?: string;
  /** Endpoint override (a VPC endpoint, or the local emulator). */
  endpoint?: string;
  /** Static credentials; otherwise the AWS SDK's default provider chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  hooks?: ('pre_call' | 'during_call' | 'post_call')[];
  onIntervention?: 'block' | 'mask';
  maskedInputDuringCall?: 'block' | 'allow';
  softBlock?: boolean;
  failOpen?: boolean;
  timeoutMs?: number;
  maxAttempts?: number;
  connectionTimeoutMs?: number;
  roles?: ('system' | 'developer' | 'user' | 'assistant' | 'tool' | 'function')[];
  /** Characters of request text the input check takes per request; more gets 413. @default 100000 */
  maxInputChars?: number;
  streaming?: { mode?: 'buffer' | 'window' | 'async'; windowSize?: number; overlap?: number };
  /**
   * The model groups (names or aliases, as clients request them) this guardrail applies to.
   * @default every group
   */
  groups?: string[];
}

export interface GatewayFallbackConfig {
  general?: FallbackMap;
  contentPolicy?: FallbackMap;
  contextWindow?: FallbackMap;
  /** Also use `general` for content-policy / context-window errors (LiteLLM's behaviour). @default false */
  generalForSpecific?: boolean;
  /** @default 3 */
  maxFallbacks?: number;
  /** @default 'x-gateway-disable-fallbacks' */
  disableHeader?: string;
  /** @default false */
  onGuardrail?: boolean;
  continuation?: { groups: string[]; instruction?: string };
}

export interface GatewayStoreConfig {
  /** `memory` (default): state per process. `redis`: shared by every instance using the same Redis. */
  type: 'memory' | 'redis';
  /** Redis URL (`redis://127.0.0.1:6379/0`), with `type: redis`. */
  url?: string;
  /** Key prefix, with `type: redis`. @default 'llm-gateway:' */
  prefix?: string;
}

/** The serializable gateway configuration (what a config file holds). */
export interface GatewayFileConfig {
  models: ModelGroupOptions[];
  router?: {
    strategy?: RoutingStrategy;
    retries?: RetryOptions;
    cooldown?: CooldownOptions;
    timeouts?: TimeoutOptions;
    deadlineMs?: number;
    /** See `RouterOptions.malformedChunks`. @default 'error' */
    malformedChunks?: MalformedChunkPolicy;
  };
  fallbacks?: GatewayFallbackConfig;
  guardrails?: GatewayGuardrailConfig[];
  /** Request context options. */
  context?: { bodyLimit?: number | string; bodyTimeoutMs?: number; trustRequestId?: boolean };
  /**
   * The inbound protocols served, each through the same pipeline: `chat` (`POST /v1/chat/completions`),
   * `responses` (`POST /v1/responses`, OpenAI's Responses API, stateless) and `messages`
   * (`POST /v1/messages`, Anthropic's Messages API). `false` turns one off: its path then goes on to the
   * host app (or the pass-through).
   * @default all three on
   */
  protocols?: { chat?: boolean; responses?: boolean; messages?: boolean };
  errors?: { bodyForm?: ErrorBodyForm };
  store?: GatewayStoreConfig;
  /**
   * Endpoints the gateway does not interpret (embeddings, moderations, audio, images, or the `paths` you
   * list) are proxied to this upstream, with its credentials injected. Off when absent. See `passThrough`.
   */
  passthrough?: Omit<PassThroughOptions, 'errorBodyForm'>;
}

const routerProps = routerOptionsSchema.properties;
// A file holds what can be written down: no client object, no logger; credentials only as static keys.
const { client: _client, logger: _logger, ...guardrailFileProperties } = guardrailOptionsSchema.properties;
// The error body form has its own section (`errors.bodyForm`).
const { errorBodyForm: _errorBodyForm, ...passThroughFileProperties } = passThroughOptionsSchema.properties;

/** JSON Schema of the gateway configuration (also published as `dist/gateway-config.schema.json`). */
export const gatewayConfigSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://unpkg.com/express-llm-gateway/dist/gateway-config.schema.json',
  title: 'express-llm-gateway configuration',
  type: 'object',
  additionalProperties: false,
  required: ['models'],
  properties: {
    models: routerProps.models,
    router: {
      type: 'object',
      additionalProperties: false,
      properties: {
        strategy: routerProps.strategy,
        retries: routerProps.retries,
        cooldown: routerProps.cooldown,
        timeouts: routerProps.timeouts,
        deadlineMs: routerProps.deadlineMs,
        malformedChunks: routerProps.malformedChunks,
      },
    },
    fallbacks: {
      type: 'object',
      additionalProperties: false,
      properties: {
        general: fallbackMapSchema,
        contentPolicy: fallbackMapSchema,
        contextWindow: fallbackMapSchema,
        ...fallbackLimitsSchema,
        onGuardrail: { type: 'boolean' },
        continuation: continuationSchema,
      },
    },
    guardrails: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: guardrailOptionsSchema.required,
        properties: {
          ...guardrailFileProperties,
          endpoint: { type: 'string', pattern: '^https?://' },
          credentials: awsCredentialsSchema,
          groups: { type: 'array', items: { type: 'string', minLength: 1 } },
        },
      },
    },
    context: {
      type: 'object',
      additionalProperties: false,
      properties: { bodyLimit: { type: ['number', 'string'] }, bodyTimeoutMs: BODY_TIMEOUT_SCHEMA, trustRequestId: { type: 'boolean' } },
    },
    protocols: {
      type: 'object',
      additionalProperties: false,
      properties: { chat: { type: 'boolean' }, responses: { type: 'boolean' }, messages: { type: 'boolean' } },
    },
    errors: { type: 'object', additionalProperties: false, properties: { bodyForm: { enum: ERROR_BODY_FORMS } } },
    store: {
      type: 'object',
      additionalProperties: false,
      required: ['type'],
      properties: { type: { enum: ['memory', 'redis'] }, url: { type: 'string', pattern: '^rediss?://' }, prefix: { type: 'string' } },
    },
    passthrough: { ...passThroughOptionsSchema, properties: passThroughFileProperties },
  },
} as const;

const validateConfig = optionsValidator(gatewayConfigSchema);
const validateFileConfig = optionsValidator(gatewayConfigSchema, '', { coerceTypes: true });

/** Validates a configuration object against `gatewayConfigSchema`; throws naming the first bad path. */
export function validateGatewayConfig(config: unknown, { fromFile = false } = {}): asserts config is GatewayFileConfig {
  (fromFile ? validateFileConfig : validateConfig)(config);
  const { store } = config as GatewayFileConfig;
  if (store?.type === 'redis' && !store.url) throw new GatewayConfigError('store.url', "is required with type 'redis'.");
}

export interface LoadConfigOptions {
  /**
   * The variables `${NAME}` references are replaced with. Pass `process.env` to use the environment: the
   * library never reads it on its own.
   * @default {}
   */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Reads a YAML (`.yaml`/`.yml`) or JSON config file, replaces `${NAME}` (and `${NAME:-default}`)
 * references in string values, and validates it. Throws a `GatewayConfigError` naming the path.
 */
export function loadGatewayConfig(file: string, options: LoadConfigOptions = {}): GatewayFileConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new GatewayConfigError('config', `could not read ${file}: ${(err as Error).message}`);
  }
  return parseGatewayConfig(text, extname(file).toLowerCase() === '.json' ? 'json' : 'yaml', options);
}

/** Like `loadGatewayConfig`, from the file's text. */
export function parseGatewayConfig(text: string, format: 'yaml' | 'json', options: LoadConfigOptions = {}): GatewayFileConfig {
  let raw: unknown;
  try {
    // yaml is loaded by the first YAML config rather than with the package.
    raw = format === 'json' ? JSON.parse(text) : (requireDependency('yaml') as typeof Yaml).parse(text);
  } catch (err) {
    throw new GatewayConfigError('config', `not valid ${format.toUpperCase()}: ${(err as Error).message}`);
  }
  const config = substituteEnv(raw, options.env ?? {}, '', options.env !== undefined);
  validateGatewayConfig(config, { fromFile: true });
  return config;
}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces `${NAME}` in every string; an unset variable without a default is an error naming the path. */
function substituteEnv(value: unknown, env: Readonly<Record<string, string | undefined>>, path: string, envGiven: boolean): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REFERENCE, (_match, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined) return found;
      if (fallback !== undefined) return fallback;
      // The library never reads process.env itself: without `env`, every reference is unset.
      const hint = envGiven ? '' : ' No `env` was passed: use loadGatewayConfig(file, { env: process.env }) to read the environment.';
      throw new GatewayConfigError(path || 'config', `references \${${name}}, which is not set.${hint}`);
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, env, `${path}[${i}]`, envGiven));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = substituteEnv(item, env, path ? `${path}.${key}` : key, envGiven);
    return out;
  }
  return value;
}
