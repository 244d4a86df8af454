/**
 * `POST /v1/chat/completions`: the gateway's internal shape is this protocol's own, so the mapping is the
 * validation alone and a chunk goes out as one `data:` frame (the upstream's own text when it was forwarded
 * raw). A stream ends with `data: [DONE]`, after the in-band error frame when it failed.
 */
import type { ErrorBodyForm, GatewayError } from '../../errors.js';
import { RawChunk, type StreamChunk } from '../../raw-chunk.js';
import { compileRequestValidator, validateChatCompletionRequest } from '../../request-validation.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionChunkDelta, ChatCompletionRequest } from '../../types.js';
import type { AnswerInfo, Protocol, ProtocolEncoder } from '../types.js';

export const CHAT_COMPLETIONS_PATH = '/v1/chat/completions';
export const DONE_FRAME = 'data: [DONE]\n\n';

class ChatEncoder implements ProtocolEncoder {
  /** Whether a chunk went out (the soft stop's first delta then carries no role). */
  private started = false;

  constructor(private readonly answer: AnswerInfo) {}

  chunk(chunk: StreamChunk): string {
    this.started = true;
    return `data: ${chunk instanceof RawChunk ? chunk.data : JSON.stringify(chunk)}\n\n`;
  }

  end(): string {
    return DONE_FRAME;
  }

  error(error: GatewayError, form: ErrorBodyForm, extra?: Record<string, unknown>): string {
    return `data: ${JSON.stringify(error.toBody(form, extra))}\n\n${DONE_FRAME}`;
  }

  softStop(text: string): string {
    const opening: ChatCompletionChunkDelta = this.started ? { content: text } : { role: 'assistant', content: text };
    this.started = true;
    return `${this.frame(opening, null)}${this.frame({}, 'content_filter')}${DONE_FRAME}`;
  }

  private frame(delta: ChatCompletionChunkDelta, finish: 'content_filter' | null): string {
    const { id, created, model } = this.answer;
    const chunk: ChatCompletionChunk = { id: `chatcmpl-${id}`, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] };
    return `data: ${JSON.stringify(chunk)}\n\n`;
  }
}

export const chatProtocol: Protocol = {
  name: 'chat',
  path: CHAT_COMPLETIONS_PATH,
  compile: () => {
    compileRequestValidator();
  },
  toChatRequest(body: unknown): ChatCompletionRequest {
    return validateChatCompletionRequest(compileRequestValidator(), body);
  },
  encoder: (answer) => new ChatEncoder(answer),
  completion: (completion, _answer, rawBody) => rawBody ?? JSON.stringify(completion),
  softCompletion(text: string, { id, created, model }: AnswerInfo): string {
    const completion: ChatCompletion = {
      id: `chatcmpl-${id}`,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'content_filter' }],
    };
    return JSON.stringify(completion);
  },
  errorBody: (error, form, extra) => error.toBody(form, extra),
};
