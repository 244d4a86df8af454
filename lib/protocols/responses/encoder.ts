/**
 * Writes one streamed answer as Responses API server-sent events: `event: <type>` + `data: <json>` per event,
 * each with `sequence_number` from 0 (see docs/reference/responses-and-messages-clients.md for what real
 * clients need of each event).
 *
 * - First chunk (the response just committed): `response.created`, `response.in_progress`.
 * - Text of choice 0: a `message` item (`output_item.added`, `content_part.added` with an `output_text` part,
 *   one `output_text.delta` per chunk); a refusal: a `refusal` part in the same item (`refusal.delta`).
 * - Tool calls of choice 0: each chat call (by its delta `index`) becomes a `function_call` item
 *   (`output_item.added`, `function_call_arguments.delta`). A tool call closes the open message item (OpenAI
 *   ends a message before the calls that follow it); text after calls opens a new message item. Function
 *   call items stay open until the end, since some providers interleave parallel calls' arguments.
 * - `end()`: every open item closes in `output_index` order (`…done` events), then `response.completed`, or
 *   `response.incomplete` with `incomplete_details` when the chat answer finished with `length`
 *   (`max_output_tokens`) or `content_filter`, as OpenAI does. The finish chunk comes before the usage chunk,
 *   so nothing ends before `end()`.
 * - `error()`: the `error` event (flat fields and a nested `error` object) then `response.failed` with the
 *   answer so far; no item is closed and nothing follows. Before any chunk (which the lazy commit should
 *   never allow) the stream still opens with `response.created`/`in_progress`, so every stream starts the
 *   same way; clients handle an error right after them (research row f-nested-before-output).
 * - `softStop(text)`: `text` as output text, then the `response.incomplete` ending with `content_filter`.
 *
 * Hot path: a forwarded chunk in the compact layout (`RawChunk.text0Json`: choice 0's text as the upstream
 * escaped it, and its finish reason) becomes its delta event from a precomputed prefix and that text, with no
 * parsing and no escaping; other forwarded chunks that only add text escape `text0`; the rest are parsed. Text
 * is kept escaped (`PartState.pieces`), so the protocol's repeats of each item's text (`…done`,
 * `content_part.done`, `output_item.done`, the final Response) are joined, never serialized again, and the
 * Response's unchanging members are written once per answer.
 */
import type { ErrorBodyForm, GatewayError } from '../../errors.js';
import { jsonStringBody as escaped, RawChunk, type StreamChunk } from '../../raw-chunk.js';
import type { ChatCompletionChunk, FinishReason, ToolCallDelta, Usage } from '../../types.js';
import type { ProtocolEncoder } from '../types.js';
import {
  fixedMembers,
  outcomeOf,
  safeFixedMembers,
  responseJson,
  usageOf,
  type FunctionCallItem,
  type ItemStatus,
  type MessageItem,
  type OutputPart,
  type ResponseEnding,
  type ResponsesAnswerInfo,
} from './response.js';

/**
 * A content part of a message item, its text kept as the deltas that built it, each as the body of a JSON
 * string (escaped, without the quotes): the part's JSON string is their concatenation in quotes.
 */
interface PartState {
  readonly kind: 'output_text' | 'refusal';
  readonly index: number;
  readonly pieces: string[];
}

interface MessageState {
  readonly kind: 'message';
  readonly id: string;
  readonly outputIndex: number;
  readonly parts: PartState[];
  text: PartState | undefined;
  refusal: PartState | undefined;
  /** The item's JSON, once closed. */
  json: string | undefined;
}

interface CallState {
  readonly kind: 'call';
  readonly item: FunctionCallItem;
  readonly outputIndex: number;
  readonly deltas: string[];
  /** The item's JSON, once closed. */
  json: string | undefined;
}

/** One output item, in `output_index` order. */
type Slot = MessageState | CallState;

export class ResponsesEncoder implements ProtocolEncoder {
  private seq = 0;
  private started = false;
  private ended = false;
  /** The Response's members that do not change (see `fixedMembers`), once started. */
  private fixed = '';
  private readonly slots: Slot[] = [];
  /** The message item text goes to, while open. */
  private message: MessageState | undefined;
  /** Function call items by their chat tool-call index. */
  private readonly calls = new Map<number, CallState>();
  private messages = 0;
  private finish: FinishReason | null = null;
  private usage: Usage | undefined;
  /** The open text part's delta event up to the delta's value, and its pieces (set while a text part is open). */
  private textPrefix: string | undefined;
  private textPieces: string[] = [];

  constructor(private readonly answer: ResponsesAnswerInfo) {}

  chunk(chunk: StreamChunk): string {
    if (this.ended) return '';
    if (chunk instanceof RawChunk) {
      const json = chunk.text0Json;
      if (json !== undefined) {
        // The compact layout: choice 0 alone, with at most text (already escaped) and a finish reason.
        if (chunk.finish0) this.finish = chunk.finish0 as FinishReason;
        if (json === '') return this.started ? '' : this.start();
        if (this.textPrefix !== undefined) {
          this.textPieces.push(json);
          return `${this.textPrefix}"${json}","logprobs":[],"sequence_number":${this.seq++}}\n\n`;
        }
        return this.text(json);
      }
      // Only text for choice 0 (no refusal or other choice: those count in outputChars), no call, no finish.
      if (chunk.text0 !== '' && !chunk.toolCall0 && !chunk.finished && chunk.outputChars === chunk.text0.length) return this.text(escaped(chunk.text0));
      return this.parsed(JSON.parse(chunk.data) as ChatCompletionChunk);
    }
    return this.parsed(chunk);
  }

  end(): string {
    if (this.ended) return '';
    this.ended = true;
    const out = this.started ? '' : this.start();
    const { status, details } = outcomeOf(this.finish);
    const closed = this.closeAll(status === 'completed' ? 'completed' : 'incomplete');
    const response = this.response({ status, incompleteDetails: details, usage: usageOf(this.usage) });
    return out + closed + this.frame(status === 'completed' ? 'response.completed' : 'response.incomplete', `"response":${response}`);
  }

  /**
   * Never throws and always writes JSON, whatever failed before: when the Response's settings could not be
   * written (`start()` failed), its members are the ones that cannot fail (`baseMembers`); when the error's
   * `extra` members cannot be written, the error goes without them.
   */
  error(error: GatewayError, _form: ErrorBodyForm, extra?: Record<string, unknown>): string {
    if (this.ended) return '';
    this.ended = true;
    const out = this.started ? '' : this.start(safeFixedMembers(this.answer));
    // Always OpenAI's typed form: `code` must be the status as a string for the AI SDK (a number fails its schema).
    const code = String(error.status);
    const flat = (nested: unknown) => ({ code, message: error.message, param: error.param ?? null, error: nested });
    let event: string;
    try {
      event = this.event('error', flat(error.toBody('openai', extra).error));
    } catch {
      event = this.event('error', flat(error.toBody('openai').error));
    }
    const response = this.response({ status: 'failed', error: { code, message: error.message }, usage: this.usage ? usageOf(this.usage) : null });
    return out + event + this.frame('response.failed', `"response":${response}`);
  }

  softStop(text: string): string {
    if (this.ended) return '';
    const out = (this.started ? '' : this.start()) + (text === '' ? '' : this.text(escaped(text)));
    this.finish = 'content_filter';
    return out + this.end();
  }

  // ---- chunks

  private parsed(chunk: ChatCompletionChunk): string {
    let out = this.started ? '' : this.start();
    if (chunk.usage) this.usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.index !== 0) continue;
      const delta = choice.delta;
      if (delta) {
        if (typeof delta.content === 'string' && delta.content !== '') out += this.text(escaped(delta.content));
        if (typeof delta.refusal === 'string' && delta.refusal !== '') out += this.refusal(delta.refusal);
        if (delta.tool_calls) for (const call of delta.tool_calls) out += this.toolCall(call);
        const legacy = delta.function_call as { name?: string; arguments?: string } | null | undefined;
        if (legacy) out += this.toolCall({ index: 0, function: legacy });
      }
      if (choice.finish_reason) this.finish = choice.finish_reason;
    }
    return out;
  }

  /** The opening events. `fixed` first: if writing it throws, nothing has started and `error()` can still start. */
  private start(fixed: string = fixedMembers(this.answer)): string {
    this.fixed = fixed;
    this.started = true;
    const response = `"response":${this.response({ status: 'in_progress', usage: null })}`;
    return this.frame('response.created', response) + this.frame('response.in_progress', response);
  }

  /** A text delta of choice 0 (`json`: its text escaped, without quotes), opening the message item and its text part as needed. */
  private text(json: string): string {
    let out = this.started ? '' : this.start();
    if (this.textPrefix === undefined) out += this.openTextPart();
    this.textPieces.push(json);
    return `${out}${this.textPrefix}"${json}","logprobs":[],"sequence_number":${this.seq++}}\n\n`;
  }

  private openTextPart(): string {
    const [message, out] = this.openMessage();
    const part: PartState = { kind: 'output_text', index: message.parts.length, pieces: [] };
    message.parts.push(part);
    message.text = part;
    this.textPieces = part.pieces;
    this.textPrefix =
      `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":${JSON.stringify(message.id)},` +
      `"output_index":${message.outputIndex},"content_index":${part.index},"delta":`;
    // Written as a template: once per answer, on every streamed text answer.
    const added = `"item_id":${JSON.stringify(message.id)},"output_index":${message.outputIndex},"content_index":${part.index},"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}`;
    return out + this.frame('response.content_part.added', added);
  }

  private refusal(delta: string): string {
    let out = '';
    let message = this.message;
    if (message?.refusal === undefined) {
      [message, out] = this.openMessage();
      const part: PartState = { kind: 'refusal', index: message.parts.length, pieces: [] };
      message.parts.push(part);
      message.refusal = part;
      out += this.event('response.content_part.added', { item_id: message.id, output_index: message.outputIndex, content_index: part.index, part: { type: 'refusal', refusal: '' } });
    }
    const part = message.refusal as PartState;
    part.pieces.push(escaped(delta));
    return out + this.event('response.refusal.delta', { item_id: message.id, output_index: message.outputIndex, content_index: part.index, delta });
  }

  /** The open message item, or a new one (and its `output_item.added`). */
  private openMessage(): [MessageState, string] {
    if (this.message !== undefined) return [this.message, ''];
    const id = this.messages === 0 ? `msg_${this.answer.id}` : `msg_${this.answer.id}_${this.messages}`;
    this.messages++;
    const message: MessageState = { kind: 'message', id, outputIndex: this.slots.length, parts: [], text: undefined, refusal: undefined, json: undefined };
    this.slots.push(message);
    this.message = message;
    const item = `{"id":${JSON.stringify(id)},"type":"message","status":"in_progress","role":"assistant","content":[]}`;
    return [message, this.frame('response.output_item.added', `"output_index":${message.outputIndex},"item":${item}`)];
  }

  private toolCall(delta: ToolCallDelta): string {
    let out = '';
    let call = this.calls.get(delta.index);
    const fn = delta.function;
    if (call === undefined) {
      out += this.closeMessage('completed');
      const outputIndex = this.slots.length;
      const item: FunctionCallItem = {
        id: `fc_${this.answer.id}_${outputIndex}`,
        type: 'function_call',
        status: 'in_progress',
        arguments: '',
        call_id: delta.id ?? `call_${this.answer.id}_${delta.index}`,
        name: fn?.name ?? '',
      };
      call = { kind: 'call', item, outputIndex, deltas: [], json: undefined };
      this.calls.set(delta.index, call);
      this.slots.push(call);
      out += this.event('response.output_item.added', { output_index: outputIndex, item });
    } else if (fn?.name && call.item.name === '') {
      call.item.name = fn.name; // a provider that names the call after its first delta
    }
    if (typeof fn?.arguments === 'string' && fn.arguments !== '') {
      call.deltas.push(fn.arguments);
      out += this.event('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.outputIndex, delta: fn.arguments });
    }
    return out;
  }

  // ---- endings

  /** Closes the open items in `output_index` order (only the last message item can still be open). */
  private closeAll(status: ItemStatus): string {
    let out = '';
    for (const slot of this.slots) {
      if (slot.json === undefined) out += slot.kind === 'message' ? this.closeMessage(status) : this.closeCall(slot, status);
    }
    return out;
  }

  private closeMessage(status: ItemStatus): string {
    const message = this.message;
    if (message === undefined) return '';
    this.message = undefined;
    this.textPrefix = undefined;
    let out = '';
    const head = `"item_id":${JSON.stringify(message.id)},"output_index":${message.outputIndex}`;
    const parts: string[] = [];
    for (const part of message.parts) {
      const value = `"${part.pieces.join('')}"`;
      const at = `${head},"content_index":${part.index}`;
      let partJson: string;
      if (part.kind === 'output_text') {
        partJson = `{"type":"output_text","text":${value},"annotations":[],"logprobs":[]}`;
        out += this.frame('response.output_text.done', `${at},"text":${value},"logprobs":[]`);
      } else {
        partJson = `{"type":"refusal","refusal":${value}}`;
        out += this.frame('response.refusal.done', `${at},"refusal":${value}`);
      }
      out += this.frame('response.content_part.done', `${at},"part":${partJson}`);
      parts.push(partJson);
    }
    message.json = `{"id":${JSON.stringify(message.id)},"type":"message","status":"${status}","role":"assistant","content":[${parts.join(',')}]}`;
    return out + this.frame('response.output_item.done', `"output_index":${message.outputIndex},"item":${message.json}`);
  }

  private closeCall(call: CallState, status: ItemStatus): string {
    const item = callItem(call, status);
    call.json = JSON.stringify(item);
    return (
      this.event('response.function_call_arguments.done', { item_id: item.id, output_index: call.outputIndex, name: item.name, arguments: item.arguments }) +
      this.frame('response.output_item.done', `"output_index":${call.outputIndex},"item":${call.json}`)
    );
  }

  /** The Response so far as JSON, with every item as it stands (the open ones with the status the ending gives them). */
  private response(ending: Omit<ResponseEnding, 'outputJson'>): string {
    const open: ItemStatus = ending.status === 'in_progress' ? 'in_progress' : ending.status === 'completed' ? 'completed' : 'incomplete';
    let outputJson = '[';
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i] as Slot;
      if (i > 0) outputJson += ',';
      outputJson += slot.json ?? JSON.stringify(slot.kind === 'message' ? messageItem(slot, open) : callItem(slot, open));
    }
    return responseJson(this.fixed, { status: ending.status, error: ending.error, incompleteDetails: ending.incompleteDetails, usage: ending.usage, outputJson: `${outputJson}]` });
  }

  /** One event from its members as JSON (without braces), numbered. */
  private frame(type: string, members: string): string {
    return `event: ${type}\ndata: {"type":"${type}",${members},"sequence_number":${this.seq++}}\n\n`;
  }

  /** One event from its fields, numbered; the number is taken only once the fields are written (which may throw). */
  private event(type: string, fields: Record<string, unknown>): string {
    const data = JSON.stringify({ type, ...fields, sequence_number: this.seq });
    this.seq++;
    return `event: ${type}\ndata: ${data}\n\n`;
  }
}

function partOf(part: PartState): OutputPart {
  const text = JSON.parse(`"${part.pieces.join('')}"`) as string;
  return part.kind === 'output_text' ? { type: 'output_text', text, annotations: [], logprobs: [] } : { type: 'refusal', refusal: text };
}

function messageItem(message: MessageState, status: ItemStatus): MessageItem {
  return { id: message.id, type: 'message', status, role: 'assistant', content: message.parts.map(partOf) };
}

function callItem(call: CallState, status: ItemStatus): FunctionCallItem {
  return { ...call.item, status, arguments: call.deltas.join('') };
}
