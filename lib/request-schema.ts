/**
 * JSON Schema (draft-07, for ajv) of OpenAI's chat-completions request. It checks what the gateway and the
 * providers rely on and lets every other field through untouched (`additionalProperties` stays open),
 * so new OpenAI parameters keep working without a gateway release.
 */

const textPart = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
} as const;

const refusalPart = {
  type: 'object',
  required: ['type', 'refusal'],
  properties: { type: { const: 'refusal' }, refusal: { type: 'string' } },
} as const;

const imagePart = {
  type: 'object',
  required: ['type', 'image_url'],
  properties: {
    type: { const: 'image_url' },
    image_url: {
      type: 'object',
      required: ['url'],
      properties: { url: { type: 'string', minLength: 1 }, detail: { enum: ['auto', 'low', 'high'] } },
    },
  },
} as const;

const audioPart = {
  type: 'object',
  required: ['type', 'input_audio'],
  properties: {
    type: { const: 'input_audio' },
    input_audio: {
      type: 'object',
      required: ['data', 'format'],
      properties: { data: { type: 'string' }, format: { type: 'string' } },
    },
  },
} as const;

const filePart = {
  type: 'object',
  required: ['type', 'file'],
  properties: {
    type: { const: 'file' },
    file: {
      type: 'object',
      properties: { file_data: { type: 'string' }, file_id: { type: 'string' }, filename: { type: 'string' } },
    },
  },
} as const;

/**
 * An array of objects discriminated by `type` (content parts, content blocks), so an error names the element's
 * own field rather than every alternative. Shared by the protocols' schemas.
 */
export function discriminatedList(...variants: readonly object[]) {
  return { type: 'array', items: discriminated('type', variants) } as const;
}

/**
 * An object that is one of `variants`, told apart by its `property` (ajv's discriminator), so an error names
 * the variant's own field (`messages[1].content`) rather than failing every alternative at once.
 */
export function discriminated<P extends string>(property: P, variants: readonly object[]) {
  return {
    type: 'object',
    required: [property],
    properties: { [property]: { type: 'string' } } as Record<P, { type: 'string' }>,
    discriminator: { propertyName: property },
    oneOf: variants,
  } as const;
}

const partsOf = discriminatedList;

const textParts = partsOf(textPart);

const toolCall = {
  type: 'object',
  required: ['id', 'type', 'function'],
  properties: {
    id: { type: 'string' },
    type: { const: 'function' },
    function: {
      type: 'object',
      required: ['name', 'arguments'],
      properties: { name: { type: 'string', minLength: 1 }, arguments: { type: 'string' } },
    },
  },
} as const;

const name = { type: 'string' } as const;

const systemMessage = {
  type: 'object',
  required: ['role', 'content'],
  properties: { role: { enum: ['system', 'developer'] }, content: { anyOf: [{ type: 'string' }, textParts] }, name },
} as const;

const userMessage = {
  type: 'object',
  required: ['role', 'content'],
  properties: {
    role: { const: 'user' },
    content: { anyOf: [{ type: 'string' }, partsOf(textPart, imagePart, audioPart, filePart)] },
    name,
  },
} as const;

const assistantMessage = {
  type: 'object',
  required: ['role'],
  properties: {
    role: { const: 'assistant' },
    content: { anyOf: [{ type: 'string' }, { type: 'null' }, partsOf(textPart, refusalPart)] },
    refusal: { type: ['string', 'null'] },
    tool_calls: { type: 'array', items: toolCall },
    function_call: {
      type: ['object', 'null'],
      required: ['name', 'arguments'],
      properties: { name: { type: 'string' }, arguments: { type: 'string' } },
    },
    name,
  },
} as const;

const toolMessage = {
  type: 'object',
  required: ['role', 'content', 'tool_call_id'],
  properties: {
    role: { const: 'tool' },
    content: { anyOf: [{ type: 'string' }, textParts] },
    tool_call_id: { type: 'string', minLength: 1 },
  },
} as const;

/** Deprecated by OpenAI but still sent by older clients. */
const functionMessage = {
  type: 'object',
  required: ['role', 'name'],
  properties: { role: { const: 'function' }, content: { type: ['string', 'null'] }, name: { type: 'string' } },
} as const;

export const MESSAGE_ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'] as const;

const nullableNumber = (minimum: number, maximum: number) => ({ type: ['number', 'null'], minimum, maximum }) as const;
/**
 * Largest token limit accepted: the int32 maximum, which every provider's API (and SDKs typed with 32-bit
 * integers) can take. Any real limit is far below it; `1e20` is a valid JSON integer that is not.
 */
export const MAX_TOKEN_LIMIT = 2_147_483_647;
const tokenLimit = { type: ['integer', 'null'], minimum: 1, maximum: MAX_TOKEN_LIMIT } as const;

export const chatCompletionRequestSchema = {
  $id: 'express-llm-gateway/chat-completion-request',
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    model: { type: 'string', minLength: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      items: discriminated('role', [systemMessage, userMessage, assistantMessage, toolMessage, functionMessage]),
    },
    stream: { type: ['boolean', 'null'] },
    stream_options: {
      type: ['object', 'null'],
      properties: { include_usage: { type: 'boolean' } },
    },
    n: { type: ['integer', 'null'], minimum: 1, maximum: 128 },
    temperature: nullableNumber(0, 2),
    top_p: nullableNumber(0, 1),
    presence_penalty: nullableNumber(-2, 2),
    frequency_penalty: nullableNumber(-2, 2),
    max_tokens: tokenLimit,
    max_completion_tokens: tokenLimit,
    seed: { type: ['integer', 'null'] },
    tools: {
      type: 'array',
      items: {
        type: 'object',
        required: ['type', 'function'],
        properties: {
          type: { const: 'function' },
          function: {
            type: 'object',
            required: ['name'],
            properties: {
              name: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,64}$' },
              description: { type: 'string' },
              parameters: { type: 'object' },
              strict: { type: ['boolean', 'null'] },
            },
          },
        },
      },
    },
    tool_choice: {
      anyOf: [
        { enum: ['none', 'auto', 'required'] },
        {
          type: 'object',
          required: ['type', 'function'],
          properties: {
            type: { const: 'function' },
            function: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
          },
        },
      ],
    },
    parallel_tool_calls: { type: 'boolean' },
    response_format: {
      type: 'object',
      required: ['type'],
      properties: {
        type: { enum: ['text', 'json_object', 'json_schema'] },
        // OpenAI's spec requires `name` only; `schema` is optional there, but must be an object when sent.
        json_schema: {
          type: 'object',
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1 },
            description: { type: 'string' },
            schema: { type: 'object' },
            strict: { type: ['boolean', 'null'] },
          },
        },
      },
      // `type: 'json_schema'` without its `json_schema` object asks for structured output with no structure.
      if: { required: ['type'], properties: { type: { const: 'json_schema' } } },
      then: { required: ['json_schema'] },
    },
    stop: {
      anyOf: [{ type: 'string' }, { type: 'null' }, { type: 'array', maxItems: 4, items: { type: 'string' } }],
    },
    user: { type: 'string' },
    metadata: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    logit_bias: { type: ['object', 'null'], additionalProperties: { type: 'number' } },
  },
} as const;
