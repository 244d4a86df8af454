/**
 * `POST /v1/responses`: OpenAI's Responses API, stateless (issue 16). The body maps to the internal chat
 * request (`request.ts`), a stream is written as Responses events (`encoder.ts`), a whole answer as one
 * Response object (`response.ts`). Errors before commit use the chat path's JSON body with the real status:
 * openai-node and the AI SDK read it the same on both endpoints (docs/reference/responses-and-messages-clients.md).
 */
import type { ChatCompletion, ChatMessage, ContentPart } from '../../types.js';
import type { Protocol } from '../types.js';
import { ResponsesEncoder } from './encoder.js';
import { compileResponsesValidator, toChatRequest } from './request.js';
import { fixedMembers, outcomeOf, responseJson, usageOf, type OutputItem, type OutputPart, type ResponsesAnswerInfo } from './response.js';

export const RESPONSES_PATH = '/v1/responses';

export const responsesProtocol: Protocol = {
  name: 'responses',
  path: RESPONSES_PATH,
  compile: () => {
    compileResponsesValidator();
  },
  toChatRequest,
  encoder: (answer: ResponsesAnswerInfo) => new ResponsesEncoder(answer),
  completion: (completion: ChatCompletion, answer: ResponsesAnswerInfo) => wholeResponse(completion, answer),
  softCompletion(text: string, answer: ResponsesAnswerInfo): string {
    const output: OutputItem[] = [
      { id: `msg_${answer.id}`, type: 'message', status: 'incomplete', role: 'assistant', content: [outputText(text)] },
    ];
    const ending = { status: 'incomplete' as const, incompleteDetails: { reason: 'content_filter' as const }, outputJson: JSON.stringify(output), usage: usageOf(undefined) };
    return responseJson(fixedMembers(answer), ending);
  },
  errorBody: (error, form, extra) => error.toBody(form, extra),
};

/** The Response object (JSON) of a whole chat answer (choice 0). */
function wholeResponse(completion: ChatCompletion, answer: ResponsesAnswerInfo): string {
  const choice = completion.choices.find((c) => c.index === 0) ?? completion.choices[0];
  const { status, details } = outcomeOf(choice?.finish_reason);
  const itemStatus = status === 'completed' ? 'completed' : 'incomplete';
  const output: OutputItem[] = [];
  const message = choice?.message;
  if (message !== undefined) {
    const content = outputParts(message);
    if (content.length > 0) output.push({ id: `msg_${answer.id}`, type: 'message', status: itemStatus, role: 'assistant', content });
    const legacy = message.function_call;
    const calls = message.tool_calls?.length ? message.tool_calls : legacy ? [{ id: `call_${answer.id}_0`, function: legacy }] : [];
    for (const call of calls) {
      output.push({
        id: `fc_${answer.id}_${output.length}`,
        type: 'function_call',
        status: itemStatus,
        arguments: call.function.arguments,
        call_id: call.id,
        name: call.function.name,
      });
    }
  }
  return responseJson(fixedMembers(answer), { status, incompleteDetails: details, outputJson: JSON.stringify(output), usage: usageOf(completion.usage) });
}

function outputText(text: string): OutputPart {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

/** The message's text and refusal as output parts (empty texts say nothing and are left out). */
function outputParts(message: ChatMessage): OutputPart[] {
  const parts: OutputPart[] = [];
  const content = message.content;
  if (typeof content === 'string') {
    if (content !== '') parts.push(outputText(content));
  } else if (Array.isArray(content)) {
    for (const part of content as ContentPart[]) {
      if (part.type === 'text' && part.text !== '') parts.push(outputText(part.text));
      else if (part.type === 'refusal' && part.refusal !== '') parts.push({ type: 'refusal', refusal: part.refusal });
    }
  }
  if (typeof message.refusal === 'string' && message.refusal !== '') parts.push({ type: 'refusal', refusal: message.refusal });
  return parts;
}
