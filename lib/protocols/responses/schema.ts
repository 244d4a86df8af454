/**
 * JSON Schema (draft-07, for ajv) of the stateless subset of OpenAI's `POST /v1/responses` body that the
 * gateway carries to the chat shape. It checks the shapes the mapping reads; the rules JSON Schema would
 * word badly (a stored `file_id`, a hosted tool, `previous_response_id`) are checked in `request.ts`, each
 * with its own message. Unknown top-level fields pass the schema and are not forwarded (see `request.ts`).
 */
import { discriminated, discriminatedList, MAX_TOKEN_LIMIT } from '../../request-schema.js';

const text = { type: 'string' } as const;

const inputText = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'input_text' }, text },
} as const;

const outputText = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'output_text' }, text },
} as const;

const refusal = {
  type: 'object',
  required: ['type', 'refusal'],
  properties: { type: { const: 'refusal' }, refusal: text },
} as const;

/** `image_url` or `file_id` (refused in `request.ts`: the gateway holds no files). */
const inputImage = {
  type: 'object',
  required: ['type'],
  properties: {
    type: { const: 'input_image' },
    image_url: { type: ['string', 'null'] },
    file_id: { type: ['string', 'null'] },
    detail: { enum: ['auto', 'low', 'high'] },
  },
} as const;

/** `file_data` (+ `filename`); `file_id` and `file_url` are refused in `request.ts`. */
const inputFile = {
  type: 'object',
  required: ['type'],
  properties: {
    type: { const: 'input_file' },
    file_data: text,
    filename: text,
    file_id: { type: ['string', 'null'] },
    file_url: text,
  },
} as const;

const partsOf = discriminatedList;

const message = (roles: readonly string[], parts: object) =>
  ({
    type: 'object',
    required: ['role', 'content'],
    properties: { role: { enum: roles }, content: { anyOf: [text, parts] } },
  }) as const;

/** A message item (`type: "message"` or no `type`), discriminated by `role`. */
const messageItem = discriminated('role', [
  message(['user'], partsOf(inputText, inputImage, inputFile)),
  message(['system', 'developer'], partsOf(inputText)),
  // History replayed from `response.output` carries `output_text`/`refusal`; hand-written history often `input_text`.
  message(['assistant'], partsOf(outputText, inputText, refusal)),
]);

const functionCallItem = {
  type: 'object',
  required: ['call_id', 'name', 'arguments'],
  properties: {
    call_id: { type: 'string', minLength: 1 },
    name: { type: 'string', minLength: 1 },
    arguments: text,
    id: text,
  },
} as const;

const functionCallOutputItem = {
  type: 'object',
  required: ['call_id', 'output'],
  properties: {
    call_id: { type: 'string', minLength: 1 },
    output: { anyOf: [text, partsOf(inputText)] },
  },
} as const;

/** What the mapping turns into chat messages (`reasoning` items are dropped: the chat shape has no place for them). */
export const INPUT_ITEM_TYPES = ['message', 'function_call', 'function_call_output', 'reasoning'] as const;

/** `if type is T then S`. */
const whenType = (type: string, then: object) => ({ if: { required: ['type'], properties: { type: { const: type } } }, then }) as const;

const inputItem = {
  type: 'object',
  properties: { type: { enum: INPUT_ITEM_TYPES } },
  allOf: [
    // A message item may leave `type` out (a `const` on an absent property holds).
    { if: { properties: { type: { const: 'message' } } }, then: messageItem },
    whenType('function_call', functionCallItem),
    whenType('function_call_output', functionCallOutputItem),
  ],
} as const;

const nullableNumber = (minimum: number, maximum: number) => ({ type: ['number', 'null'], minimum, maximum }) as const;

/** A function tool; other tool types pass the schema and are refused by name in `request.ts`. */
const tool = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string' } },
  if: { properties: { type: { const: 'function' } } },
  then: {
    required: ['name'],
    properties: {
      name: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,64}$' },
      description: { type: ['string', 'null'] },
      parameters: { type: ['object', 'null'] },
      strict: { type: ['boolean', 'null'] },
    },
  },
} as const;

const textFormat = {
  type: 'object',
  required: ['type'],
  properties: { type: { enum: ['text', 'json_object', 'json_schema'] } },
  if: { properties: { type: { const: 'json_schema' } } },
  then: {
    required: ['name', 'schema'],
    properties: {
      name: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,64}$' },
      schema: { type: 'object' },
      description: text,
      strict: { type: ['boolean', 'null'] },
    },
  },
} as const;

export const responsesRequestSchema = {
  $id: 'express-llm-gateway/responses-request',
  type: 'object',
  required: ['model', 'input'],
  properties: {
    model: { type: 'string', minLength: 1 },
    input: { anyOf: [text, { type: 'array', minItems: 1, items: inputItem }] },
    instructions: { type: ['string', 'null'] },
    tools: { type: 'array', items: tool },
    tool_choice: {
      anyOf: [
        { enum: ['none', 'auto', 'required'] },
        {
          type: 'object',
          required: ['type'],
          properties: { type: { const: 'function' }, name: { type: 'string', minLength: 1 } },
          if: { properties: { type: { const: 'function' } } },
          then: { required: ['name'] },
        },
      ],
    },
    parallel_tool_calls: { type: ['boolean', 'null'] },
    max_output_tokens: { type: ['integer', 'null'], minimum: 1, maximum: MAX_TOKEN_LIMIT },
    temperature: nullableNumber(0, 2),
    top_p: nullableNumber(0, 1),
    text: {
      type: ['object', 'null'],
      properties: { format: textFormat, verbosity: { enum: ['low', 'medium', 'high', null] } },
    },
    reasoning: {
      type: ['object', 'null'],
      properties: { effort: { enum: ['none', 'minimal', 'low', 'medium', 'high', 'xhigh', null] } },
    },
    stream: { type: ['boolean', 'null'] },
    stream_options: { type: ['object', 'null'] },
    store: { type: ['boolean', 'null'] },
    background: { type: ['boolean', 'null'] },
    user: text,
    metadata: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
    prompt_cache_key: text,
    safety_identifier: text,
    service_tier: text,
  },
} as const;
