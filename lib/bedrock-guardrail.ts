/**
 * The Bedrock guardrail middleware: checks the input before (`pre_call`) or alongside (`during_call`) the
 * model call and the output after it (`post_call`) with AWS Bedrock's `ApplyGuardrail`, blocking or masking.
 *
 * ```ts
 * app.post('/v1/chat/completions', gatewayContext(),
 *   bedrockGuardrail({ guardrailIdentifier: 'gr1abc', guardrailVersion: '3', region: 'us-east-1' }),
 *   router, fallbackHandler, sseErrorWriter());
 * ```
 */
import type { BedrockRuntimeClient, BedrockRuntimeClientConfig } from '@aws-sdk/client-bedrock-runtime';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { type GatewayContext, type InputHook, contextRequirement } from './context.js';
import { RequestTooLargeError } from './errors.js';
import { GuardrailChecker, type MaskHandling, checkTexts } from './guardrail/checker.js';
import { type DefinitionSpot, definitionSpotsOf, withMaskedDefinitions } from './guardrail/definitions.js';
import { type InputSpot, inputSpotsOf, maskedMessages } from './guardrail/extract.js';
import { type Pack, packTexts, unpack } from './guardrail/limits.js';
import { type Replacement, maskedSpans } from './guardrail/masking.js';
import { type StreamingMode, outputHook } from './guardrail/output-filters.js';
import { bedrockSdk } from './bedrock-sdk.js';
import { type Logger, consoleLogger, withRedaction } from './logger.js';
import { registerSecret } from './redact.js';
import { GatewayConfigError, assertCalledAsFactory, definedOnly, optionsValidator } from './options.js';
import type { ChatRole } from './types.js';

export type GuardrailHook = 'pre_call' | 'during_call' | 'post_call';
export type { StreamingMode } from './guardrail/output-filters.js';

export interface GuardrailStreamingOptions {
  /**
   * How streamed output is checked:
   * - `'window'`: text goes out window by window, each checked before it is released; first byte after
   *   about one window plus one guardrail round trip.
   * - `'buffer'`: the whole answer is checked once at the end, then released.
   * - `'async'`: text goes out at once and is checked behind the stream; a block stops the stream with
   *   the error frame. **Text that violates the policy can reach the client** before the check catches up
   *   (as in Bedrock's own async mode). Masking is not possible (`onIntervention` must be `'block'`).
   * @default 'window'
   */
  mode?: StreamingMode;
  /**
   * Largest text checked in one call, in characters (per choice and field). 1,000 characters is one text
   * unit per configured policy, the billing granularity.
   * @default 1000
   */
  windowSize?: number;
  /**
   * Characters at the end of a checked window that are held back and checked again at the start of the
   * next one, so a violation or a PII entity across the edge is seen whole. At most `windowSize / 2`.
   * In `async` mode: characters of already-checked text sent as context with the next window.
   * @default 100, or `windowSize / 2` when that is smaller
   */
  overlap?: number;
}

export interface BedrockGuardrailOptions {
  /** The guardrail id (`gr1abc2def3`) or its ARN. Required. */
  guardrailIdentifier: string;
  /** The guardrail version: `'DRAFT'` or a number such as `'3'`. Required. */
  guardrailVersion: string;
  /**
   * Name used in accounting records, logs and the `x-gateway-guardrail` header.
   * @default guardrailIdentifier
   */
  name?: string;
  /**
   * The Bedrock Runtime client to use. When given, `region`, `endpoint`, `credentials`, `maxAttempts` and
   * `connectionTimeoutMs` must not be (configure the client instead).
   * @default a client built from the options below
   */
  client?: BedrockRuntimeClient;
  /** AWS region of the client this middleware builds. Required unless `client` is given. */
  region?: string;
  /** Endpoint override (a VPC endpoint, or the local emulator from `express-llm-gateway/testing`). */
  endpoint?: string;
  /**
   * Credentials of the built client.
   * @default the AWS SDK's default provider chain (environment, profile, instance role)
   */
  credentials?: BedrockRuntimeClientConfig['credentials'];
  /**
   * Attempts per call of the built client (retries throttling, 5xx and per-attempt timeouts). Each attempt
   * times out at `timeoutMs / maxAttempts`; the whole call, retries included, ends at `timeoutMs`.
   * @default 2
   */
  maxAttempts?: number;
  /**
   * TCP connect timeout of the built client, in ms.
   * @default 1000
   */
  connectionTimeoutMs?: number;
  /**
   * Hard deadline of one guardrail call, retries included, in ms. Past it the call is aborted and counts
   * as a failure (see `failOpen`).
   * @default 3000
   */
  timeoutMs?: number;
  /**
   * When to check: `pre_call` checks the input before the model is called (the model sees only passed,
   * possibly masked, input); `during_call` checks it while the model call runs (lower latency; nothing is
   * sent to the client before it passes; the model has seen the input); `post_call` checks the output.
   * `pre_call` and `during_call` exclude each other.
   * @default ['pre_call', 'post_call']
   */
  hooks?: GuardrailHook[];
  /**
   * What an intervention does. `'block'`: any intervention blocks. `'mask'`: an intervention that only
   * masks (PII set to ANONYMIZE) replaces the text with the guardrail's masked text; a BLOCKED one blocks.
   * @default 'mask' ('block' when `streaming.mode` is 'async')
   */
  onIntervention?: 'block' | 'mask';
  /**
   * `during_call` only: what to do when the guardrail wants the input masked. The model already has the
   * unmasked input by the time the verdict arrives, so masking is impossible: `'block'` refuses the answer
   * (nothing was sent to the client yet); `'allow'` accepts that the model saw it and lets the answer through.
   * Use `pre_call` to have the input masked.
   * @default 'block'
   */
  maskedInputDuringCall?: 'block' | 'allow';
  /**
   * Soft block: instead of an error, the client gets the guardrail's own blocked message as a normal
   * answer ending with `finish_reason: "content_filter"`. The blocked text is never sent to the model (input)
   * or to the client (output).
   * @default false
   */
  softBlock?: boolean;
  /**
   * When the guardrail call fails (throttled, 5xx, past `timeoutMs`, an unreadable answer): `false` fails
   * the request with 503 `guardrail_unavailable` (in-band after commit); `true` lets the text through
   * unchecked and logs a warning once per outage.
   * @default false
   */
  failOpen?: boolean;
  /**
   * Roles whose messages are checked on input. String and text-part content, refusals, tool-call and
   * function-call arguments, tool and function results, the message's `name` and its tool-call names are
   * checked; images, audio and files are skipped. Tool, legacy function and `response_format` definitions
   * are checked whatever the roles.
   * @default ['system', 'developer', 'user', 'assistant', 'tool', 'function']
   */
  roles?: ChatRole[];
  /**
   * The most characters of request text the input check (`pre_call` / `during_call`) takes per request:
   * messages and definitions together. A request with more gets 413 `invalid_request_error` before any
   * guardrail or model call. The default is 100 text units per policy: four ApplyGuardrail calls of 25
   * units, 4 s of the lowest default quota (25 text units per second).
   * @default 100000
   */
  maxInputChars?: number;
  /** How streamed output is checked (`post_call`). */
  streaming?: GuardrailStreamingOptions;
  /**
   * Where fail-open incidents are logged (pino-compatible). Prompts and completions are never logged.
   * @default console, warnings and errors only
   */
  logger?: Logger;
}

const DEFAULT_TIMEOUT_MS = 3000;
const DEFAULT_MAX_INPUT_CHARS = 100_000;
const DEFAULT_OVERLAP = 100;
const ALL_ROLES: readonly ChatRole[] = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];
const HOOKS: readonly GuardrailHook[] = ['pre_call', 'during_call', 'post_call'];
/** Options that configure the client this middleware builds, so they conflict with a given `client`. */
const CLIENT_OPTIONS = ['region', 'endpoint', 'credentials', 'maxAttempts', 'connectionTimeoutMs'] as const;

/** JSON Schema of `BedrockGuardrailOptions` (the config file's guardrail entries are built from it). */
export const guardrailOptionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['guardrailIdentifier', 'guardrailVersion'],
  properties: {
    guardrailIdentifier: {
      type: 'string',
      pattern: '^([a-z0-9]+|arn:aws(-[a-z-]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)$',
    },
    guardrailVersion: { type: 'string', pattern: '^(DRAFT|[1-9][0-9]{0,7})$' },
    name: { type: 'string', minLength: 1 },
    client: { type: 'object' },
    region: { type: 'string', minLength: 1 },
    endpoint: { type: 'string', minLength: 1 },
    credentials: {},
    maxAttempts: { type: 'integer', minimum: 1, maximum: 10 },
    connectionTimeoutMs: { type: 'integer', minimum: 1 },
    timeoutMs: { type: 'integer', minimum: 1 },
    hooks: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: HOOKS } },
    onIntervention: { enum: ['block', 'mask'] },
    maskedInputDuringCall: { enum: ['block', 'allow'] },
    softBlock: { type: 'boolean' },
    failOpen: { type: 'boolean' },
    roles: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: ALL_ROLES } },
    maxInputChars: { type: 'integer', minimum: 1 },
    streaming: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { enum: ['buffer', 'window', 'async'] },
        windowSize: { type: 'integer', minimum: 1 },
        overlap: { type: 'integer', minimum: 0 },
      },
    },
    logger: { type: 'object' },
  },
} as const;

const validateOptions = optionsValidator(guardrailOptionsSchema, 'bedrockGuardrail');

interface ResolvedGuardrailConfig {
  hooks: ReadonlySet<GuardrailHook>;
  roles: ReadonlySet<ChatRole>;
  maxInputChars: number;
  onIntervention: 'block' | 'mask';
  maskedInputDuringCall: 'block' | 'allow';
  streaming: Required<GuardrailStreamingOptions>;
  checker: GuardrailChecker;
  logger: Logger;
}

function parseGuardrailOptions(options: BedrockGuardrailOptions): ResolvedGuardrailConfig {
  const given = definedOnly(options);
  validateOptions(given);
  const hooks = new Set<GuardrailHook>(given.hooks ?? ['pre_call', 'post_call']);
  if (hooks.has('pre_call') && hooks.has('during_call')) {
    throw new GatewayConfigError('bedrockGuardrail.hooks', "use either 'pre_call' or 'during_call' for the input, not both.");
  }
  const streaming = parseStreaming(given.streaming);
  const onIntervention = given.onIntervention ?? (streaming.mode === 'async' ? 'block' : 'mask');
  if (onIntervention === 'mask' && streaming.mode === 'async') {
    throw new GatewayConfigError(
      'bedrockGuardrail.streaming.mode',
      "'async' cannot mask (the text is already sent when the verdict arrives); set onIntervention: 'block' or use 'window'.",
    );
  }
  const name = given.name ?? given.guardrailIdentifier ?? '';
  const logger = withRedaction(given.logger ?? consoleLogger);
  return {
    logger,
    hooks,
    roles: new Set(given.roles ?? ALL_ROLES),
    maxInputChars: given.maxInputChars ?? DEFAULT_MAX_INPUT_CHARS,
    onIntervention,
    maskedInputDuringCall: given.maskedInputDuringCall ?? 'block',
    streaming,
    checker: new GuardrailChecker({
      client: clientFrom(given),
      guardrailIdentifier: given.guardrailIdentifier ?? '',
      guardrailVersion: given.guardrailVersion ?? '',
      name,
      timeoutMs: given.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      failOpen: given.failOpen ?? false,
      softBlock: given.softBlock ?? false,
      logger,
    }),
  };
}

function parseStreaming(given: GuardrailStreamingOptions | undefined): Required<GuardrailStreamingOptions> {
  const set = definedOnly(given);
  const windowSize = set.windowSize ?? 1000;
  // The default overlap shrinks with a small window, so setting only `windowSize` never trips the rule below.
  const streaming = { mode: 'window' as const, windowSize, overlap: Math.min(DEFAULT_OVERLAP, Math.floor(windowSize / 2)), ...set };
  if (streaming.overlap > streaming.windowSize / 2) {
    throw new GatewayConfigError('bedrockGuardrail.streaming.overlap', `must be at most half of windowSize (${streaming.windowSize / 2}).`);
  }
  return streaming;
}

/**
 * The given client, or one built for this middleware. It uses HTTP/1.1 (`NodeHttpHandler`) rather than the
 * SDK's default HTTP/2 handler: the default opens one session per concurrent request anyway
 * (`disableConcurrentStreams`), fails against HTTP/1.1-only endpoints and proxies, and its timeouts are idle
 * timeouts. HTTP/1.1 keeps pooled keep-alive sockets, and an abort closes just that request's socket.
 * `throwOnRequestTimeout` makes the per-attempt timeout (`timeoutMs / maxAttempts`) fail the attempt (it only
 * warns otherwise), so a stuck attempt is retried within the `timeoutMs` budget.
 * The options are checked here, when the factory runs; the SDK is loaded here too, not at the first check.
 */
function clientFrom(given: Partial<BedrockGuardrailOptions>): BedrockRuntimeClient {
  if (given.client !== undefined) {
    if (typeof (given.client as { send?: unknown }).send !== 'function') {
      throw new GatewayConfigError('bedrockGuardrail.client', 'expected a BedrockRuntimeClient.');
    }
    const conflicting = CLIENT_OPTIONS.find((key) => given[key] !== undefined);
    if (conflicting) throw new GatewayConfigError(`bedrockGuardrail.${conflicting}`, 'cannot be combined with client; configure the client instead.');
    // The checker's commands come from the SDK.
    bedrockSdk();
    return given.client;
  }
  if (given.region === undefined) throw new GatewayConfigError('bedrockGuardrail.region', 'is required unless a client is given.');
  const staticCredentials = typeof given.credentials === 'object' ? given.credentials : undefined;
  registerSecret(staticCredentials?.secretAccessKey);
  registerSecret(staticCredentials?.sessionToken);
  const maxAttempts = given.maxAttempts ?? 2;
  const { BedrockRuntimeClient, NodeHttpHandler } = bedrockSdk();
  return new BedrockRuntimeClient({
    region: given.region,
    ...(given.endpoint === undefined ? {} : { endpoint: given.endpoint }),
    // A copy of static credentials: the SDK tags the object it is given (`$source`) on first use, which would
    // change the caller's config (and fail its validation when the same config builds a gateway again).
    ...(given.credentials === undefined ? {} : { credentials: typeof given.credentials === 'function' ? given.credentials : { ...given.credentials } }),
    maxAttempts,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: given.connectionTimeoutMs ?? 1000,
      // Each attempt gets its share of the budget, so a stuck first attempt leaves time for a retry.
      requestTimeout: Math.ceil((given.timeoutMs ?? DEFAULT_TIMEOUT_MS) / maxAttempts),
      throwOnRequestTimeout: true,
    }),
  });
}

/**
 * Creates the guardrail middleware. Mount it after `gatewayContext()` and before the router. It checks the
 * input itself (`pre_call`) and registers the `during_call` and `post_call` checks on the request context
 * for the router to run.
 */
export function bedrockGuardrail(options: BedrockGuardrailOptions): RequestHandler {
  assertCalledAsFactory(options, 'bedrockGuardrail');
  const config = parseGuardrailOptions(options);
  const { checker } = config;
  const duringCall = config.hooks.has('during_call') ? duringCallHook(config) : undefined;
  const postCall = config.hooks.has('post_call')
    ? outputHook(checker, { ...config.streaming, onMask: config.onIntervention === 'mask' ? 'apply' : 'block' })
    : undefined;
  const preCall = config.hooks.has('pre_call');
  const checksInput = preCall || duringCall !== undefined;
  const contextOf = contextRequirement('bedrockGuardrail()', config.logger);

  return function llmGatewayBedrockGuardrail(req: Request, res: Response, next: NextFunction): void {
    const ctx = contextOf(req, res);
    if (!ctx) return;
    // The size cap is decided here, before any hook is registered, so an oversized request meets neither
    // a guardrail call nor (with during_call) the model.
    const input = checksInput ? inputTextsOf(config, ctx) : undefined;
    if (input && input.chars > config.maxInputChars) {
      next(tooLarge(input.chars, config.maxInputChars));
      return;
    }
    if (duringCall) ctx.hooks.duringCall.push(duringCall);
    if (postCall) ctx.hooks.output.push(postCall);
    if (!preCall || !input) {
      next();
      return;
    }
    checkInput(config, ctx, input, ctx.signal, config.onIntervention === 'mask' ? 'apply' : 'block').then(() => next(), next);
  };
}

function tooLarge(chars: number, max: number): RequestTooLargeError {
  return new RequestTooLargeError(`Request text too large for the input guardrail: ${chars} characters to check, at most ${max} allowed.`, {
    param: 'messages',
  });
}

function duringCallHook(config: ResolvedGuardrailConfig): InputHook {
  const onMask: MaskHandling = config.onIntervention === 'mask' && config.maskedInputDuringCall === 'allow' ? 'pass' : 'block';
  // The body as it is when the model call starts (an earlier guardrail may have masked it since).
  return (ctx, signal) => checkInput(config, ctx, inputTextsOf(config, ctx), signal, onMask);
}

/** The request texts the input check covers: message texts, and the definitions the model also reads. */
interface InputTexts {
  messages: InputSpot[];
  definitions: DefinitionSpot[];
  /** Characters of all of them, as counted against `maxInputChars`. */
  chars: number;
}

function inputTextsOf(config: ResolvedGuardrailConfig, ctx: GatewayContext): InputTexts {
  const messages = inputSpotsOf(ctx.body.messages, config.roles);
  const definitions = definitionSpotsOf(ctx.body, config.roles);
  let chars = 0;
  for (const spot of messages) chars += spot.text.length;
  for (const spot of definitions) chars += spot.text.length;
  return { messages, definitions, chars };
}

/**
 * Checks the request's texts (one content block per message text; the short definition texts packed
 * into blocks of one text unit) within ApplyGuardrail's limits, and applies the masked texts. A masking
 * that cannot be put in place (an identifier, a pack that cannot be lined up) is refused like a block.
 */
async function checkInput(config: ResolvedGuardrailConfig, ctx: GatewayContext, input: InputTexts, signal: AbortSignal, onMask: MaskHandling): Promise<void> {
  const { messages, definitions } = input;
  if (messages.length === 0 && definitions.length === 0) return;
  const packs = packTexts(definitions.map((d) => d.text));
  const texts = [...messages.map((s) => s.text), ...packs.map((p) => p.text)];
  const verdict = await checkTexts(config.checker, ctx, 'INPUT', texts, signal, onMask);
  if (verdict.kind !== 'mask') return;
  const maskedDefinitions = unpackAll(packs, verdict.outputs.slice(messages.length), verdict.replacements);
  const body = maskedDefinitions && withMaskedDefinitions(ctx.body, definitions, maskedDefinitions);
  if (!body) throw config.checker.refuseMask(ctx, 'INPUT');
  ctx.body = messages.length === 0 ? body : { ...body, messages: maskedMessages(body.messages, messages, verdict.outputs) };
}

/** Each packed text's masked text; `undefined` when a pack's masking cannot be lined up with it. */
function unpackAll(packs: readonly Pack[], outputs: readonly string[], replacements: readonly Replacement[]): string[] | undefined {
  const texts: string[] = [];
  for (const [i, pack] of packs.entries()) {
    const masked = outputs[i] ?? pack.text;
    if (masked === pack.text) {
      for (const m of pack.members) texts.push(pack.text.slice(m.start, m.end));
      continue;
    }
    if (pack.members.length === 1) {
      texts.push(masked);
      continue;
    }
    const spans = maskedSpans(pack.text, masked, replacements);
    if (!spans) return undefined;
    texts.push(...unpack(pack, masked, spans));
  }
  return texts;
}

export { HEADER_GUARDRAIL, HEADER_GUARDRAIL_UNITS, guardrailHeaders } from './guardrail/headers.js';
