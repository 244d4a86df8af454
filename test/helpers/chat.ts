/**
 * One chat request through a gateway over real HTTP, its outcome normalized so a streamed and a
 * non-streamed answer can be compared field by field (the parity invariant).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { rawRequest, sseData } from './http.js';

export interface ChatOutcome {
  status: number;
  /** The answer text (streamed deltas joined), '' when none. */
  text: string;
  finishReason: string | null | undefined;
  /** The error object: the JSON body's before commit, the in-band frame's after. */
  error: Record<string, unknown> | undefined;
  /** Whether an in-band error frame ended a committed stream. */
  inBand: boolean;
  headers: IncomingHttpHeaders;
  /** Raw SSE payloads (streaming only). */
  frames: string[];
  /** The response body ended normally (not cut). */
  complete: boolean;
  usage: unknown;
  /** When the client left (with `abortAfterMs`). */
  abortedAt?: number;
}

export const ATTEMPT_HEADERS = ['x-gateway-model-group', 'x-gateway-deployment', 'x-gateway-attempts', 'x-gateway-retries', 'x-gateway-fallbacks'] as const;

export interface ChatOptions {
  headers?: Record<string, string>;
  abortAfterMs?: number;
  path?: string;
}

export async function chat(baseUrl: string, body: Record<string, unknown>, options: ChatOptions = {}): Promise<ChatOutcome> {
  const res = await rawRequest(baseUrl, { body, path: options.path, headers: options.headers, abortAfterMs: options.abortAfterMs });
  const base = { status: res.status, headers: res.headers, complete: res.complete, frames: [] as string[], ...(res.abortedAt ? { abortedAt: res.abortedAt } : {}) };
  const isStream = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
  if (!isStream) {
    const json = res.text ? (JSON.parse(res.text) as Record<string, unknown>) : {};
    if (res.status !== 200) return { ...base, text: '', finishReason: undefined, error: json['error'] as Record<string, unknown>, inBand: false, usage: undefined };
    const choice = (json['choices'] as { message: { content: string | null }; finish_reason: string | null }[])[0];
    return { ...base, text: choice?.message.content ?? '', finishReason: choice?.finish_reason, error: undefined, inBand: false, usage: json['usage'] };
  }
  const frames = sseData(res.text);
  let text = '';
  let finishReason: string | null | undefined;
  let error: Record<string, unknown> | undefined;
  let usage: unknown;
  for (const frame of frames) {
    if (frame === '[DONE]') continue;
    const data = JSON.parse(frame) as Record<string, unknown>;
    if (data['error']) {
      error = data['error'] as Record<string, unknown>;
      continue;
    }
    if (data['usage']) usage = data['usage'];
    for (const choice of (data['choices'] as { index: number; delta: { content?: string | null }; finish_reason: string | null }[]) ?? []) {
      if (choice.index !== 0) continue;
      text += choice.delta.content ?? '';
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
  }
  return { ...base, frames, text, finishReason, error, inBand: error !== undefined, usage };
}

/** The same request without and with streaming. */
export async function chatBoth(baseUrl: string, body: Record<string, unknown>, options: ChatOptions = {}): Promise<[ChatOutcome, ChatOutcome]> {
  const plain = await chat(baseUrl, { ...body, stream: false }, options);
  const streamed = await chat(baseUrl, { ...body, stream: true }, options);
  return [plain, streamed];
}

/** What must agree between the two modes before commit: status, error object, text, attempt headers. */
export function parityView(outcome: ChatOutcome): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const h of ATTEMPT_HEADERS) headers[h] = outcome.headers[h];
  return { status: outcome.status, error: outcome.error, text: outcome.text, finishReason: outcome.error ? undefined : outcome.finishReason, headers };
}
