/**
 * The guardrail's building blocks without HTTP: lining up masked text, the deadline helper, and the window
 * filter driven by a scripted checker (edge cases the emulator does not produce on demand).
 */
import { getEventListeners } from 'node:events';
import type { AttemptControl, GatewayContext } from '../lib/context.js';
import { GuardrailViolationError } from '../lib/errors.js';
import type { GuardrailChecker, Verdict } from '../lib/guardrail/checker.js';
import { withDeadline } from '../lib/guardrail/checker.js';
import { maskedOffset, maskedSpans } from '../lib/guardrail/masking.js';
import { outputHook } from '../lib/guardrail/output-filters.js';
import type { ChatCompletionChunk } from '../lib/types.js';
import { streamOf, toolCallStreamOf } from './helpers/fake-router.js';

describe('maskedSpans / maskedOffset', () => {
  const original = 'Hi John Smith, mail john@x.io or John.';
  const masked = 'Hi {NAME}, mail {EMAIL} or {NAME}.';
  const replacements = [
    { match: 'John', tag: '{NAME}' },
    { match: 'John Smith', tag: '{NAME}' },
    { match: 'john@x.io', tag: '{EMAIL}' },
  ];

  it('finds every replaced span, longest match first', () => {
    expect(maskedSpans(original, masked, replacements)).toEqual([
      { start: 3, end: 13, tag: '{NAME}' },
      { start: 20, end: 29, tag: '{EMAIL}' },
      { start: 33, end: 37, tag: '{NAME}' },
    ]);
  });

  it('maps offsets, giving a tag to the chunk where its entity starts', () => {
    const spans = maskedSpans(original, masked, replacements) ?? [];
    expect(masked.slice(maskedOffset(0, spans), maskedOffset(5, spans))).toBe('Hi {NAME}');
    expect(masked.slice(maskedOffset(5, spans), maskedOffset(15, spans))).toBe(', ');
    expect(maskedOffset(original.length, spans)).toBe(masked.length);
  });

  it('gives up on a masked text that is not the original with reported matches replaced', () => {
    expect(maskedSpans('call me at 555', 'call me at {PHONE}', [])).toBeUndefined();
    expect(maskedSpans('abc', 'abd', [])).toBeUndefined();
  });
});

describe('withDeadline', () => {
  it('removes its listener from the parent and clears its timer once the call settles', async () => {
    const parent = new AbortController();
    await withDeadline(parent.signal, 60_000, () => Promise.resolve('ok'));
    await expect(withDeadline(parent.signal, 60_000, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0);
  });

  it('aborts the call at the deadline, and with the parent', async () => {
    const hang = (signal: AbortSignal): Promise<never> => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    await expect(withDeadline(new AbortController().signal, 20, hang)).rejects.toThrow('deadline of 20 ms exceeded');
    const parent = new AbortController();
    const reason = new Error('client gone');
    const call = withDeadline(parent.signal, 60_000, hang);
    parent.abort(reason);
    await expect(call).rejects.toThrow('aborted');
  });
});

/** A checker that answers from a script and logs the texts it was given. */
function scriptedChecker(answer: (text: string) => Verdict | Error, seen: string[][] = []): GuardrailChecker {
  const checker = {
    check(_ctx: GatewayContext, _source: string, texts: readonly string[]): Promise<Verdict> {
      seen.push([...texts]);
      const verdict = answer(texts.join('\n'));
      return verdict instanceof Error ? Promise.reject(verdict) : Promise.resolve(verdict);
    },
  };
  return checker as unknown as GuardrailChecker;
}

const ctx = { guardrails: [] } as unknown as GatewayContext;
const attempt: AttemptControl = { signal: new AbortController().signal, abort: () => undefined };
const pass = (): Verdict => ({ kind: 'pass' });

function textOf(chunks: readonly ChatCompletionChunk[]): string {
  return chunks.map((c) => c.choices.map((ch) => ch.delta.content ?? '').join('')).join('');
}

describe('window filter', () => {
  it('keeps order when the caller does not wait for a check', async () => {
    const filter = outputHook(scriptedChecker(pass), { mode: 'window', windowSize: 50, overlap: 10, onMask: 'apply' })(ctx, attempt);
    const text = 'abcdefghij'.repeat(20);
    const results = streamOf([text], 7).map((c) => filter.chunk(c)); // fired without awaiting
    const out = (await Promise.all(results)).flat();
    out.push(...(await filter.end()));
    expect(textOf(out)).toBe(text);
    expect(out.at(-1)?.usage).toBeDefined();
  });

  it('checks windows of at most windowSize characters, re-checking only the held-back overlap', async () => {
    const seen: string[][] = [];
    const filter = outputHook(scriptedChecker(pass, seen), { mode: 'window', windowSize: 100, overlap: 20, onMask: 'apply' })(ctx, attempt);
    const text = 'x'.repeat(1000);
    for (const chunk of streamOf([text], 10)) await filter.chunk(chunk);
    await filter.end();
    const lengths = seen.map((t) => t[0]?.length ?? 0);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(100);
    expect(lengths.reduce((a, b) => a + b, 0) - text.length).toBeLessThanOrEqual(20 * (lengths.length - 1));
  });

  it('releases a window masked in an unexpected way as one piece, never the original text', async () => {
    const checker = scriptedChecker((t) => (t.includes('secret') ? { kind: 'mask', outputs: [t.replace('secret', '[gone]')], replacements: [] } : { kind: 'pass' }));
    const filter = outputHook(checker, { mode: 'window', windowSize: 40, overlap: 5, onMask: 'apply' })(ctx, attempt);
    const text = `${'a'.repeat(30)} the secret is out ${'b'.repeat(40)}`;
    const out: ChatCompletionChunk[] = [];
    for (const chunk of streamOf([text], 4)) out.push(...(await filter.chunk(chunk)));
    out.push(...(await filter.end()));
    expect(textOf(out)).toBe(text.replace('secret', '[gone]'));
    expect(JSON.stringify(out)).not.toContain('secret');
  });

  it('checks each tool call as its own lane and blocks on its arguments', async () => {
    const seen: string[][] = [];
    const checker = scriptedChecker((t) => (t.includes('bad') ? new GuardrailViolationError() : { kind: 'pass' }), seen);
    const filter = outputHook(checker, { mode: 'window', windowSize: 1000, overlap: 100, onMask: 'apply' })(ctx, attempt);
    for (const chunk of toolCallStreamOf('{"q":"very bad"}', 3)) await filter.chunk(chunk);
    await expect(filter.end()).rejects.toBeInstanceOf(GuardrailViolationError);
    expect(seen).toEqual([['{"q":"very bad"}']]);
  });

  it('async: a failure in the background aborts the attempt and fails end()', async () => {
    const aborted: Error[] = [];
    const control: AttemptControl = { signal: new AbortController().signal, abort: (e) => aborted.push(e) };
    const checker = scriptedChecker((t) => (t.includes('bad') ? new GuardrailViolationError() : { kind: 'pass' }));
    const filter = outputHook(checker, { mode: 'async', windowSize: 20, overlap: 5, onMask: 'block' })(ctx, control);
    const chunks = streamOf([`${'a'.repeat(18)}bad${'c'.repeat(40)}`], 5);
    // The second window (with 5 characters of the first as context) holds "bad"; it starts at chunk 8.
    for (const chunk of chunks.slice(0, 9)) expect(await filter.chunk(chunk)).toEqual([chunk]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(aborted[0]).toBeInstanceOf(GuardrailViolationError);
    expect(() => filter.chunk(chunks[9] as ChatCompletionChunk)).toThrow(GuardrailViolationError);
    await expect(filter.end()).rejects.toBeInstanceOf(GuardrailViolationError);
  });
});
