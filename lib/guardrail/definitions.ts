/**
 * The request text the model sees outside message content: message names, tool and legacy function
 * definitions (names, descriptions, the texts of their parameter schemas) and `response_format`'s JSON
 * schema. The input guardrail checks these next to the message texts (`extract.ts`).
 *
 * Not text and not checked: images, audio and files. Not shown to the model and not checked: `user`,
 * `metadata`, `stop`, `tool_choice` (it names a tool checked with its definition), schema keywords that
 * are not prose or names (`type`, `pattern`, `format`, `default`, `examples`, `$ref`, …) and the keys of
 * `$defs` / `definitions` / `patternProperties`.
 */
import type { ChatCompletionRequest, ChatRole } from '../types.js';

/**
 * How a definition text takes a masked value:
 * - `text` (descriptions, titles): replaced in place;
 * - `label` (an optional participant `name` of a message): removed. A masked value such as `{EMAIL}` is
 *   not a valid name (OpenAI wants `^[a-zA-Z0-9_-]+$`), and the field is optional, so dropping it keeps
 *   the request valid and leaks nothing;
 * - `identifier` (tool, function and schema names, property names, enum and const values, a function
 *   message's name, tool-call names): refused like a block. Renaming one would break what refers to it
 *   (`tool_choice`, tool calls in the history, the app's handling of the model's calls, the answer's shape).
 */
export type DefinitionKind = 'text' | 'label' | 'identifier';

export interface DefinitionSpot {
  kind: DefinitionKind;
  /** Where the text is, from the request body's root (for a property name: the property's path). */
  path: readonly (string | number)[];
  text: string;
}

type Path = readonly (string | number)[];
type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function push(out: DefinitionSpot[], kind: DefinitionKind, path: Path, value: unknown): void {
  if (typeof value === 'string' && value !== '') out.push({ kind, path, text: value });
}

/** The definition texts of a request, in a stable order (messages, tools, functions, response format). */
export function definitionSpotsOf(body: ChatCompletionRequest, roles: ReadonlySet<ChatRole>): DefinitionSpot[] {
  const out: DefinitionSpot[] = [];
  body.messages.forEach((message, i) => {
    if (!roles.has(message.role)) return;
    // A function message's `name` is the function it answers (required), not a participant label.
    push(out, message.role === 'function' ? 'identifier' : 'label', ['messages', i, 'name'], message.name);
    const calls: unknown = message.tool_calls;
    if (Array.isArray(calls)) {
      calls.forEach((call: unknown, j) => {
        if (isRecord(call) && isRecord(call['function'])) push(out, 'identifier', ['messages', i, 'tool_calls', j, 'function', 'name'], call['function']['name']);
      });
    }
    const functionCall: unknown = message.function_call;
    if (isRecord(functionCall)) push(out, 'identifier', ['messages', i, 'function_call', 'name'], functionCall['name']);
  });
  const tools: unknown = body.tools;
  if (Array.isArray(tools)) {
    tools.forEach((tool: unknown, i) => {
      if (isRecord(tool)) functionSpots(out, tool['function'], ['tools', i, 'function']);
    });
  }
  // Deprecated by OpenAI, not in the request schema, but passed through to OpenAI-compatible upstreams.
  const functions = body['functions'];
  if (Array.isArray(functions)) functions.forEach((fn: unknown, i) => functionSpots(out, fn, ['functions', i]));
  const format: unknown = body.response_format;
  if (isRecord(format) && isRecord(format['json_schema'])) {
    const jsonSchema = format['json_schema'];
    const at = ['response_format', 'json_schema'];
    push(out, 'identifier', [...at, 'name'], jsonSchema['name']);
    push(out, 'text', [...at, 'description'], jsonSchema['description']);
    schemaSpots(out, jsonSchema['schema'], [...at, 'schema']);
  }
  return out;
}

function functionSpots(out: DefinitionSpot[], fn: unknown, at: Path): void {
  if (!isRecord(fn)) return;
  push(out, 'identifier', [...at, 'name'], fn['name']);
  push(out, 'text', [...at, 'description'], fn['description']);
  schemaSpots(out, fn['parameters'], [...at, 'parameters']);
}

/** Keywords whose value is one subschema. */
const ONE_SCHEMA = [
  'items',
  'additionalItems',
  'additionalProperties',
  'unevaluatedItems',
  'unevaluatedProperties',
  'contains',
  'propertyNames',
  'not',
  'if',
  'then',
  'else',
] as const;
/** Keywords whose value is an array of subschemas (`items` too, in its draft-04 tuple form). */
const SCHEMA_LISTS = ['items', 'prefixItems', 'anyOf', 'oneOf', 'allOf'] as const;
/** Keywords whose value maps names to subschemas (only `properties` names are shown as field names). */
const SCHEMA_MAPS = ['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas'] as const;

/**
 * The texts of a JSON schema, at any depth: `description` and `title` (prose), property names and string
 * `enum` / `const` values (identifiers). Walked with an explicit stack, so a deeply nested schema in a
 * large body cannot overflow the call stack.
 */
function schemaSpots(out: DefinitionSpot[], root: unknown, rootPath: Path): void {
  const stack: { node: unknown; path: Path }[] = [{ node: root, path: rootPath }];
  // Reading order: children are pushed in reverse so the first one is visited first.
  const children: { node: unknown; path: Path }[] = [];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (!isRecord(node)) continue;
    push(out, 'text', [...path, 'title'], node['title']);
    push(out, 'text', [...path, 'description'], node['description']);
    const values = node['enum'];
    if (Array.isArray(values)) values.forEach((value: unknown, k) => push(out, 'identifier', [...path, 'enum', k], value));
    push(out, 'identifier', [...path, 'const'], node['const']);
    children.length = 0;
    for (const key of SCHEMA_MAPS) {
      const map = node[key];
      if (!isRecord(map)) continue;
      for (const [name, child] of Object.entries(map)) {
        if (key === 'properties') push(out, 'identifier', [...path, key, name], name);
        children.push({ node: child, path: [...path, key, name] });
      }
    }
    for (const key of ONE_SCHEMA) if (isRecord(node[key])) children.push({ node: node[key], path: [...path, key] });
    for (const key of SCHEMA_LISTS) {
      const list = node[key];
      if (Array.isArray(list)) list.forEach((child: unknown, k) => children.push({ node: child, path: [...path, key, k] }));
    }
    for (let k = children.length - 1; k >= 0; k -= 1) stack.push(children[k]!);
  }
}

/**
 * The request with the masked definition texts in place: texts replaced, labels removed. `undefined`
 * when an identifier would change (the caller refuses the request). The given body is not modified: each
 * top-level field that changes is copied first.
 */
export function withMaskedDefinitions(
  body: ChatCompletionRequest,
  spots: readonly DefinitionSpot[],
  masked: readonly string[],
): ChatCompletionRequest | undefined {
  const changed = spots.filter((spot, i) => masked[i] !== undefined && masked[i] !== spot.text);
  if (changed.length === 0) return body;
  if (changed.some((spot) => spot.kind === 'identifier')) return undefined;
  const copy: Json = { ...body };
  const copied = new Set<string | number>();
  spots.forEach((spot, i) => {
    const text = masked[i];
    if (text === undefined || text === spot.text) return;
    const top = spot.path[0]!;
    if (!copied.has(top)) {
      copied.add(top);
      copy[top] = structuredClone(copy[top]);
    }
    let parent: unknown = copy;
    for (const key of spot.path.slice(0, -1)) parent = (parent as Record<string | number, unknown>)[key];
    const last = spot.path.at(-1)!;
    if (spot.kind === 'label') delete (parent as Record<string | number, unknown>)[last];
    else (parent as Record<string | number, unknown>)[last] = text;
  });
  return copy as ChatCompletionRequest;
}
