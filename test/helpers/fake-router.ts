/**
 * A stand-in for the router in guardrail tests: it plays a scripted upstream answer through the context's
 * hooks and writer exactly as the router contract says. During-call hooks run once, at the upstream call,
 * holding the commit and aborting the upstream when they reject; output hooks get a fresh filter per
 * attempt; streamed chunks go through every filter in order; errors go to `next(err)` after the upstream
 * is aborted with them.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { type AttemptControl, type GatewayContext, type OutputFilter, getContext } from '../../lib/context.js';
import { guardrailHeaders } from '../../lib/bedrock-guardrail.js';
import type { ChatCompletion, ChatCompletionChunk } from '../../lib/types.js';

/** What the fake upstream answers. In `chunks`, a number is a pause in ms before the next chunk. */
export interface UpstreamScript {
  chunks?: (ChatCompletionChunk | number)[];
  completion?: ChatCompletion;
  /** Pause before the answer (non-streaming) or before every chunk (streaming). Default 0. */
  delayMs?: number;
}

/** One upstream call as the test sees it. */
export interface UpstreamCall {
  /** The messages the model was given (after input masking). */
  messages: unknown;
  startedAt: number;
  chunksProduced: number;
  abortedAt?: number;
  abortReason?: unknown;
}

export function fakeRouter(script: (ctx: GatewayContext) => UpstreamScript, calls: UpstreamCall[] = []): RequestHandler {
  return function fakeRouterMiddleware(req: Request, res: Response, next: NextFunction): void {
    const ctx = getContext(req);
    playUpstream(ctx, res, script(ctx), calls).catch(next);
  };
}

async function playUpstream(ctx: GatewayContext, res: Response, script: UpstreamScript, calls: UpstreamCall[]): Promise<void> {
  const upstream = new AbortController();
  const call: UpstreamCall = { messages: structuredClone(ctx.body.messages), startedAt: Date.now(), chunksProduced: 0 };
  calls.push(call);
  upstream.signal.addEventListener('abort', () => {
    call.abortedAt = Date.now();
    call.abortReason = upstream.signal.reason;
  });
  const onClientGone = (): void => upstream.abort(ctx.signal.reason);
  ctx.signal.addEventListener('abort', onClientGone, { once: true });
  try {
    for (const hook of ctx.hooks.duringCall) {
      const check = hook(ctx, ctx.signal);
      ctx.writer.holdCommitUntil(check);
      check.catch((err: unknown) => upstream.abort(err));
    }
    const attempt: AttemptControl = { signal: upstream.signal, abort: (reason) => upstream.abort(reason) };
    const filters = ctx.hooks.output.map((hook) => hook(ctx, attempt));
    if (ctx.stream) await streamAnswer(ctx, res, script, filters, upstream.signal, call);
    else await sendCompletion(ctx, res, script, filters, upstream.signal);
  } catch (err) {
    upstream.abort(err);
    throw upstream.signal.reason;
  } finally {
    ctx.signal.removeEventListener('abort', onClientGone);
  }
}

async function streamAnswer(
  ctx: GatewayContext,
  res: Response,
  script: UpstreamScript,
  filters: OutputFilter[],
  signal: AbortSignal,
  call: UpstreamCall,
): Promise<void> {
  for (const item of script.chunks ?? []) {
    if (typeof item === 'number') {
      await sleep(item, signal);
      continue;
    }
    await sleep(script.delayMs ?? 0, signal);
    call.chunksProduced += 1;
    let batch = [item];
    for (const filter of filters) batch = await flatChunks(filter, batch);
    await sendAll(ctx, res, batch, signal);
  }
  // Each filter's tail still goes through the filters after it.
  let tail: ChatCompletionChunk[] = [];
  for (const filter of filters) tail = [...(await flatChunks(filter, tail)), ...(await filter.end())];
  await sendAll(ctx, res, tail, signal);
  if (signal.aborted) throw signal.reason;
  ctx.writer.finish();
}

async function flatChunks(filter: OutputFilter, chunks: readonly ChatCompletionChunk[]): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for (const chunk of chunks) out.push(...(await filter.chunk(chunk)));
  return out;
}

async function sendAll(ctx: GatewayContext, res: Response, chunks: readonly ChatCompletionChunk[], signal: AbortSignal): Promise<void> {
  for (const chunk of chunks) {
    if (signal.aborted) throw signal.reason;
    setGuardrailHeaders(ctx, res);
    await ctx.writer.send(chunk);
  }
}

async function sendCompletion(ctx: GatewayContext, res: Response, script: UpstreamScript, filters: OutputFilter[], signal: AbortSignal): Promise<void> {
  await sleep(script.delayMs ?? 0, signal);
  let completion = script.completion;
  if (!completion) throw new Error('fake router: no completion scripted');
  for (const filter of filters) completion = await filter.completion(completion);
  if (signal.aborted) throw signal.reason;
  setGuardrailHeaders(ctx, res);
  await ctx.writer.json(completion);
}

/** The router's writer will add these at commit; here they are set just before the first write. */
function setGuardrailHeaders(ctx: GatewayContext, res: Response): void {
  if (ctx.writer.committed) return;
  for (const [name, value] of Object.entries(guardrailHeaders(ctx.guardrails))) res.setHeader(name, value);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

// ---- scripted answers ----

const CREATED = 1_700_000_000;

function chunkOf(choices: ChatCompletionChunk['choices'], extra: Partial<ChatCompletionChunk> = {}): ChatCompletionChunk {
  return { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: CREATED, model: 'fake-model', choices, ...extra };
}

/** Cuts `text` into deltas of `size` characters. */
export function deltasOf(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/**
 * A stream answering `texts` (one per choice, interleaved like OpenAI's `n > 1`): a role chunk per choice,
 * the content in deltas of `size` characters, a finish chunk per choice and a final usage chunk.
 */
export function streamOf(texts: readonly string[], size = 10): ChatCompletionChunk[] {
  const chunks: ChatCompletionChunk[] = texts.map((_, index) => chunkOf([{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
  const deltas = texts.map((t) => deltasOf(t, size));
  const steps = Math.max(...deltas.map((d) => d.length));
  for (let step = 0; step < steps; step++) {
    deltas.forEach((d, index) => {
      const content = d[step];
      if (content !== undefined) chunks.push(chunkOf([{ index, delta: { content }, finish_reason: null }]));
    });
  }
  texts.forEach((_, index) => chunks.push(chunkOf([{ index, delta: {}, finish_reason: 'stop' }])));
  chunks.push(chunkOf([], { usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } }));
  return chunks;
}

/** A stream calling one tool whose arguments arrive in deltas of `size` characters. */
export function toolCallStreamOf(args: string, size = 10): ChatCompletionChunk[] {
  const first = chunkOf([
    { index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '' } }] }, finish_reason: null },
  ]);
  const parts = deltasOf(args, size).map((a) => chunkOf([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: a } }] }, finish_reason: null }]));
  return [first, ...parts, chunkOf([{ index: 0, delta: {}, finish_reason: 'tool_calls' }])];
}

/** The same answers as a whole completion. */
export function completionOf(texts: readonly string[]): ChatCompletion {
  return {
    id: 'chatcmpl-fake',
    object: 'chat.completion',
    created: CREATED,
    model: 'fake-model',
    choices: texts.map((content, index) => ({ index, message: { role: 'assistant', content }, finish_reason: 'stop' })),
    usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
  };
}

/** A completion calling one tool with `args`. */
export function toolCallCompletionOf(args: string): ChatCompletion {
  return {
    id: 'chatcmpl-fake',
    object: 'chat.completion',
    created: CREATED,
    model: 'fake-model',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: args } }] },
        finish_reason: 'tool_calls',
      },
    ],
  };
}
