/**
 * Continuation after commit (opt-in `fallbacks.continuation`): the client already has part of an answer
 * (the partial, P) when the upstream fails; a fallback group is asked to go on from P, and its answer (F)
 * is joined to P so that the client sees one answer, with nothing repeated and no word spliced.
 *
 * Models asked to continue do one of three things, and F's text is held until it is clear which:
 * - restart from the beginning: F starts with P (compared with whitespace runs folded to one space), so
 *   the first |P| characters' worth of F are dropped;
 * - partial restart: F starts with a suffix of P, of any length, which is dropped;
 * - true continuation: F starts with new text, kept as is (with a word-boundary check at the join).
 * Anything else (F repeats a stretch of P and then goes elsewhere, a rewrite; F ends while still inside
 * P; a join that could be a spliced word) cannot be joined with confidence, and the request ends with
 * the in-band error frame: a visible failure is better than a garbled answer presented as a success.
 *
 * A tool call cut mid-arguments is never continued: half a JSON argument string cannot be resumed by
 * another model, so only text answers are continued.
 */
import type { GatewayContext, OutputFilter, OutputHook } from './context.js';
import { BadRequestError, GatewayError, UpstreamError } from './errors.js';
import type { ChatCompletionChunk, ChatMessage } from './types.js';

/**
 * The continuation could not be joined to what the client has. Not retryable: the fallback deployment is
 * healthy (this must not count towards its cooldown), and the gateway's own decision not to splice is final.
 */
export class ContinuationError extends GatewayError {
  readonly status = 502;
  readonly type = 'upstream_error';
  readonly retryable = false;
}

/** Suffix overlaps shorter than this are chance unless they restate a whole word fragment (see `decide`). */
const MIN_OVERLAP = 4;
/** A continuation that starts with this many characters of the answer's beginning is a restart. */
const RESTART_EVIDENCE = 8;
/** A continuation that repeats this many characters of the partial without reaching its end is a rewrite. */
const REPEAT_EVIDENCE = 16;
/** Held characters before the first look; later looks come after a quarter more (a few scans in all). */
const FIRST_CHECK = 8;
const MIN_CHECK_STEP = 32;

interface ContinuationState {
  /** The messages as they were before the first continuation (a second one rebuilds from them). */
  readonly messages: ChatMessage[];
  hook: OutputHook | undefined;
}

const states = new WeakMap<GatewayContext, ContinuationState>();

/**
 * Whether the answer the client has can be continued: some text of a single choice, and no tool call
 * started (its arguments may be cut anywhere).
 */
export function canContinue(ctx: GatewayContext): boolean {
  const writer = ctx.writer;
  return !writer.finished && (ctx.body.n ?? 1) <= 1 && !writer.sentToolCall() && writer.sentText() !== '';
}

/**
 * Sets up a continuation after commit: the fallback sees the partial answer and is asked to go on, and its
 * output goes through a `ContinuationFilter`. Returns false (nothing changed) when the answer cannot be
 * continued; the caller then ends the request with the original error.
 */
export function prepareContinuation(ctx: GatewayContext, instruction: string): boolean {
  if (!canContinue(ctx)) return false;
  let state = states.get(ctx);
  if (!state) {
    state = { messages: ctx.body.messages, hook: undefined };
    states.set(ctx, state);
  }
  // A second continuation (the first fallback failed too) starts from what the client has now, once.
  if (state.hook) {
    const at = ctx.hooks.output.indexOf(state.hook);
    if (at >= 0) ctx.hooks.output.splice(at, 1);
  }
  const partial = ctx.writer.sentText();
  ctx.body = {
    ...ctx.body,
    messages: [...state.messages, { role: 'assistant', content: partial }, { role: 'user', content: instruction }],
  };
  state.hook = () => new ContinuationFilter(partial);
  ctx.hooks.output.push(state.hook);
  return true;
}

/**
 * What a failed continuation attempt reports. A 400 there is about the request the gateway built (many
 * providers refuse a conversation with the assistant's partial answer in it, or an assistant prefill), not
 * about the client's: it becomes an upstream error, so another continuation group can be tried and the
 * client never sees `invalid_request_error` for a request it got right.
 */
export function continuationFailure(err: unknown, group: string): unknown {
  if (!(err instanceof BadRequestError)) return err;
  return new UpstreamError(`The fallback '${group}' refused to continue the interrupted answer: ${err.message}`, {
    status: 502,
    cause: err,
    ...(err.upstreamStatus === undefined ? {} : { upstreamStatus: err.upstreamStatus }),
  });
}

/** What to drop from the held text (`strip` normalised characters, or `dropRaw` raw ones) and what to put before the rest. */
interface Join {
  strip: number;
  dropRaw: number;
  prefix: string;
}
type Decision = Join | 'hold';
const KEEP: Join = { strip: 0, dropRaw: 0, prefix: '' };
const stripped = (strip: number): Join => ({ strip, dropRaw: 0, prefix: '' });

/**
 * Drops the continuation's role chunk and joins its text to the partial answer (see the file comment).
 * Holds the continuation until the join is decided: at most |P| plus a quarter of the held length while
 * the continuation still matches text of P, usually a few characters. Each look at the held text is one
 * linear scan (KMP) of P, and looks are spaced geometrically, so a long partial costs O((|P| + |F|) log |F|)
 * in all, not per chunk.
 */
export class ContinuationFilter implements OutputFilter {
  /** P with leading whitespace dropped and every whitespace run folded into one space. */
  private readonly normPartial: string;
  private readonly lastPartialChar: string;
  private held: ChatCompletionChunk[] = [];
  /** The held text of choice 0, as received. */
  private raw = '';
  /** The held text, normalised like `normPartial`. */
  private norm = '';
  /** For each character of `norm`: the index in `raw` just after it (after the whole run, for a space). */
  private readonly rawEnd: number[] = [];
  /** Kept aside: reading the end of a string still being appended to would flatten it on every character. */
  private normEndsInSpace = false;
  /** Length of the common prefix of `norm` and `normPartial` (a restart in progress while it equals `norm.length`). */
  private commonPrefix = 0;
  private nextCheck = FIRST_CHECK;
  private deciding = true;

  constructor(partial: string) {
    this.normPartial = normalise(partial);
    this.lastPartialChar = partial.slice(-1);
  }

  chunk(chunk: ChatCompletionChunk): ChatCompletionChunk[] {
    for (const choice of chunk.choices) delete choice.delta.role;
    if (!this.deciding) return [chunk];
    this.held.push(chunk);
    for (const choice of chunk.choices) if (choice.index === 0 && choice.delta.content) this.append(choice.delta.content);
    if (this.restartDiverged()) throw rewriteError();
    const final = chunk.choices.some((c) => c.finish_reason);
    if (!final && this.norm.length < this.nextCheck) return [];
    const decision = this.decide(final);
    if (decision === 'hold') {
      const m = this.norm.length;
      // A restart still on P's text needs no look before it passes P's end (a divergence is caught above).
      this.nextCheck = this.commonPrefix === m ? this.normPartial.length + 1 : m + Math.max(MIN_CHECK_STEP, m >> 2);
      return [];
    }
    return this.release(decision);
  }

  end(): ChatCompletionChunk[] {
    if (!this.deciding) return [];
    const decision = this.decide(true);
    return decision === 'hold' ? [] : this.release(decision);
  }

  completion(): never {
    // Before commit a failure falls back normally; a continuation is only set up for a committed stream.
    throw new Error('a continuation only exists for a committed stream');
  }

  private append(text: string): void {
    const base = this.raw.length;
    this.raw += text;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i]!;
      const at = this.norm.length;
      if (isSpace(ch.charCodeAt(0))) {
        if (at === 0) continue; // leading whitespace: a restart often begins with a newline
        if (this.normEndsInSpace) {
          this.rawEnd[at - 1] = base + i + 1;
          continue;
        }
        this.pushNorm(' ', base + i + 1);
        continue;
      }
      this.pushNorm(ch, base + i + 1);
    }
  }

  private pushNorm(ch: string, rawEnd: number): void {
    const at = this.norm.length;
    this.normEndsInSpace = ch === ' ';
    if (this.commonPrefix === at && at < this.normPartial.length && this.normPartial[at] === ch) this.commonPrefix++;
    this.norm += ch;
    this.rawEnd.push(rawEnd);
  }

  /** How much of the held text to drop (in `norm` characters) and what to put before the rest. */
  private decide(final: boolean): Decision {
    const f = this.norm;
    const p = this.normPartial;
    const m = f.length;
    const n = p.length;
    if (m === 0) return final ? this.joinAsIs() : 'hold';
    // Cheap answers first: a restart still matching P, or one that went its own way.
    if (this.commonPrefix === m && m < n && !final) return 'hold';
    if (this.restartDiverged()) throw rewriteError();
    const { inside, overlap, borders } = matchAgainst(f, p);
    if (inside === m) {
      // Everything so far is text the client has: more may come (hold), or the fallback stopped inside it.
      if (!final) return 'hold';
      if (overlap === m && (m >= MIN_OVERLAP || m === n)) return stripped(m); // repeated the end, then stopped
      throw new ContinuationError('The answer was interrupted, and the fallback answer ended inside the text already sent: it could not be continued safely.');
    }
    if (overlap === n) return stripped(n); // a full restart, then new text
    if (inside >= REPEAT_EVIDENCE && inside > overlap) throw rewriteError();
    if (overlap >= MIN_OVERLAP) return stripped(overlap);
    // A short overlap counts only when it restates a whole word fragment ("the ca" then "cat"): "bal" then
    // "loon" shares an "l" by chance, and dropping it would damage the word.
    for (let k = overlap; k > 0; k = borders[k - 1]!) {
      if (startsWord(p, n - k)) return stripped(k);
    }
    return this.joinAsIs();
  }

  /** A true continuation: keep it, making sure the join is a word boundary that reads right. */
  private joinAsIs(): Decision {
    const last = this.lastPartialChar;
    const first = this.raw.charAt(0);
    if (LOWER.test(last) && UPPER.test(first)) {
      // "open" + "A gateway": a new sentence glued to a word, or a camelCase identifier going on; no telling.
      throw new ContinuationError('The answer was interrupted, and the fallback answer could not be joined to the text already sent without risking a spliced word.');
    }
    // The model left out the space after a sentence it ended ("open." + "A gateway").
    if (SENTENCE_END.test(last) && UPPER.test(first)) return { ...KEEP, prefix: ' ' };
    // Both sides brought the space between two words.
    if (last === ' ' && first === ' ') return { ...KEEP, dropRaw: 1 };
    return KEEP;
  }

  /** The held text started like the partial answer (a restart) and then went another way (a rewrite). */
  private restartDiverged(): boolean {
    const common = this.commonPrefix;
    const n = this.normPartial.length;
    return common < this.norm.length && common < n && common >= Math.min(RESTART_EVIDENCE, n);
  }

  private release(join: Join): ChatCompletionChunk[] {
    this.deciding = false;
    let cut = join.strip > 0 ? this.rawEnd[join.strip - 1]! : join.dropRaw;
    let prefix = join.prefix;
    const out: ChatCompletionChunk[] = [];
    for (const chunk of this.held) {
      for (const choice of chunk.choices) {
        const content = choice.delta.content;
        if (choice.index !== 0 || !content) continue;
        const drop = Math.min(cut, content.length);
        cut -= drop;
        let rest = content.slice(drop);
        if (rest && prefix) {
          rest = prefix + rest;
          prefix = '';
        }
        choice.delta.content = rest;
      }
      if (!isEmpty(chunk)) out.push(chunk);
    }
    this.held = [];
    this.raw = '';
    this.norm = '';
    this.rawEnd.length = 0;
    return out;
  }
}

function rewriteError(): ContinuationError {
  return new ContinuationError('The answer was interrupted, and the fallback rewrote it instead of continuing: two versions of an answer are not spliced together.');
}

/**
 * Length of the longest suffix of `before` that `after` starts with, at least `MIN_OVERLAP` (0 otherwise),
 * whatever its length. Whitespace counts as written here; the filter compares normalised text.
 */
export function repeatedPrefixLength(before: string, after: string): number {
  if (after === '') return 0;
  const { overlap } = matchAgainst(after, before);
  return overlap >= MIN_OVERLAP ? overlap : 0;
}

/**
 * One KMP pass of `pattern` over `text`: `inside`, the longest prefix of the pattern found anywhere in the
 * text; `overlap`, the longest prefix of the pattern that the text ends with; `borders`, the pattern's
 * prefix function (the shorter overlaps are its chain from `overlap`).
 */
function matchAgainst(pattern: string, text: string): { inside: number; overlap: number; borders: Int32Array } {
  const m = pattern.length;
  const borders = new Int32Array(m);
  for (let i = 1, k = 0; i < m; i++) {
    const c = pattern.charCodeAt(i);
    while (k > 0 && pattern.charCodeAt(k) !== c) k = borders[k - 1]!;
    if (pattern.charCodeAt(k) === c) k++;
    borders[i] = k;
  }
  let q = 0;
  let inside = 0;
  for (let i = 0; i < text.length; i++) {
    if (q === m) q = borders[m - 1]!; // a whole occurrence: keep looking for the overlap at the end
    const c = text.charCodeAt(i);
    while (q > 0 && pattern.charCodeAt(q) !== c) q = borders[q - 1]!;
    if (pattern.charCodeAt(q) === c) q++;
    if (q > inside) inside = q;
  }
  return { inside, overlap: q, borders };
}

function normalise(text: string): string {
  return text.replace(/^\s+/, '').replace(/\s+/g, ' ');
}

/** The same characters as `\s` (what `normalise` folds), tested one code unit at a time. */
function isSpace(code: number): boolean {
  if (code === 32 || (code >= 9 && code <= 13)) return true;
  if (code < 0xa0) return false;
  return code === 0xa0 || code === 0x1680 || (code >= 0x2000 && code <= 0x200a) || code === 0x2028 || code === 0x2029 || code === 0x202f || code === 0x205f || code === 0x3000 || code === 0xfeff;
}

const WORD = /[\p{L}\p{N}]/u;
const LOWER = /\p{Ll}/u;
const UPPER = /\p{Lu}/u;
const SENTENCE_END = /[.!?]/;

function startsWord(text: string, at: number): boolean {
  return WORD.test(text.charAt(at)) && (at === 0 || !WORD.test(text.charAt(at - 1)));
}

/** A chunk left with nothing for the client once its repeated text is dropped. */
function isEmpty(chunk: ChatCompletionChunk): boolean {
  if (chunk.usage) return false;
  return chunk.choices.every((c) => !c.finish_reason && Object.entries(c.delta).every(([key, value]) => key === 'content' && value === ''));
}
