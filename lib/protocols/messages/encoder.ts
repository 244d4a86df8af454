/**
 * The Messages stream: chat chunks → Anthropic's server-sent events, each with its `event:` line (the
 * Anthropic SDK skips a frame without one; see docs/reference/responses-and-messages-clients.md).
 *
 * `message_start` goes out with the first chunk, that is when the response commits, so nothing precedes
 * the first content; one `ping` follows it, as Anthropic sends one early in every stream (clients skip it). Choice 0's text becomes a text block, each of its tool calls a `tool_use` block whose
 * arguments arrive as `input_json_delta`s; a block starts when its first delta comes and stops when the next
 * block starts or the message ends, and its `index` is its position. The finish chunk comes before the usage
 * chunk, so the ending (`content_block_stop`, `message_delta` with the stop reason and the usage,
 * `message_stop`) waits for `end()`. A failure ends the stream with one `error` event and nothing after it.
 *
 * `message_start.usage` says 0 input tokens: the count is known only from the usage chunk, and goes in
 * `message_delta.usage`, whose `input_tokens` the Anthropic SDK's accumulator takes over the start's.
 * A tool call's deltas that arrive after another call started (chat servers send calls one after the other)
 * are still written against their own block's index.
 *
 * Thinking (Anthropic extras on choice 0's delta, `AnthropicDeltaExtras`, from an Anthropic-family
 * upstream): `thinking` text goes in the open thinking block, or a new one (`content_block_start` with
 * `{type:'thinking', thinking:'', signature:''}`) as a `thinking_delta`; a `signature` is its
 * `signature_delta` and stops the block; `redacted` is a whole `redacted_thinking` block (start, stop).
 */
import type { ErrorBodyForm, GatewayError } from '../../errors.js';
import { jsonStringBody as escaped, RawChunk, type StreamChunk } from '../../raw-chunk.js';
import { anthropicExtras, type AnthropicDeltaExtras, type ChatCompletionChunk, type FinishReason, type ToolCallDelta } from '../../types.js';
import type { AnswerInfo, ProtocolEncoder } from '../types.js';
import { messageId, messagesErrorBody, messagesUsageOf, stopReasonOf, type MessagesUsage, type StopReason } from './answer.js';

const MESSAGE_STOP = 'event: message_stop\ndata: {"type":"message_stop"}\n\n';

const blockStop = (index: number): string => `event: content_block_stop\ndata: {"type":"content_block_stop","index":${index}}\n\n`;

const textBlockStart = (index: number): string =>
  `event: content_block_start\ndata: {"type":"content_block_start","index":${index},"content_block":{"type":"text","text":""}}\n\n`;

/** A text delta is this prefix, the JSON of the text, and `TEXT_DELTA_END`. */
const textDeltaPrefix = (index: number): string =>
  `event: content_block_delta\ndata: {"type":"content_block_delta","index":${index},"delta":{"type":"text_delta","text":`;
const TEXT_DELTA_END = '}}\n\n';

const PING = 'event: ping\ndata: {"type":"ping"}\n\n';

const thinkingBlockStart = (index: number): string =>
  `event: content_block_start\ndata: {"type":"content_block_start","index":${index},"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n`;

const NO_BLOCK = -1;

export class MessagesEncoder implements ProtocolEncoder {
  private started = false;
  private ended = false;
  /** The index the next block gets. */
  private nextIndex = 0;
  /** The index of the block not stopped yet, or `NO_BLOCK`. */
  private openIndex = NO_BLOCK;
  /** The open block's text-delta prefix when it is a text block, else ''. */
  private openText = '';
  /** Whether the open block is a thinking block. */
  private openThinking = false;
  /** The block index of each chat tool call, by the call's `index` in the deltas. */
  private toolBlocks: Map<number, number> | undefined;
  private finishReason: FinishReason | null = null;
  private usage: MessagesUsage | undefined;

  constructor(private readonly answer: AnswerInfo) {}

  chunk(chunk: StreamChunk): string {
    if (this.ended) return '';
    const head = this.started ? '' : this.start();
    if (chunk instanceof RawChunk) {
      // The hot path: a forwarded chunk that is choice 0's text and nothing else needs no parsing.
      const json = chunk.text0Json;
      if (json !== undefined) {
        // The compact layout: choice 0 alone, with at most text (already escaped) and a finish reason.
        if (chunk.finish0) this.finishReason = chunk.finish0 as FinishReason;
        return json === '' ? head : head + this.text(json);
      }
      if (!chunk.toolCall0 && !chunk.finished) {
        if (chunk.text0 !== '' && chunk.outputChars === chunk.text0.length) return head + this.text(escaped(chunk.text0));
        if (chunk.outputChars === 0) return head; // a role chunk, or another choice's empty delta
      }
      return head + this.parsed(JSON.parse(chunk.data) as ChatCompletionChunk);
    }
    return head + this.parsed(chunk);
  }

  end(): string {
    if (this.ended) return '';
    return (this.started ? '' : this.start()) + this.ending(stopReasonOf(this.finishReason));
  }

  error(error: GatewayError, _form: ErrorBodyForm, extra?: Record<string, unknown>): string {
    if (this.ended) return '';
    this.ended = true;
    return `event: error\ndata: ${JSON.stringify(messagesErrorBody(error, extra))}\n\n`;
  }

  softStop(text: string): string {
    if (this.ended) return '';
    let out = this.started ? '' : this.start();
    if (text !== '') {
      out += this.closeBlock();
      out += this.text(escaped(text));
    }
    return out + this.ending('refusal');
  }

  /** `message_start`, written as a template (it goes out once per stream, on the hot path's first chunk). */
  private start(): string {
    this.started = true;
    const { model } = this.answer;
    return (
      `event: message_start\ndata: {"type":"message_start","message":{"id":${JSON.stringify(messageId(this.answer))},"type":"message",` +
      `"role":"assistant","model":${JSON.stringify(model)},"content":[],"stop_reason":null,"stop_sequence":null,` +
      `"usage":{"input_tokens":0,"output_tokens":0}}}\n\n${PING}`
    );
  }

  private parsed(chunk: ChatCompletionChunk): string {
    if (chunk.usage) this.usage = messagesUsageOf(chunk.usage);
    let out = '';
    for (const choice of chunk.choices) {
      if (choice.index !== 0) continue;
      const thinking = anthropicExtras<AnthropicDeltaExtras>(choice.delta);
      if (thinking !== undefined) out += this.thinking(thinking);
      const { content, refusal, tool_calls: toolCalls } = choice.delta;
      if (content) out += this.text(escaped(content));
      if (refusal) out += this.text(escaped(refusal));
      if (toolCalls) for (const call of toolCalls) out += this.toolDelta(call);
      if (choice.finish_reason) this.finishReason = choice.finish_reason;
    }
    return out;
  }

  /** A text delta (`json`: the text escaped, without quotes), in the open text block or in a new one. */
  private text(json: string): string {
    if (this.openText !== '') return `${this.openText}"${json}"${TEXT_DELTA_END}`;
    const index = this.nextIndex++;
    const out = this.closeBlock() + textBlockStart(index);
    this.openIndex = index;
    this.openText = textDeltaPrefix(index);
    return `${out}${this.openText}"${json}"${TEXT_DELTA_END}`;
  }

  /** A piece of thinking: text in the open thinking block (or a new one), the signature that stops it, or a whole redacted block. */
  private thinking(extras: AnthropicDeltaExtras): string {
    let out = '';
    const index = (): number => {
      if (this.openThinking) return this.openIndex;
      const opened = this.nextIndex++;
      out += this.closeBlock() + thinkingBlockStart(opened);
      this.openIndex = opened;
      this.openThinking = true;
      return opened;
    };
    if (extras.thinking) {
      const at = index();
      out += `event: content_block_delta\ndata: {"type":"content_block_delta","index":${at},"delta":{"type":"thinking_delta","thinking":${JSON.stringify(extras.thinking)}}}\n\n`;
    }
    if (extras.signature !== undefined) {
      const at = index();
      out += `event: content_block_delta\ndata: {"type":"content_block_delta","index":${at},"delta":{"type":"signature_delta","signature":${JSON.stringify(extras.signature)}}}\n\n`;
      out += this.closeBlock();
    }
    if (extras.redacted !== undefined) {
      const at = this.nextIndex++;
      out += this.closeBlock();
      const start = { type: 'content_block_start', index: at, content_block: { type: 'redacted_thinking', data: extras.redacted } };
      out += `event: content_block_start\ndata: ${JSON.stringify(start)}\n\n${blockStop(at)}`;
    }
    return out;
  }

  /** A tool call's delta: its first starts a `tool_use` block (id and name come with it), arguments are `input_json_delta`s. */
  private toolDelta(call: ToolCallDelta): string {
    const blocks = (this.toolBlocks ??= new Map());
    let index = blocks.get(call.index);
    let out = '';
    if (index === undefined) {
      index = this.nextIndex++;
      blocks.set(call.index, index);
      out += this.closeBlock();
      this.openIndex = index;
      const block = { type: 'tool_use', id: call.id ?? `toolu_${this.answer.id}_${index}`, name: call.function?.name ?? '', input: {} };
      out += `event: content_block_start\ndata: ${JSON.stringify({ type: 'content_block_start', index, content_block: block })}\n\n`;
    }
    const args = call.function?.arguments;
    if (args) {
      out += `event: content_block_delta\ndata: {"type":"content_block_delta","index":${index},"delta":{"type":"input_json_delta","partial_json":${JSON.stringify(args)}}}\n\n`;
    }
    return out;
  }

  private closeBlock(): string {
    if (this.openIndex === NO_BLOCK) return '';
    const out = blockStop(this.openIndex);
    this.openIndex = NO_BLOCK;
    this.openText = '';
    this.openThinking = false;
    return out;
  }

  private ending(stopReason: StopReason): string {
    this.ended = true;
    const usage = this.usage === undefined ? '{"output_tokens":0}' : JSON.stringify(this.usage);
    return (
      `${this.closeBlock()}event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"${stopReason}","stop_sequence":null},` +
      `"usage":${usage}}\n\n${MESSAGE_STOP}`
    );
  }
}
