/**
 * Shared option handling for the factories: bad configuration throws when the factory runs, with a coded
 * error that names the field and says what is expected.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import bytes from 'bytes';

/** Thrown by a factory for bad options. `field` is the option's path (`router.retries.maxAttempts`). */
export class GatewayConfigError extends Error {
  readonly code: string;
  readonly field: string;
  constructor(field: string, expected: string, code = 'ERR_LLM_GATEWAY_CONFIG') {
    super(`express-llm-gateway: invalid option '${field}': ${expected}`);
    this.name = 'GatewayConfigError';
    this.code = code;
    this.field = field;
  }
}

/**
 * Catches `app.use(createX)` written without the call: Express then hands the factory a request as its
 * "options". Failing here, at start-up, beats a confusing error on the first request.
 */
export function assertCalledAsFactory(options: unknown, factory: string): void {
  if (
    typeof options === 'object' &&
    options !== null &&
    'method' in options &&
    'url' in options &&
    'headers' in options
  ) {
    throw new GatewayConfigError(
      factory,
      `it was mounted without being called. Write app.use(${factory}()) instead of app.use(${factory}).`,
      'ERR_LLM_GATEWAY_NOT_CALLED',
    );
  }
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new GatewayConfigError(factory, 'options must be an object.');
  }
}

/** A copy of `options` without its `undefined` values, so defaults apply to them. Never mutates the input. */
export function definedOnly<T extends object>(options: T | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (!options) return out;
  for (const key of Object.keys(options) as (keyof T)[]) {
    if (options[key] !== undefined) out[key] = options[key];
  }
  return out;
}

/** Parses a size (`1048576`, `'1mb'`, `'512kb'`) to bytes, or throws naming the field. */
export function parseSize(value: number | string, field: string): number {
  const parsed = typeof value === 'number' ? value : bytes.parse(value);
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed <= 0) {
    throw new GatewayConfigError(field, `expected a positive size in bytes or a string like '1mb', got ${JSON.stringify(value)}.`);
  }
  return Math.floor(parsed);
}

/**
 * Compiles a JSON Schema for an options object once; the returned function throws naming the first bad
 * field. `coerceTypes` turns scalar strings into the numbers and booleans the schema asks for (in place):
 * for config files, where `${ENV}` substitution can only produce strings.
 */
export function optionsValidator(schema: object, prefix = '', { coerceTypes = false } = {}): (options: unknown) => void {
  // Compiled on first use: importing the package should not pay for the schemas of factories it never calls.
  let validate: ValidateFunction | undefined;
  return (options) => {
    validate ??= new Ajv({ allErrors: false, strict: false, coerceTypes }).compile(schema);
    if (validate(options)) return;
    const error = validate.errors?.[0];
    if (error) throw configErrorFrom(error, prefix);
  };
}

function configErrorFrom(error: ErrorObject, prefix: string): GatewayConfigError {
  const segments = error.instancePath.split('/').slice(1);
  if (error.keyword === 'required') segments.push(String(error.params['missingProperty']));
  if (error.keyword === 'additionalProperties') segments.push(String(error.params['additionalProperty']));
  let field = prefix;
  for (const s of segments) field += /^\d+$/.test(s) ? `[${s}]` : field === '' ? s : `.${s}`;
  const expected =
    error.keyword === 'additionalProperties'
      ? 'unknown option (check the spelling).'
      : error.keyword === 'required'
        ? 'is required.'
        : `${error.message ?? 'is invalid'}${error.keyword === 'enum' ? ` (${(error.params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')})` : ''}.`;
  return new GatewayConfigError(field || 'options', expected);
}
