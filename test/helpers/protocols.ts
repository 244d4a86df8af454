/**
 * One request through a gateway in any of its three protocols, its outcome normalized to the chat helper's
 * `ChatOutcome`, so the parity matrix runs unchanged for `/v1/responses` and `/v1/messages` (and the three
 * protocols can be compared with each other).
 *
 * The request is written as a chat body (`model`, `messages`, `stream`, `max_tokens`, `tools`) and
 * translated into the protocol's own form. The outcome is read strictly from the protocol's wire form: a
 * stream must consist of well-formed named events, and `ending` says how it ended (the protocol's normal
 * terminal event, its terminal error, or neither: a cut stream).
 */
import { rawRequest } from './http.js';
import { chat, type ChatOptions, type ChatOutcome } from './chat.js';
import { namedEvents, PROTOCOL_PATHS, protocolBody, type NamedEvent, type WireProtocol } from './protocol-wire.js';

// The paths, the body translation and the SSE reader live in protocol-wire.ts (the soak uses them too).
export { namedEvents, PROTOCOL_PATHS, protocolBody, WIRE_PROTOCOLS, type NamedEvent, type WireProtocol } from './protocol-wire.js';

export interface ProtocolOutcome extends ChatOutcome {
  /** How a stream ended: its normal terminal event, its terminal error event, or neither (cut). `json` without streaming. */
  ending: 'completed' | 'error' | 'cut' | 'json';
  /** The named events of a stream (`event:` and parsed `data:`), in order. */
  events: NamedEvent[];
}

/** Sends a chat-shaped request in `protocol` and reads the answer back into a `ChatOutcome`. */
export async function ask(protocol: WireProtocol, baseUrl: string, body: Record<string, unknown>, options: ChatOptions = {}): Promise<ProtocolOutcome> {
  const prefix = options.path ?? '';
  if (protocol === 'chat') {
    const outcome = await chat(baseUrl, body, { ...options, path: `${prefix}${PROTOCOL_PATHS.chat}` });
    const ending = outcome.frames.length === 0 ? 'json' : outcome.frames.at(-1) === '[DONE]' ? (outcome.inBand ? 'error' : 'completed') : 'cut';
    return { ...outcome, ending, events: outcome.frames.filter((f) => f !== '[DONE]').map((f) => ({ event: undefined, data: JSON.parse(f) as Record<string, unknown> })) };
  }
  const res = await rawRequest(baseUrl, { body: protocolBody(protocol, body), path: `${prefix}${PROTOCOL_PATHS[protocol]}`, headers: options.headers, abortAfterMs: options.abortAfterMs });
  const base = { status: res.status, headers: res.headers, complete: res.complete, frames: [] as string[], ...(res.abortedAt ? { abortedAt: res.abortedAt } : {}) };
  const isStream = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
  if (!isStream) {
    const json = res.text ? (JSON.parse(res.text) as Record<string, unknown>) : {};
    if (res.status !== 200) return { ...base, text: '', finishReason: undefined, error: errorObject(protocol, json), inBand: false, usage: undefined, ending: 'json', events: [] };
    const answer = protocol === 'responses' ? responsesAnswer(json) : messagesAnswer(json);
    return { ...base, ...answer, error: undefined, inBand: false, ending: 'json', events: [] };
  }
  const events = namedEvents(res.text);
  const read = protocol === 'responses' ? readResponsesStream(events) : readMessagesStream(events);
  return { ...base, frames: events.map((e) => JSON.stringify(e.data)), events, ...read };
}

/** Both modes of the same request in one protocol. */
export async function askBoth(protocol: WireProtocol, baseUrl: string, body: Record<string, unknown>, options: ChatOptions = {}): Promise<[ProtocolOutcome, ProtocolOutcome]> {
  const plain = await ask(protocol, baseUrl, { ...body, stream: false }, options);
  const streamed = await ask(protocol, baseUrl, { ...body, stream: true }, options);
  return [plain, streamed];
}

/** The error of a JSON answer, normalized: `{ message, type, code }` with the HTTP-equivalent status as a number. */
function errorObject(protocol: WireProtocol, json: Record<string, unknown>): Record<string, unknown> {
  const error = (json['error'] ?? {}) as Record<string, unknown>;
  if (protocol === 'messages') return { message: error['message'], type: error['type'] };
  return { message: error['message'], type: error['type'], code: Number(error['code']) };
}

const RESPONSES_FINISH: Record<string, string> = { max_output_tokens: 'length', content_filter: 'content_filter' };
const MESSAGES_FINISH: Record<string, string> = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', tool_use: 'tool_calls', refusal: 'content_filter' };

function responsesAnswer(response: Record<string, unknown>): Pick<ChatOutcome, 'text' | 'finishReason' | 'usage'> {
  const output = (response['output'] ?? []) as { type: string; content?: { type: string; text?: string }[] }[];
  const text = output
    .filter((item) => item.type === 'message')
    .flatMap((item) => item.content ?? [])
    .filter((part) => part.type === 'output_text')
    .map((part) => part.text ?? '')
    .join('');
  const incomplete = (response['incomplete_details'] as { reason?: string } | null | undefined)?.reason;
  const finishReason =
    response['status'] === 'incomplete' ? (RESPONSES_FINISH[incomplete ?? ''] ?? incomplete) : output.some((item) => item.type === 'function_call') ? 'tool_calls' : 'stop';
  return { text, finishReason, usage: response['usage'] };
}

function messagesAnswer(message: Record<string, unknown>): Pick<ChatOutcome, 'text' | 'finishReason' | 'usage'> {
  const content = (message['content'] ?? []) as { type: string; text?: string }[];
  const text = content
    .filter((block) => block.type === 'text')
    .map((block) => block.text ?? '')
    .join('');
  const stop = message['stop_reason'] as string | null;
  return { text, finishReason: stop === null ? null : (MESSAGES_FINISH[stop] ?? stop), usage: message['usage'] };
}

type StreamRead = Pick<ProtocolOutcome, 'text' | 'finishReason' | 'error' | 'inBand' | 'usage' | 'ending'>;

function readResponsesStream(events: ProtocolOutcome['events']): StreamRead {
  let text = '';
  let error: Record<string, unknown> | undefined;
  let completed: Record<string, unknown> | undefined;
  let ending: ProtocolOutcome['ending'] = 'cut';
  events.forEach(({ event, data }, i) => {
    if (data['sequence_number'] !== i) throw new Error(`event ${i} (${event}) has sequence_number ${String(data['sequence_number'])}`);
    if (ending !== 'cut' && event !== 'response.failed') throw new Error(`event ${event} after the stream's terminal event`);
    if (event === 'response.output_text.delta') text += String(data['delta']);
    if (event === 'error') {
      const nested = data['error'] as Record<string, unknown>;
      error = { message: nested['message'], type: nested['type'], code: Number(nested['code']) };
      ending = 'error';
    }
    // `response.incomplete` is a normal ending too (max_output_tokens, content_filter), as OpenAI sends it.
    if (event === 'response.completed' || event === 'response.incomplete') {
      completed = data['response'] as Record<string, unknown>;
      ending = 'completed';
    }
  });
  if (completed) {
    const answer = responsesAnswer(completed);
    if (answer.text !== text) throw new Error(`response.completed says ${JSON.stringify(answer.text)}, the deltas ${JSON.stringify(text)}`);
    return { text, finishReason: answer.finishReason, usage: answer.usage, error: undefined, inBand: false, ending };
  }
  return { text, finishReason: undefined, usage: undefined, error, inBand: error !== undefined, ending };
}

function readMessagesStream(events: ProtocolOutcome['events']): StreamRead {
  let text = '';
  let error: Record<string, unknown> | undefined;
  let finishReason: string | null | undefined;
  let usage: unknown;
  let ending: ProtocolOutcome['ending'] = 'cut';
  for (const { event, data } of events) {
    if (ending !== 'cut') throw new Error(`event ${event} after the stream's terminal event`);
    const delta = data['delta'] as Record<string, unknown> | undefined;
    if (event === 'content_block_delta' && delta?.['type'] === 'text_delta') text += String(delta['text']);
    if (event === 'message_delta') {
      const stop = delta?.['stop_reason'] as string | null;
      finishReason = stop === null ? null : (MESSAGES_FINISH[stop] ?? stop);
      usage = data['usage'];
    }
    if (event === 'error') {
      const nested = data['error'] as Record<string, unknown>;
      error = { message: nested['message'], type: nested['type'] };
      ending = 'error';
    }
    if (event === 'message_stop') ending = 'completed';
  }
  return { text, finishReason: error ? undefined : finishReason, usage, error, inBand: error !== undefined, ending };
}
