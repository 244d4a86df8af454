/**
 * ApplyGuardrail's limits and how texts are laid out into calls within them
 * (see the reference `bedrock-applyguardrail.md` §5.1):
 *
 * - one text unit is up to 1,000 characters, billed `ceil(chars / 1000)` per content block and per
 *   configured policy;
 * - there is no documented per-request character cap; the binding limit is the text-units-per-second
 *   quota, whose lowest default is 25 TU/s (denied topics, and every text policy outside us-east-1 /
 *   us-west-2). AWS's own long-context sample therefore sends at most 25 text units per call
 *   (25,000 characters), and so do we: a call within it can never exceed the quota by itself.
 *
 * A text longer than one call allows is cut into pieces with `SPLIT_OVERLAP` characters in common, so a
 * phrase or an entity across a cut is seen whole by one of the two calls. Only the overlap is checked twice.
 */
import { type MaskedSpan, isInsideSpan, maskedOffset } from './masking.js';

/** Characters per text unit, the billing granularity. */
export const TEXT_UNIT_CHARS = 1000;
/** Text units per ApplyGuardrail call: the lowest default TU/s quota, as in AWS's long-context sample. */
export const MAX_UNITS_PER_CALL = 25;
/** The most characters one call (and so one content block) carries. */
export const MAX_CALL_CHARS = MAX_UNITS_PER_CALL * TEXT_UNIT_CHARS;
/** Characters two consecutive pieces of a long text share. */
export const SPLIT_OVERLAP = 100;

/** Text units a block of `length` characters is billed per policy. */
export function unitsOf(length: number): number {
  return Math.ceil(length / TEXT_UNIT_CHARS);
}

/** A piece `[start, end)` of a text. */
export interface Piece {
  start: number;
  end: number;
}

/**
 * Cuts `text` into pieces of at most `maxChars` characters, consecutive pieces sharing `overlap`
 * characters. A cut never falls between the two halves of a surrogate pair (a lone half is not a character).
 */
export function splitText(text: string, maxChars = MAX_CALL_CHARS, overlap = SPLIT_OVERLAP): Piece[] {
  if (text.length <= maxChars) return [{ start: 0, end: text.length }];
  const pieces: Piece[] = [];
  let start = 0;
  for (;;) {
    let end = Math.min(text.length, start + maxChars);
    if (end < text.length && isLowSurrogateAt(text, end)) end -= 1;
    pieces.push({ start, end });
    if (end >= text.length) return pieces;
    let next = end - overlap;
    if (isLowSurrogateAt(text, next)) next -= 1;
    start = next;
  }
}

function isLowSurrogateAt(text: string, index: number): boolean {
  const code = text.charCodeAt(index);
  return code >= 0xdc00 && code <= 0xdfff;
}

/**
 * Groups blocks (given by their lengths, in order) into calls of at most `MAX_UNITS_PER_CALL` billed
 * units each. Returns, per call, the indexes of its blocks. Every block fits one call by construction.
 */
export function groupIntoCalls(lengths: readonly number[], maxUnits = MAX_UNITS_PER_CALL): number[][] {
  const calls: number[][] = [];
  let current: number[] = [];
  let units = 0;
  lengths.forEach((length, i) => {
    const cost = unitsOf(length);
    if (current.length > 0 && units + cost > maxUnits) {
      calls.push(current);
      current = [];
      units = 0;
    }
    current.push(i);
    units += cost;
  });
  if (current.length > 0) calls.push(current);
  return calls;
}

/** A piece as checked: its masked text (the original when nothing changed) and the spans that changed. */
export interface CheckedPiece extends Piece {
  masked: string;
  spans: MaskedSpan[];
}

/**
 * The masked text of a whole text from its checked pieces. Each piece contributes its own range; the cut
 * between two pieces is chosen inside their overlap where it splits no masked entity of either, so an
 * entity masked by one piece is never half-released from the other. `undefined` when no such cut exists.
 */
export function joinPieces(length: number, pieces: readonly CheckedPiece[]): string | undefined {
  let out = '';
  let from = 0;
  for (let k = 0; k < pieces.length; k += 1) {
    const piece = pieces[k]!;
    const next = pieces[k + 1];
    const to = next === undefined ? length : cutBetween(piece, next);
    if (to === undefined) return undefined;
    out += piece.masked.slice(maskedOffset(from - piece.start, piece.spans), maskedOffset(to - piece.start, piece.spans));
    from = to;
  }
  return out;
}

/** An offset in the overlap of `a` and `b` (nearest its middle) that is inside no masked span of either. */
function cutBetween(a: CheckedPiece, b: CheckedPiece): number | undefined {
  const low = b.start;
  const high = a.end;
  const middle = Math.floor((low + high) / 2);
  const fits = (at: number): boolean => at >= low && at <= high && !isInsideSpan(at - a.start, a.spans) && !isInsideSpan(at - b.start, b.spans);
  for (let d = 0; d <= high - low; d += 1) {
    if (fits(middle - d)) return middle - d;
    if (fits(middle + d)) return middle + d;
  }
  return undefined;
}

/** Several short texts sent as one block: where each one sits in it. */
export interface Pack {
  text: string;
  members: { index: number; start: number; end: number }[];
}

/**
 * Separator between packed texts. A blank line keeps each text its own paragraph for the guardrail's
 * classifiers; phrase filters match within a text, not across one.
 */
export const PACK_SEPARATOR = '\n\n';

/**
 * Packs short texts into blocks of at most one text unit. Bedrock bills every block at least one unit per
 * policy, so twenty 40-character tool descriptions cost twenty units each as their own blocks and one
 * unit packed. A text of a unit or more stays alone.
 */
export function packTexts(texts: readonly string[], maxChars = TEXT_UNIT_CHARS): Pack[] {
  const packs: Pack[] = [];
  let current: Pack | undefined;
  texts.forEach((text, index) => {
    const needed = current === undefined ? text.length : current.text.length + PACK_SEPARATOR.length + text.length;
    if (current === undefined || needed > maxChars) {
      current = { text, members: [{ index, start: 0, end: text.length }] };
      packs.push(current);
      return;
    }
    const start = current.text.length + PACK_SEPARATOR.length;
    current.text += PACK_SEPARATOR + text;
    current.members.push({ index, start, end: start + text.length });
  });
  return packs;
}

/** The masked text of each packed member, given the pack's masked text and its masked spans. */
export function unpack(pack: Pack, masked: string, spans: readonly MaskedSpan[]): string[] {
  return pack.members.map((m) => masked.slice(maskedOffset(m.start, spans), maskedOffset(m.end, spans)));
}
