/**
 * Lines up a masked text with its original, so a masked window can be cut at a chunk boundary.
 *
 * Bedrock returns the masked text of a whole content block (`outputs[i].text`): the original with each
 * ANONYMIZED match replaced by `{TYPE}` (PII) or `{name}` (regex). The assessments list those matches. From
 * both we recover exactly which span of the original became which tag, and so which part of the masked
 * text belongs to which streamed chunk.
 */

/** An ANONYMIZED match and the tag Bedrock put in its place. */
export interface Replacement {
  match: string;
  tag: string;
}

/** A span `[start, end)` of the original text that the masked text shows as `tag`. */
export interface MaskedSpan {
  start: number;
  end: number;
  tag: string;
}

/**
 * The spans of `original` that `masked` replaced, in order; `undefined` when `masked` is not `original`
 * with some reported matches replaced by their tags (an unexpected masking: the caller then treats the
 * window as one piece). Where a tag and its match both fit, the replacement wins over a literal match.
 */
export function maskedSpans(original: string, masked: string, replacements: readonly Replacement[]): MaskedSpan[] | undefined {
  // Longest match first, so "John Smith" wins over "John" when both were reported.
  const byLength = [...replacements].sort((a, b) => b.match.length - a.match.length);
  const spans: MaskedSpan[] = [];
  let i = 0;
  let j = 0;
  while (i < original.length || j < masked.length) {
    const hit = masked[j] === '{' ? byLength.find((r) => masked.startsWith(r.tag, j) && original.startsWith(r.match, i)) : undefined;
    if (hit) {
      spans.push({ start: i, end: i + hit.match.length, tag: hit.tag });
      i += hit.match.length;
      j += hit.tag.length;
    } else if (i < original.length && original[i] === masked[j]) {
      i += 1;
      j += 1;
    } else {
      return undefined;
    }
  }
  return spans;
}

/** True when `offset` falls strictly inside a span: cutting there would split a masked entity. */
export function isInsideSpan(offset: number, spans: readonly MaskedSpan[]): boolean {
  return spans.some((s) => offset > s.start && offset < s.end);
}

/**
 * The offset in the masked text that corresponds to `offset` in the original. An offset inside a span maps
 * to the end of its tag, so the tag goes with the chunk where the entity starts and the chunks carrying the
 * rest of the entity get nothing of it.
 */
export function maskedOffset(offset: number, spans: readonly MaskedSpan[]): number {
  let shift = 0;
  for (const s of spans) {
    if (offset <= s.start) break;
    if (offset < s.end) return s.start + shift + s.tag.length;
    shift += s.tag.length - (s.end - s.start);
  }
  return offset + shift;
}
