/**
 * Request validation (reference §1.2, §6.2.2). The SDK validates nothing client-side, so this is where a
 * bad request from the gateway shows up: as a 400 ValidationException with a Coral-style message.
 */
import type { ApplyGuardrailRequestBody } from './types.js';

const IDENTIFIER_PATTERN = /^(|[a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail\/[a-z0-9]+)$/;
const VERSION_PATTERN = /^(|([1-9][0-9]{0,7})|(DRAFT))$/;
const MAX_IDENTIFIER_LENGTH = 2048;
const SOURCES = ['INPUT', 'OUTPUT'];
const OUTPUT_SCOPES = ['INTERVENTIONS', 'FULL'];
const QUALIFIERS = ['grounding_source', 'query', 'guard_content'];
const IMAGE_FORMATS = ['png', 'jpeg'];
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export type ValidationResult = { ok: true; body: ApplyGuardrailRequestBody } | { ok: false; message: string };

/** Coral's wording: "2 validation errors detected: Value … ; Value …". */
export function validationMessage(problems: string[]): string {
  const noun = problems.length === 1 ? 'validation error' : 'validation errors';
  return `${problems.length} ${noun} detected: ${problems.join('; ')}`;
}

function describe(value: unknown): string {
  if (value === undefined || value === null) return 'null';
  return `'${typeof value === 'string' ? value : JSON.stringify(value)}'`;
}

function notNull(path: string): string {
  return `Value null at '${path}' failed to satisfy constraint: Member must not be null`;
}

function notInEnum(value: unknown, path: string, allowed: string[]): string {
  return `Value ${describe(value)} at '${path}' failed to satisfy constraint: Member must satisfy enum value set: [${allowed.join(', ')}]`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks the two path labels (already percent-decoded). */
export function validateLabels(identifier: string, version: string): string[] {
  const problems: string[] = [];
  if (identifier.length > MAX_IDENTIFIER_LENGTH) {
    problems.push(`Value at 'guardrailIdentifier' failed to satisfy constraint: Member must have length less than or equal to ${MAX_IDENTIFIER_LENGTH}`);
  } else if (!IDENTIFIER_PATTERN.test(identifier)) {
    problems.push(`Value ${describe(identifier)} at 'guardrailIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ${IDENTIFIER_PATTERN.source}`);
  }
  if (!VERSION_PATTERN.test(version)) {
    problems.push(`Value ${describe(version)} at 'guardrailVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: ${VERSION_PATTERN.source}`);
  }
  return problems;
}

function validateTextBlock(text: unknown, path: string): string[] {
  if (!isRecord(text)) return [notNull(path)];
  const problems: string[] = [];
  if (typeof text.text !== 'string') problems.push(notNull(`${path}.text`));
  if (text.qualifiers !== undefined) {
    const q = text.qualifiers;
    if (!Array.isArray(q) || q.some((item) => typeof item !== 'string' || !QUALIFIERS.includes(item))) {
      problems.push(`Value ${describe(q)} at '${path}.qualifiers' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [${QUALIFIERS.join(', ')}]]`);
    }
  }
  return problems;
}

function validateImageBlock(image: unknown, path: string): string[] {
  if (!isRecord(image)) return [notNull(path)];
  const problems: string[] = [];
  if (!IMAGE_FORMATS.includes(image.format as string)) problems.push(notInEnum(image.format, `${path}.format`, IMAGE_FORMATS));
  const bytes = isRecord(image.source) ? image.source.bytes : undefined;
  if (typeof bytes !== 'string') problems.push(notNull(`${path}.source.bytes`));
  else if (bytes.length === 0 || !BASE64.test(bytes)) problems.push(`Value at '${path}.source.bytes' failed to satisfy constraint: Member must be non-empty base64`);
  return problems;
}

/** A content block is a union: exactly one of `text` / `image`. Paths are 1-based, as in Coral messages. */
function validateContentBlock(block: unknown, index: number): string[] {
  const path = `content.${index + 1}.member`;
  if (!isRecord(block)) return [notNull(path)];
  const members = Object.keys(block).filter((k) => block[k] !== undefined && block[k] !== null);
  if (members.length !== 1 || (members[0] !== 'text' && members[0] !== 'image')) {
    return [`Value ${describe(members)} at '${path}' failed to satisfy constraint: Member must have exactly one of [text, image] set`];
  }
  return members[0] === 'text' ? validateTextBlock(block.text, `${path}.text`) : validateImageBlock(block.image, `${path}.image`);
}

/** Validates a parsed JSON body; on success the value is typed as the request shape. */
export function validateBody(body: unknown): ValidationResult {
  if (!isRecord(body)) return { ok: false, message: 'Request body must be a JSON object' };
  const problems: string[] = [];
  if (body.source === undefined || body.source === null) problems.push(notNull('source'));
  else if (!SOURCES.includes(body.source as string)) problems.push(notInEnum(body.source, 'source', SOURCES));
  if (!Array.isArray(body.content)) problems.push(notNull('content'));
  else if (body.content.length === 0) {
    problems.push(`Value '[]' at 'content' failed to satisfy constraint: Member must have length greater than or equal to 1`);
  } else problems.push(...body.content.flatMap(validateContentBlock));
  if (body.outputScope !== undefined && !OUTPUT_SCOPES.includes(body.outputScope as string)) {
    problems.push(notInEnum(body.outputScope, 'outputScope', OUTPUT_SCOPES));
  }
  return problems.length > 0 ? { ok: false, message: validationMessage(problems) } : { ok: true, body: body as unknown as ApplyGuardrailRequestBody };
}
