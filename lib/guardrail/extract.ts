/**
 * Where the checkable text lives in requests, completions and chunks, and how to write masked text back.
 * Text is: string content, `text` and `refusal` content parts, the `refusal` field, tool-call arguments and
 * legacy `function_call` arguments. Images, audio and files are not text and are skipped.
 */
import type { ChatCompletion, ChatMessage, ChatRole, ContentPart } from '../types.js';

/** Which field of a message (or a streamed delta) holds a text. */
export type TextField = 'content' | 'refusal' | 'tool' | 'function_call';

/**
 * One text inside a message or delta. `part` is the index in the content-part array (`-1` for string
 * content) or in the `tool_calls` array; unused for `refusal` and `function_call`.
 */
export interface TextSpot {
  field: TextField;
  part: number;
  text: string;
}

/** The fields of a message and of a streamed delta that carry text (both shapes have them). */
export interface MessageLike {
  content?: string | ContentPart[] | null;
  refusal?: string | null;
  tool_calls?: { function?: { arguments?: string } }[];
  function_call?: { arguments?: string } | null;
}

/** The non-empty texts of one message or delta, in reading order. */
export function textSpotsOf(message: MessageLike): TextSpot[] {
  const spots: TextSpot[] = [];
  const { content } = message;
  if (typeof content === 'string') pushText(spots, 'content', -1, content);
  else if (Array.isArray(content)) content.forEach((part, i) => pushText(spots, 'content', i, partText(part)));
  pushText(spots, 'refusal', 0, message.refusal);
  message.tool_calls?.forEach((call, i) => pushText(spots, 'tool', i, call.function?.arguments));
  pushText(spots, 'function_call', 0, message.function_call?.arguments);
  return spots;
}

function pushText(spots: TextSpot[], field: TextField, part: number, text: string | null | undefined): void {
  if (typeof text === 'string' && text !== '') spots.push({ field, part, text });
}

function partText(part: ContentPart): string | undefined {
  if (part.type === 'text') return part.text;
  if (part.type === 'refusal') return part.refusal;
  return undefined; // images, audio and files are not sent to the guardrail
}

/** Writes `text` where `spot` was read from. The message must be a copy the caller owns. */
export function writeText(message: MessageLike, spot: Pick<TextSpot, 'field' | 'part'>, text: string): void {
  switch (spot.field) {
    case 'content': {
      if (spot.part < 0 || !Array.isArray(message.content)) {
        message.content = text;
        return;
      }
      const part = message.content[spot.part];
      if (part?.type === 'text') part.text = text;
      else if (part?.type === 'refusal') part.refusal = text;
      return;
    }
    case 'refusal':
      message.refusal = text;
      return;
    case 'tool': {
      const fn = message.tool_calls?.[spot.part]?.function;
      if (fn) fn.arguments = text;
      return;
    }
    case 'function_call':
      if (message.function_call) message.function_call.arguments = text;
      return;
  }
}

/** A text of the request: which message it is in, and where. */
export interface InputSpot extends TextSpot {
  message: number;
}

/** The texts of the request's messages whose role is checked, in message order. */
export function inputSpotsOf(messages: readonly ChatMessage[], roles: ReadonlySet<ChatRole>): InputSpot[] {
  const spots: InputSpot[] = [];
  messages.forEach((message, i) => {
    if (!roles.has(message.role)) return;
    for (const spot of textSpotsOf(message)) spots.push({ ...spot, message: i });
  });
  return spots;
}

/** A copy of `messages` with each spot's text replaced by the matching masked text (the caller's array is untouched). */
export function maskedMessages(messages: readonly ChatMessage[], spots: readonly InputSpot[], masked: readonly string[]): ChatMessage[] {
  const copy = structuredClone(messages) as ChatMessage[];
  spots.forEach((spot, i) => {
    const message = copy[spot.message];
    const text = masked[i];
    if (message && text !== undefined) writeText(message, spot, text);
  });
  return copy;
}

/** A text of a completion: which choice (array position) it is in, and where. */
export interface OutputSpot extends TextSpot {
  choice: number;
}

/** The texts of every choice of a completion (`n > 1` gives several). */
export function outputSpotsOf(completion: ChatCompletion): OutputSpot[] {
  const spots: OutputSpot[] = [];
  completion.choices.forEach((choice, i) => {
    for (const spot of textSpotsOf(choice.message)) spots.push({ ...spot, choice: i });
  });
  return spots;
}

/** A copy of `completion` with each spot's text replaced by the matching masked text. */
export function maskedCompletion(completion: ChatCompletion, spots: readonly OutputSpot[], masked: readonly string[]): ChatCompletion {
  const copy = structuredClone(completion);
  spots.forEach((spot, i) => {
    const choice = copy.choices[spot.choice];
    const text = masked[i];
    if (choice && text !== undefined) writeText(choice.message, spot, text);
  });
  return copy;
}
