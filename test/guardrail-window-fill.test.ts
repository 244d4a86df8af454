/**
 * Window mode closes a window on the chunk that fills it (issue 14): when the room left in the window is
 * smaller than every delta of the lane so far, the check starts at once instead of waiting for the chunk
 * that would overflow it (one chunk interval of first-byte latency). A guess that proves wrong only makes
 * that window shorter; no window is ever longer than `windowSize`.
 */
import type { AttemptControl, GatewayContext } from '../lib/context.js';
import type { GuardrailChecker, Verdict } from '../lib/guardrail/checker.js';
import { outputHook } from '../lib/guardrail/output-filters.js';
import type { ChatCompletionChunk } from '../lib/types.js';
import { streamOf } from './helpers/fake-router.js';

function recordingChecker(seen: string[]): GuardrailChecker {
  return {
    check(_ctx: GatewayContext, _source: string, texts: readonly string[]): Promise<Verdict> {
      seen.push(texts.join(''));
      return Promise.resolve({ kind: 'pass' });
    },
  } as unknown as GuardrailChecker;
}

const ctx = { guardrails: [] } as unknown as GatewayContext;
const attempt: AttemptControl = { signal: new AbortController().signal, abort: () => undefined };

function contentChunk(content: string): ChatCompletionChunk {
  return { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] };
}

function textOf(chunks: readonly ChatCompletionChunk[]): string {
  return chunks.map((c) => c.choices.map((ch) => ch.delta.content ?? '').join('')).join('');
}

describe('window mode: closing on the chunk that fills the window', () => {
  it('checks and releases on the filling chunk when no delta so far would fit in the room left', async () => {
    const seen: string[] = [];
    const filter = outputHook(recordingChecker(seen), { mode: 'window', windowSize: 100, overlap: 20, onMask: 'apply' })(ctx, attempt);
    const text = 'abcdefghijkl'.repeat(20); // deltas of 12: 8 of them make 96 characters, 4 left
    const chunks = streamOf([text], 12);
    const out: ChatCompletionChunk[] = [];
    // The role chunk, then 7 deltas (84 characters): nothing checked, nothing released.
    for (const chunk of chunks.slice(0, 8)) out.push(...(await filter.chunk(chunk)));
    expect(seen).toEqual([]);
    expect(out).toEqual([]);
    // The 8th delta fills the window (96 of 100, less room than a delta): checked now, not on the 9th.
    out.push(...(await filter.chunk(chunks[8] as ChatCompletionChunk)));
    expect(seen).toEqual([text.slice(0, 96)]);
    expect(textOf(out)).toBe(text.slice(0, 72)); // the last 20+ characters are held back (chunk boundary at 72)
    for (const chunk of chunks.slice(9)) out.push(...(await filter.chunk(chunk)));
    out.push(...(await filter.end()));
    expect(textOf(out)).toBe(text);
    expect(Math.max(...seen.map((t) => t.length))).toBeLessThanOrEqual(100);
  });

  it('waits for the overflowing chunk when a delta as small as the room left was seen', async () => {
    const seen: string[] = [];
    const filter = outputHook(recordingChecker(seen), { mode: 'window', windowSize: 100, overlap: 0, onMask: 'apply' })(ctx, attempt);
    const deltas = ['a'.repeat(5), 'b'.repeat(30), 'c'.repeat(30), 'd'.repeat(30), 'e'.repeat(30)];
    const out: ChatCompletionChunk[] = [];
    for (const delta of deltas.slice(0, 4)) out.push(...(await filter.chunk(contentChunk(delta))));
    // 95 characters, 5 left: a delta of 5 was seen, so the next one might still fit.
    expect(seen).toEqual([]);
    out.push(...(await filter.chunk(contentChunk(deltas[4] as string))));
    expect(seen).toEqual([deltas.slice(0, 4).join('')]);
    out.push(...(await filter.end()));
    expect(textOf(out)).toBe(deltas.join(''));
  });

  it('buffer mode still makes one check at the end', async () => {
    const seen: string[] = [];
    const filter = outputHook(recordingChecker(seen), { mode: 'buffer', windowSize: 100, overlap: 20, onMask: 'apply' })(ctx, attempt);
    const text = 'abcdefghijkl'.repeat(20);
    for (const chunk of streamOf([text], 12)) expect(await filter.chunk(chunk)).toEqual([]);
    expect(textOf(await filter.end())).toBe(text);
    expect(seen).toEqual([text]);
  });
});
