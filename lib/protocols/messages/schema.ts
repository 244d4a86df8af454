/**
 * JSON Schema (draft-07, for ajv) of the part of Anthropic's `POST /v1/messages` body that the gateway
 * carries to the chat shape. It checks the shapes the mapping reads; the rules JSON Schema would word badly
 * (`document` blocks, server tools, `mcp_servers`) are checked in `request.ts`, each with its own message.
 * Unknown fields pass the schema and are not forwarded (see `request.ts`).
 */
import { discriminated, discriminatedList, MAX_TOKEN_LIMIT } from '../../request-schema.js';

const text = { type: 'string' } as const;
const nonEmpty = { type: 'string', minLength: 1 } as const;

/** A cache breakpoint (`{ type: 'ephemeral', ttl? }`), kept for Anthropic deployments as written; `null` is none. */
const cacheControl = { anyOf: [{ type: 'object', required: ['type'], properties: { type: text } }, { type: 'null' }] } as const;

const textBlock = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text, cache_control: cacheControl },
} as const;

/** The source of an image, discriminated by its own `type`: inline base64 or a URL (`file` sources are not carried). */
const imageSource = discriminated('type', [
  {
    type: 'object',
    required: ['type', 'media_type', 'data'],
    properties: {
      type: { const: 'base64' },
      media_type: { enum: ['image/jpeg', 'image/png', 'image/gif', 'image/webp'] },
      data: nonEmpty,
    },
  },
  {
    type: 'object',
    required: ['type', 'url'],
    properties: { type: { const: 'url' }, url: nonEmpty },
  },
]);

const imageBlock = {
  type: 'object',
  required: ['type', 'source'],
  properties: { type: { const: 'image' }, source: imageSource, cache_control: cacheControl },
} as const;

/** Refused in `request.ts` with its own message (the chat shape has no document part every provider takes). */
const documentBlock = {
  type: 'object',
  required: ['type'],
  properties: { type: { const: 'document' } },
} as const;

const blocksOf = discriminatedList;

const toolResultBlock = {
  type: 'object',
  required: ['type', 'tool_use_id'],
  properties: {
    type: { const: 'tool_result' },
    tool_use_id: nonEmpty,
    content: { anyOf: [text, blocksOf(textBlock, imageBlock)] },
    is_error: { type: 'boolean' },
    cache_control: cacheControl,
  },
} as const;

const toolUseBlock = {
  type: 'object',
  required: ['type', 'id', 'name', 'input'],
  properties: { type: { const: 'tool_use' }, id: nonEmpty, name: nonEmpty, input: { type: 'object' }, cache_control: cacheControl },
} as const;

/**
 * Thinking blocks of earlier turns, as Anthropic answered them: kept in the assistant message's extras for
 * Anthropic deployments (which need them back, signature intact, in a tool-use loop), unseen by others.
 */
const thinkingBlock = {
  type: 'object',
  required: ['type', 'thinking', 'signature'],
  properties: { type: { const: 'thinking' }, thinking: text, signature: text },
} as const;
const redactedThinkingBlock = {
  type: 'object',
  required: ['type', 'data'],
  properties: { type: { const: 'redacted_thinking' }, data: text },
} as const;

const userMessage = {
  type: 'object',
  required: ['role', 'content'],
  properties: {
    role: { const: 'user' },
    content: { anyOf: [text, blocksOf(textBlock, imageBlock, toolResultBlock, documentBlock)] },
  },
} as const;

const assistantMessage = {
  type: 'object',
  required: ['role', 'content'],
  properties: {
    role: { const: 'assistant' },
    content: { anyOf: [text, blocksOf(textBlock, toolUseBlock, thinkingBlock, redactedThinkingBlock)] },
  },
} as const;

/** A custom tool (no `type`, or `type: "custom"`) needs a name and an input schema; other types are server tools, refused in `request.ts`. */
const tool = {
  type: 'object',
  properties: { type: text },
  if: { properties: { type: { const: 'custom' } } },
  then: {
    required: ['name', 'input_schema'],
    properties: {
      // Anthropic's rule (docs: Define tools), which is also the chat path's.
      name: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,64}$' },
      description: text,
      input_schema: { type: 'object' },
      cache_control: cacheControl,
    },
  },
} as const;

const parallelFlag = { disable_parallel_tool_use: { type: 'boolean' } } as const;

const toolChoice = discriminated('type', [
  { type: 'object', required: ['type'], properties: { type: { const: 'auto' }, ...parallelFlag } },
  { type: 'object', required: ['type'], properties: { type: { const: 'any' }, ...parallelFlag } },
  { type: 'object', required: ['type', 'name'], properties: { type: { const: 'tool' }, name: nonEmpty, ...parallelFlag } },
  { type: 'object', required: ['type'], properties: { type: { const: 'none' } } },
]);

export const messagesRequestSchema = {
  $id: 'express-llm-gateway/messages-request',
  type: 'object',
  required: ['model', 'max_tokens', 'messages'],
  properties: {
    model: nonEmpty,
    max_tokens: { type: 'integer', minimum: 1, maximum: MAX_TOKEN_LIMIT },
    messages: {
      type: 'array',
      minItems: 1,
      items: discriminated('role', [userMessage, assistantMessage]),
    },
    system: { anyOf: [text, blocksOf(textBlock)] },
    // Anthropic sets no limit, but they become the chat request's `stop`, which holds at most 4 (OpenAI's
    // limit, the chat path's): more are refused, as dropping some would let the answer run past them.
    stop_sequences: { type: 'array', maxItems: 4, items: text },
    temperature: { type: 'number', minimum: 0, maximum: 1 },
    top_p: { type: 'number', minimum: 0, maximum: 1 },
    top_k: { type: 'integer', minimum: 0 },
    tools: { type: 'array', items: tool },
    tool_choice: toolChoice,
    metadata: { type: 'object', properties: { user_id: { type: ['string', 'null'] } } },
    stream: { type: 'boolean' },
    thinking: { type: 'object', required: ['type'], properties: { type: text, budget_tokens: { type: 'integer', minimum: 0 } } },
    mcp_servers: { type: 'array' },
  },
} as const;
