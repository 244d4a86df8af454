import { BadRequestError } from '../errors.js';

/**
 * OpenAI carries tool-call arguments as a JSON string; Anthropic and Bedrock want the object. A string
 * that is not a JSON object is the client's mistake: a 400 naming the field, before any upstream call.
 */
export function parseToolArguments(text: string, param: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch {
    throw new BadRequestError(`${param}: not valid JSON.`, { param });
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new BadRequestError(`${param}: must be a JSON object.`, { param });
  }
  return input as Record<string, unknown>;
}
