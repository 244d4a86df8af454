/**
 * `POST /v1/messages`, Anthropic's Messages API (issue 16): the body maps to the internal chat request
 * (`request.ts`), a stream goes out as Anthropic's events (`encoder.ts`), a whole answer as a `Message`, and
 * every error as `{"type":"error","error":{"type","message"}}` with Anthropic's error types (`answer.ts`).
 */
import type { Protocol } from '../types.js';
import { messageJson, messagesErrorBody, softMessageJson } from './answer.js';
import { MessagesEncoder } from './encoder.js';
import { compileMessagesValidator, toChatRequest } from './request.js';

export const MESSAGES_PATH = '/v1/messages';

export { anthropicErrorType, messagesErrorBody, type MessagesErrorBody } from './answer.js';
export { MessagesEncoder } from './encoder.js';

export const messagesProtocol: Protocol = {
  name: 'messages',
  path: MESSAGES_PATH,
  compile: () => {
    compileMessagesValidator();
  },
  toChatRequest,
  encoder: (answer) => new MessagesEncoder(answer),
  completion: (completion, answer) => messageJson(completion, answer),
  softCompletion: softMessageJson,
  errorBody: (error, _form, extra) => messagesErrorBody(error, extra),
};
