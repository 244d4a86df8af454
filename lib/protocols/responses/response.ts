/**
 * The Response object (`object: "response"`) the stream's lifecycle events and the whole answer carry, built
 * from what the gateway knows: the answer's ids, the chat usage and finish reason, and the request's settings
 * when the writer was given the request (`echoOf`), OpenAI's defaults otherwise.
 */
import type { ChatCompletionRequest, FinishReason, Usage } from '../../types.js';
import type { AnswerInfo } from '../types.js';
import { echoOf, type ResponseEcho } from './request.js';

/**
 * What the Responses writers read of an answer: `AnswerInfo`, and the chat request it answers when the caller
 * passes it (the Response object then repeats the request's `instructions`, `tools`, `temperature`…).
 */
export interface ResponsesAnswerInfo extends AnswerInfo {
  readonly request?: ChatCompletionRequest;
}

export type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed';
export type ItemStatus = 'in_progress' | 'completed' | 'incomplete';

export type OutputPart = { type: 'output_text'; text: string; annotations: []; logprobs: [] } | { type: 'refusal'; refusal: string };

export interface MessageItem {
  id: string;
  type: 'message';
  status: ItemStatus;
  role: 'assistant';
  content: OutputPart[];
}

export interface FunctionCallItem {
  id: string;
  type: 'function_call';
  status: ItemStatus;
  arguments: string;
  call_id: string;
  name: string;
}

export type OutputItem = MessageItem | FunctionCallItem;

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export type IncompleteDetails = { reason: 'max_output_tokens' | 'content_filter' } | null;

/** How a chat answer that finished with `finish` ends as a Response. */
export function outcomeOf(finish: FinishReason | null | undefined): { status: 'completed' | 'incomplete'; details: IncompleteDetails } {
  if (finish === 'length') return { status: 'incomplete', details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter') return { status: 'incomplete', details: { reason: 'content_filter' } };
  return { status: 'completed', details: null };
}

/**
 * The chat usage in Responses form. Without one (an upstream that reported none, a soft stop before the usage
 * chunk) the counts are 0: the AI SDK's schema requires a usage object on `response.completed`/`.incomplete`.
 */
export function usageOf(usage: Usage | null | undefined): ResponseUsage {
  const details = (usage?.prompt_tokens_details ?? undefined) as { cached_tokens?: unknown } | undefined;
  const outputDetails = (usage?.completion_tokens_details ?? undefined) as { reasoning_tokens?: unknown } | undefined;
  const input = usage?.prompt_tokens ?? 0;
  const output = usage?.completion_tokens ?? 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: typeof details?.cached_tokens === 'number' ? details.cached_tokens : 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: typeof outputDetails?.reasoning_tokens === 'number' ? outputDetails.reasoning_tokens : 0 },
    total_tokens: usage?.total_tokens ?? input + output,
  };
}

export const responseIdOf = (answer: AnswerInfo): string => `resp_${answer.id}`;

export interface ResponseEnding {
  status: ResponseStatus;
  /** The `output` array, as JSON (the writers build the items' JSON once and reuse it in their events). */
  outputJson: string;
  usage: ResponseUsage | null;
  incompleteDetails?: IncompleteDetails;
  error?: { code: string; message: string } | null;
}

/**
 * The members of a Response that do not change while it streams (its ids, the model, the request's settings),
 * as JSON without the braces: computed once per answer, the settings' part once per request.
 */
export function fixedMembers(answer: ResponsesAnswerInfo): string {
  return `${baseMembers(answer)},${settingsMembers(echoOf(answer.request))}`;
}

/** The members every Response has that cannot fail to be written: its ids and the model. */
function baseMembers(answer: AnswerInfo): string {
  return `"id":${JSON.stringify(responseIdOf(answer))},"object":"response","created_at":${Number(answer.created) || 0},"model":${JSON.stringify(String(answer.model))}`;
}

/**
 * `fixedMembers`, or only `baseMembers` when the request's settings cannot be written (the request's checks
 * keep that from happening; an error event must be JSON even then).
 */
export function safeFixedMembers(answer: ResponsesAnswerInfo): string {
  try {
    return fixedMembers(answer);
  } catch {
    return baseMembers(answer);
  }
}

/** The empty values most requests leave as they are, written once. */
const EMPTY_TOOLS = '[]';
const EMPTY_METADATA = '{}';
const TEXT_FORMAT_DEFAULT = '{"format":{"type":"text"}}';

/**
 * The request's settings as Response members (once per request): a template with each value written as
 * `JSON.stringify` would, the common empty ones (no tools, no metadata, plain text) as constants. The key
 * order is the one OpenAI's Responses use.
 */
function settingsMembers(echo: ResponseEcho): string {
  let json = echo.membersJson;
  if (json === undefined) {
    const text = echo.text.format.type === 'text' && echo.text.verbosity === undefined && Object.keys(echo.text).length === 1 && Object.keys(echo.text.format).length === 1 ? TEXT_FORMAT_DEFAULT : JSON.stringify(echo.text);
    json =
      `"background":false,"instructions":${jsonOrNull(echo.instructions)},"max_output_tokens":${jsonOrNull(echo.max_output_tokens)},` +
      `"parallel_tool_calls":${JSON.stringify(echo.parallel_tool_calls)},"previous_response_id":null,"reasoning":{"effort":null,"summary":null},` +
      `"store":false,"temperature":${jsonOrNull(echo.temperature)},"text":${text},"tool_choice":${JSON.stringify(echo.tool_choice)},` +
      `"tools":${echo.tools.length === 0 ? EMPTY_TOOLS : JSON.stringify(echo.tools)},"top_p":${jsonOrNull(echo.top_p)},"truncation":"disabled",` +
      `"metadata":${Object.keys(echo.metadata).length === 0 ? EMPTY_METADATA : JSON.stringify(echo.metadata)}` +
      (echo.user !== undefined ? `,"user":${JSON.stringify(echo.user)}` : '');
    echo.membersJson = json;
  }
  return json;
}

/** A value as `JSON.stringify` writes it, `null` for null or undefined (a member that is always there). */
function jsonOrNull(value: unknown): string {
  return value == null ? 'null' : JSON.stringify(value);
}

/** The Response object as JSON, with the fields openai-node's `Response` type declares. */
export function responseJson(fixed: string, ending: ResponseEnding): string {
  const { error, incompleteDetails } = ending;
  return (
    `{${fixed},"status":"${ending.status}","error":${error == null ? 'null' : JSON.stringify(error)},` +
    `"incomplete_details":${incompleteDetails == null ? 'null' : JSON.stringify(incompleteDetails)},"output":${ending.outputJson},"usage":${usageJson(ending.usage)}}`
  );
}

/** `usage` as `JSON.stringify` writes it, from a template (it goes out with every answer). */
function usageJson(usage: ResponseUsage | null): string {
  if (usage === null) return 'null';
  const { input_tokens_details: input, output_tokens_details: output } = usage;
  return (
    `{"input_tokens":${count(usage.input_tokens)},"input_tokens_details":{"cached_tokens":${count(input.cached_tokens)}},` +
    `"output_tokens":${count(usage.output_tokens)},"output_tokens_details":{"reasoning_tokens":${count(output.reasoning_tokens)}},` +
    `"total_tokens":${count(usage.total_tokens)}}`
  );
}

/** A count as `JSON.stringify` writes it; the upstream said it, so it may not be a number at all. */
function count(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? `${value}` : (JSON.stringify(value) ?? 'null');
}
