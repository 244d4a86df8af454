/**
 * Validation of the chat-completions body. The ajv validator is compiled once, when this module is first
 * used by a factory; per request it is one call. A failure becomes a `BadRequestError` whose message and
 * `param` name the offending field the way clients write it (`messages[1].content[0].image_url.url`).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { BadRequestError } from './errors.js';
import { chatCompletionRequestSchema } from './request-schema.js';
import type { ChatCompletionRequest, ChatMessage } from './types.js';

/**
 * A request validator compiled once, on first call (a factory calls it at start-up, not per request), with the
 * options every request schema of the gateway uses. Shared by the chat path and the protocols.
 */
export function lazyValidator<T>(schema: object): () => ValidateFunction<T> {
  let validate: ValidateFunction<T> | undefined;
  return () => {
    // `verbose` keeps the failing sub-schema on each error, which is how a discriminator error can list the
    // allowed values. `strict: false` because the schemas deliberately leave unknown fields open.
    validate ??= new Ajv({ discriminator: true, verbose: true, strict: false, allErrors: false }).compile<T>(schema);
    return validate;
  };
}

const chatValidator = lazyValidator<ChatCompletionRequest>(chatCompletionRequestSchema);

/** Returns the shared compiled validator, compiling it on first use (at factory time, not per request). */
export function compileRequestValidator(): ValidateFunction<ChatCompletionRequest> {
  return chatValidator();
}

/**
 * Deepest nesting of arrays/objects accepted anywhere in the body (the body itself is level 1). Unknown
 * fields pass through to the provider, and `JSON.stringify` (the upstream body), `structuredClone` (masking)
 * and friends recurse: a few thousand levels (a ~10 KB body) overflow the stack, which would be a 500.
 * Real requests (tool schemas included) stay far below this.
 */
export const MAX_BODY_NESTING = 100;

/** Validates a parsed body; returns it typed, or throws a `BadRequestError` naming the field. */
export function validateChatCompletionRequest(
  validate: ValidateFunction<ChatCompletionRequest>,
  body: unknown,
): ChatCompletionRequest {
  if (validate(body)) {
    const tooDeep = fieldNestedTooDeeply(body);
    if (tooDeep !== undefined) throw nestedTooDeeplyError(tooDeep);
    checkBeyondSchema(body);
    return body;
  }
  throw describeValidationErrors(validate.errors ?? []);
}

/**
 * The rules JSON Schema would word badly (its `not`/`anyOf` errors name no field a person recognises), checked
 * in code after ajv, with one clear message each.
 */
function checkBeyondSchema(body: ChatCompletionRequest): void {
  checkModelName(body.model);
  body.messages.forEach((message, i) => {
    if (message.role === 'assistant' && !assistantSaysSomething(message)) {
      throw new BadRequestError(`Invalid request: 'messages[${i}].content' is required for an assistant message without tool_calls.`, {
        param: `messages[${i}].content`,
      });
    }
  });
}

/**
 * A wildcard deployment (`model: '*'`) puts the client's model into the upstream URL (Azure's deployment,
 * Bedrock's model id). Encoding makes every other name one path segment, but `.` and `..` are segments that
 * URL normalization resolves, and that would move the request outside the deployment's path. Every inbound
 * protocol checks its `model` with this.
 */
export function checkModelName(model: string): void {
  if (model === '.' || model === '..') {
    throw new BadRequestError(`Invalid request: 'model' must be a model name, not '${model}'.`, { param: 'model' });
  }
}

/**
 * OpenAI: an assistant message's `content` is "required unless `tool_calls` or `function_call` is
 * specified"; a `refusal` is what the assistant said too. An empty list of parts or of tool calls says nothing.
 */
function assistantSaysSomething(message: ChatMessage): boolean {
  const { content, tool_calls: toolCalls, function_call: functionCall, refusal } = message;
  return (
    typeof content === 'string' ||
    (Array.isArray(content) && content.length > 0) ||
    (Array.isArray(toolCalls) && toolCalls.length > 0) ||
    (functionCall !== undefined && functionCall !== null) ||
    typeof refusal === 'string'
  );
}

/**
 * The top-level field holding a value nested deeper than `limit` levels (the body is level 1), if any, as the
 * chat path names it: `[0]` for a field named `0`, `body` for a field named ''. The walk recurses at most
 * `limit` levels (it stops descending there), so no body can overflow the stack, and it allocates nothing
 * for a body within the bound. The other inbound protocols pass a lower `limit` when their mapping nests a
 * value deeper than the client wrote it (see lib/protocols).
 */
export function fieldNestedTooDeeply(body: object, limit: number = MAX_BODY_NESTING): string | undefined {
  for (const field in body) {
    if (!Object.hasOwn(body, field)) continue;
    const value = (body as Record<string, unknown>)[field];
    if (value !== null && typeof value === 'object' && nestedTooDeeply(value, 2, limit)) return /^\d+$/.test(field) ? `[${field}]` : field || 'body';
  }
  return undefined;
}

/** The 400 for a body whose field `field` (from `fieldNestedTooDeeply`) is nested more than `limit` levels deep. */
export function nestedTooDeeplyError(field: string, limit: number = MAX_BODY_NESTING): BadRequestError {
  const what = field === 'body' ? 'Request body: nested' : `Invalid request: '${field}' is nested`;
  return new BadRequestError(`${what} more than ${limit} levels deep.`, { param: field });
}

/** Whether `node`, at nesting level `depth`, holds anything deeper than `limit`. */
function nestedTooDeeply(node: object, depth: number, limit: number): boolean {
  if (depth > limit) return true;
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const child: unknown = node[i];
      if (child !== null && typeof child === 'object' && nestedTooDeeply(child, depth + 1, limit)) return true;
    }
    return false;
  }
  for (const key in node) {
    if (!Object.hasOwn(node, key)) continue;
    const child = (node as Record<string, unknown>)[key];
    if (child !== null && typeof child === 'object' && nestedTooDeeply(child, depth + 1, limit)) return true;
  }
  return false;
}

/** Picks the most specific of ajv's errors and words it for a person. */
export function describeValidationErrors(errors: readonly ErrorObject[]): BadRequestError {
  const error = mostSpecificError(errors);
  if (!error) return new BadRequestError('Request body: invalid.', { param: 'body' });
  if (error.instancePath === '' && error.keyword === 'type') {
    return new BadRequestError('Request body: must be a JSON object.', { param: 'body' });
  }
  const field = fieldOf(error);
  return new BadRequestError(`Invalid request: '${field}' ${explain(error, errors)}.`, { param: field });
}

function mostSpecificError(errors: readonly ErrorObject[]): ErrorObject | undefined {
  let best: ErrorObject | undefined;
  let bestDepth = -1;
  for (const error of errors) {
    if (error.keyword === 'anyOf' || error.keyword === 'oneOf') continue;
    // Deeper is more specific; at equal depth a non-type error wins, because it comes from the alternative
    // whose type matched (`stop: [5 strings]` is "at most 4 items", not "must be a string").
    const depth = depthOf(error) * 2 + (error.keyword === 'type' ? 0 : 1);
    if (depth > bestDepth) {
      best = error;
      bestDepth = depth;
    }
  }
  return best;
}

function depthOf(error: ErrorObject): number {
  const segments = error.instancePath === '' ? 0 : error.instancePath.split('/').length - 1;
  return error.keyword === 'required' || isDiscriminatorTagError(error) ? segments + 1 : segments;
}

function isDiscriminatorTagError(error: ErrorObject): boolean {
  return error.keyword === 'discriminator';
}

/** `/messages/0/content` (+ a missing or tag property) → `messages[0].content`. */
function fieldOf(error: ErrorObject): string {
  const segments = error.instancePath.split('/').slice(1).map(unescapePointer);
  if (error.keyword === 'required') segments.push(String(error.params['missingProperty']));
  if (isDiscriminatorTagError(error)) segments.push(String(error.params['tag']));
  let out = '';
  for (const segment of segments) {
    out += /^\d+$/.test(segment) ? `[${segment}]` : out === '' ? segment : `.${segment}`;
  }
  return out || 'body';
}

function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

function explain(error: ErrorObject, all: readonly ErrorObject[]): string {
  switch (error.keyword) {
    case 'required':
      return 'is required';
    case 'discriminator':
      return explainDiscriminator(error);
    case 'type':
      return `must be ${typesAtPath(error, all)}`;
    case 'const':
      return `must be ${JSON.stringify(error.params['allowedValue'])}`;
    case 'enum':
      return `must be one of ${(error.params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'minItems':
      return `must have at least ${String(error.params['limit'])} item(s)`;
    case 'maxItems':
      return `must have at most ${String(error.params['limit'])} item(s)`;
    case 'minLength':
      return 'must not be empty';
    case 'minimum':
    case 'maximum':
      return `must be ${error.keyword === 'minimum' ? '>=' : '<='} ${String(error.params['limit'])}`;
    case 'pattern':
      return `must match ${String(error.params['pattern'])}`;
    default:
      return error.message ?? 'is invalid';
  }
}

/** For `anyOf` alternatives (`content: string | parts[]`) list every accepted type, not just the first. */
function typesAtPath(error: ErrorObject, all: readonly ErrorObject[]): string {
  const types = new Set<string>();
  for (const e of all) {
    if (e.keyword === 'type' && e.instancePath === error.instancePath) {
      for (const t of ([] as string[]).concat(e.params['type'] as string | string[])) types.add(t);
    }
  }
  const list = [...types].map((t) => (t === 'null' ? 'null' : `${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t}`));
  return list.length <= 1 ? (list[0] ?? 'of another type') : `${list.slice(0, -1).join(', ')} or ${list.at(-1)}`;
}

function explainDiscriminator(error: ErrorObject): string {
  const tag = String(error.params['tag']);
  if (error.params['error'] === 'tag') return 'must be a string';
  const branches = ((error.parentSchema as { oneOf?: { properties?: Record<string, { const?: string; enum?: string[] }> }[] })
    ?.oneOf ?? []) as { properties?: Record<string, { const?: string; enum?: string[] }> }[];
  const allowed = branches.flatMap((b) => {
    const p = b.properties?.[tag];
    return p?.const !== undefined ? [p.const] : (p?.enum ?? []);
  });
  const got = error.params['tagValue'];
  return `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')} (got ${JSON.stringify(got)})`;
}
