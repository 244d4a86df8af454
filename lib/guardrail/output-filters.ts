/**
 * The post-call output checks, one `OutputFilter` per upstream attempt.
 *
 * Streamed text is tracked per *lane*: one lane per choice and field (content, refusal, each tool call's
 * arguments), so `n > 1` and parallel tool calls are each checked as continuous text.
 *
 * - `window` / `buffer` (`HeldWindowFilter`): chunks are held until every text they carry has been checked,
 *   then released in order (a held chunk holds every later one, finish and usage chunks included). A lane's
 *   window is closed just before the chunk that would take it past `windowSize` characters, so a check
 *   costs one text unit per configured policy. It is closed as soon as the chunk that *fills* it arrives when
 *   no delta of the lane so far would fit in the room left (the next one almost surely would not either):
 *   the check then starts one chunk interval earlier instead of waiting for the chunk that overflows. A
 *   guess that proves wrong only makes that window shorter than it could have been, by less than the
 *   lane's smallest delta; every window stays within `windowSize`. The last `overlap` characters of a checked window are
 *   *held back* (checked, not released) and checked again at the start of the next window: a violation or
 *   an entity across the window edge is then seen whole before any of it goes out. `buffer` is the same
 *   with one window for the whole answer.
 * - `async` (`AsyncWindowFilter`): chunks go out at once; windows (with `overlap` characters of context) are
 *   checked behind the stream, and a block aborts the attempt. Leaks by design, like Bedrock's async mode.
 *
 * Every check goes through `checkTexts`, so a buffered answer or a window larger than one
 * ApplyGuardrail call may carry (25 text units) is split into several calls within the limits.
 */
import type { AttemptControl, GatewayContext, OutputFilter, OutputHook } from '../context.js';
import type { ChatCompletion, ChatCompletionChunk } from '../types.js';
import { type GuardrailChecker, type MaskHandling, checkTexts } from './checker.js';
import { type MessageLike, type TextField, maskedCompletion, outputSpotsOf, textSpotsOf, writeText } from './extract.js';
import { type MaskedSpan, isInsideSpan, maskedOffset, maskedSpans } from './masking.js';

export type StreamingMode = 'buffer' | 'window' | 'async';

export interface OutputCheckConfig {
  mode: StreamingMode;
  windowSize: number;
  overlap: number;
  onMask: MaskHandling;
}

/** The `post_call` hook: a fresh filter for every upstream attempt. */
export function outputHook(checker: GuardrailChecker, config: OutputCheckConfig): OutputHook {
  return (ctx, attempt) => {
    if (config.mode === 'async') return new AsyncWindowFilter(ctx, attempt, checker, config);
    const windowSize = config.mode === 'buffer' ? Infinity : config.windowSize;
    const holdBack = config.mode === 'buffer' ? 0 : config.overlap;
    return new HeldWindowFilter(ctx, attempt, checker, { ...config, windowSize, overlap: holdBack });
  };
}

/** Checks every choice of a whole completion (one content block per text, split into calls within the limits) and masks or blocks. */
async function checkCompletion(
  ctx: GatewayContext,
  attempt: AttemptControl,
  checker: GuardrailChecker,
  onMask: MaskHandling,
  completion: ChatCompletion,
): Promise<ChatCompletion> {
  const spots = outputSpotsOf(completion);
  if (spots.length === 0) return completion;
  const verdict = await checkTexts(checker, ctx, 'OUTPUT', spots.map((s) => s.text), attempt.signal, onMask);
  return verdict.kind === 'mask' ? maskedCompletion(completion, spots, verdict.outputs) : completion;
}

/** The continuous text of one choice's field, e.g. choice 1's content or choice 0's second tool call. */
function laneKey(choiceIndex: number, field: TextField, laneIndex: number): string {
  return `${choiceIndex}/${field}/${laneIndex}`;
}

/** The tool call's own `index` names its lane (deltas of one call may sit at different array positions). */
function laneIndexOf(delta: MessageLike, field: TextField, part: number): number {
  if (field !== 'tool') return 0;
  const call = delta.tool_calls?.[part] as { index?: unknown } | undefined;
  return typeof call?.index === 'number' ? call.index : part;
}

// ---- window and buffer ----

interface HeldLane {
  /** Text not decided yet, starting at absolute offset `decidedTo`: held-back checked text, then unchecked text. */
  text: string;
  /** Offset up to which the lane's output is final (checked, and masked if needed). */
  decidedTo: number;
  /** How much of `text` was already checked (the held-back tail of the last window). */
  checkedLength: number;
  /** The masking of the last check, which covers the held-back text; used when the stream ends there. */
  lastMask: WindowMask | undefined;
  /** Length of the lane's shortest delta so far: a window with less room left than that is treated as full. */
  smallestDelta: number;
}

interface WindowMask {
  /** Absolute offset where the checked window started. */
  start: number;
  masked: string;
  spans: MaskedSpan[];
}

/** One text of a held chunk: where it sits in its lane, where it sits in the chunk, and its masked text once decided. */
interface HeldPart {
  lane: HeldLane;
  text: string;
  start: number;
  end: number;
  choice: number;
  field: TextField;
  part: number;
  out?: string;
}

interface HeldChunk {
  chunk: ChatCompletionChunk;
  parts: HeldPart[];
}

/** Shared by every call that releases nothing; frozen, so a caller that mutates it fails loudly. */
const NOTHING = Object.freeze([]) as unknown as ChatCompletionChunk[];

class HeldWindowFilter implements OutputFilter {
  private readonly lanes = new Map<string, HeldLane>();
  private held: HeldChunk[] = [];
  private releasedAny = false;
  /** The check in progress; a caller that does not wait for it is queued behind it. */
  private busy: Promise<unknown> | undefined;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly attempt: AttemptControl,
    private readonly checker: GuardrailChecker,
    private readonly config: OutputCheckConfig,
  ) {}

  chunk(chunk: ChatCompletionChunk): ChatCompletionChunk[] | Promise<ChatCompletionChunk[]> {
    if (this.busy) return this.busy.then(() => this.chunk(chunk));
    const parts = this.partsOf(chunk);
    // Nothing to check and nothing ahead of it: a finish or usage chunk after the text went out.
    if (parts.length === 0) {
      if (this.held.length === 0 && this.releasedAny) return [chunk];
      this.held.push({ chunk, parts });
      return NOTHING;
    }
    const closing = this.lanesWhere(parts, (p) => this.closesBefore(p));
    if (closing.length > 0) return this.track(this.closeThenHold(chunk, parts, closing));
    this.hold(chunk, parts);
    const full = this.lanesWhere(parts, (p) => this.isFull(p.lane));
    if (full.length === 0) return NOTHING;
    return this.track(this.checkLanes(full).then(() => this.drain(false)));
  }

  end(): Promise<ChatCompletionChunk[]> {
    return this.track((this.busy ?? Promise.resolve()).then(() => this.finishAll()));
  }

  completion(completion: ChatCompletion): Promise<ChatCompletion> {
    return checkCompletion(this.ctx, this.attempt, this.checker, this.config.onMask, completion);
  }

  /** The chunk's texts, with their lanes (not yet appended to them). */
  private partsOf(chunk: ChatCompletionChunk): HeldPart[] {
    const parts: HeldPart[] = [];
    chunk.choices.forEach((choice, i) => {
      const delta = choice.delta as MessageLike;
      for (const spot of textSpotsOf(delta)) {
        const lane = this.laneFor(laneKey(choice.index, spot.field, laneIndexOf(delta, spot.field, spot.part)));
        parts.push({ lane, text: spot.text, start: 0, end: 0, choice: i, field: spot.field, part: spot.part });
      }
    });
    return parts;
  }

  private laneFor(key: string): HeldLane {
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { text: '', decidedTo: 0, checkedLength: 0, lastMask: undefined, smallestDelta: Infinity };
      this.lanes.set(key, lane);
    }
    return lane;
  }

  private lanesWhere(parts: readonly HeldPart[], test: (part: HeldPart) => boolean): HeldLane[] {
    const lanes: HeldLane[] = [];
    for (const p of parts) if (test(p) && !lanes.includes(p.lane)) lanes.push(p.lane);
    return lanes;
  }

  /**
   * A window has enough new text to be worth a check: at least `overlap` unchecked characters (so the
   * held-back text of the last window can always be decided). Without it, a window that could not release
   * anything would be checked again on every chunk.
   */
  private hasNewText(lane: HeldLane): boolean {
    return lane.text.length - lane.checkedLength >= Math.max(1, this.config.overlap);
  }

  /** This part would take its lane past the window: check the lane first, so a check stays within one text unit. */
  private closesBefore(part: HeldPart): boolean {
    return this.hasNewText(part.lane) && part.lane.text.length + part.text.length > this.config.windowSize;
  }

  /**
   * The lane is a full window: a single delta made it one (or more) by itself, or the room left is smaller
   * than every delta seen in the lane so far, so the next one would close it anyway (checking now saves
   * waiting for it).
   */
  private isFull(lane: HeldLane): boolean {
    return this.hasNewText(lane) && this.config.windowSize - lane.text.length < Math.max(1, lane.smallestDelta);
  }

  private hold(chunk: ChatCompletionChunk, parts: HeldPart[]): void {
    for (const part of parts) {
      part.start = part.lane.decidedTo + part.lane.text.length;
      part.end = part.start + part.text.length;
      part.lane.text += part.text;
      if (part.text.length > 0 && part.text.length < part.lane.smallestDelta) part.lane.smallestDelta = part.text.length;
    }
    this.held.push({ chunk, parts });
  }

  private async closeThenHold(chunk: ChatCompletionChunk, parts: HeldPart[], closing: HeldLane[]): Promise<ChatCompletionChunk[]> {
    await this.checkLanes(closing);
    this.hold(chunk, parts);
    await this.checkLanes(this.lanesWhere(parts, (p) => this.isFull(p.lane)));
    return this.drain(false);
  }

  private async checkLanes(lanes: readonly HeldLane[]): Promise<void> {
    for (const lane of lanes) await this.checkLane(lane, false);
  }

  private async finishAll(): Promise<ChatCompletionChunk[]> {
    for (const lane of this.lanes.values()) {
      if (lane.text.length > lane.checkedLength) await this.checkLane(lane, true);
      else if (lane.text.length > 0) this.decide(lane, lane.decidedTo + lane.text.length, lane.lastMask);
    }
    return this.drain(true);
  }

  /** Checks the lane's undecided text and decides as much of it as the hold-back allows (all of it when `final`). */
  private async checkLane(lane: HeldLane, final: boolean): Promise<void> {
    const start = lane.decidedTo;
    const text = lane.text;
    const verdict = await checkTexts(this.checker, this.ctx, 'OUTPUT', [text], this.attempt.signal, this.config.onMask);
    let mask: WindowMask | undefined;
    let whole = final;
    if (verdict.kind === 'mask') {
      const masked = verdict.outputs[0] ?? '';
      const spans = maskedSpans(text, masked, verdict.replacements);
      // A masking we cannot line up cannot be cut at chunk boundaries: the window goes out as one piece
      // (its masked text in its first chunk), without holding anything back.
      whole ||= spans === undefined;
      mask = { start, masked, spans: spans ?? [{ start: 0, end: text.length, tag: masked }] };
    }
    lane.checkedLength = text.length;
    lane.lastMask = mask;
    const upTo = whole ? text.length : this.releasePoint(lane, text.length, mask?.spans ?? []);
    if (upTo > 0) this.decide(lane, start + upTo, mask);
  }

  /**
   * Where the decided part of a checked window ends (relative to the window): the last chunk boundary that
   * leaves at least `overlap` characters held back and does not split a masked entity. Zero when there is
   * none: the whole window is then checked again with the next one.
   */
  private releasePoint(lane: HeldLane, length: number, spans: readonly MaskedSpan[]): number {
    const target = length - this.config.overlap;
    let best = 0;
    for (const { parts } of this.held) {
      for (const p of parts) {
        if (p.lane !== lane) continue;
        const end = p.end - lane.decidedTo;
        if (end > best && end <= target && !isInsideSpan(end, spans)) best = end;
      }
    }
    return best;
  }

  /** Fixes the output of the lane's held text up to `upTo` (absolute) and drops it from the undecided text. */
  private decide(lane: HeldLane, upTo: number, mask: WindowMask | undefined): void {
    if (mask) {
      for (const { parts } of this.held) {
        for (const p of parts) {
          if (p.lane !== lane || p.start < lane.decidedTo || p.end > upTo) continue;
          const from = maskedOffset(p.start - mask.start, mask.spans);
          const to = maskedOffset(p.end - mask.start, mask.spans);
          p.out = mask.masked.slice(from, to);
        }
      }
    }
    const decided = upTo - lane.decidedTo;
    lane.text = lane.text.slice(decided);
    lane.checkedLength = Math.max(0, lane.checkedLength - decided);
    lane.decidedTo = upTo;
    if (lane.text.length === 0) lane.lastMask = undefined;
  }

  /**
   * Releases the held chunks, in order, up to the first one with undecided text. Before anything went out,
   * chunks without text (the role chunk) wait for the first checked text, so the response does not commit
   * before a check passed: a block in the first window is then still a plain JSON error.
   */
  private drain(final: boolean): ChatCompletionChunk[] {
    let count = 0;
    let withText = false;
    for (const { parts } of this.held) {
      if (!parts.every((p) => p.end <= p.lane.decidedTo)) break;
      withText ||= parts.length > 0;
      count += 1;
    }
    if (count === 0 || (!final && !this.releasedAny && !withText)) return NOTHING;
    this.releasedAny = true;
    return this.held.splice(0, count).map(rendered);
  }

  private track<T>(work: Promise<T>): Promise<T> {
    const tracked = work.finally(() => {
      if (this.busy === tracked) this.busy = undefined;
    });
    this.busy = tracked;
    return tracked;
  }
}

/** The chunk as released: unchanged, or a copy carrying the masked texts. */
function rendered({ chunk, parts }: HeldChunk): ChatCompletionChunk {
  if (!parts.some((p) => p.out !== undefined)) return chunk;
  const copy = structuredClone(chunk);
  for (const p of parts) {
    const delta = copy.choices[p.choice]?.delta as MessageLike | undefined;
    if (delta && p.out !== undefined) writeText(delta, p, p.out);
  }
  return copy;
}

// ---- async ----

interface AsyncLane {
  /** The last `overlap` characters already sent for checking: context for the next window. */
  tail: string;
  /** Text released but not yet sent for checking. */
  text: string;
}

class AsyncWindowFilter implements OutputFilter {
  private readonly lanes = new Map<string, AsyncLane>();
  private readonly running = new Set<Promise<void>>();
  private failure: unknown;
  private failed = false;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly attempt: AttemptControl,
    private readonly checker: GuardrailChecker,
    private readonly config: OutputCheckConfig,
  ) {}

  chunk(chunk: ChatCompletionChunk): ChatCompletionChunk[] {
    if (this.failed) throw this.failure;
    for (const choice of chunk.choices) {
      const delta = choice.delta as MessageLike;
      for (const spot of textSpotsOf(delta)) {
        const lane = this.laneFor(laneKey(choice.index, spot.field, laneIndexOf(delta, spot.field, spot.part)));
        if (lane.text.length > 0 && lane.tail.length + lane.text.length + spot.text.length > this.config.windowSize) this.checkBehind(lane);
        lane.text += spot.text;
      }
    }
    return [chunk];
  }

  /** The stream ended upstream: check what is left and wait for every check, so a late block still ends it with the error. */
  async end(): Promise<ChatCompletionChunk[]> {
    for (const lane of this.lanes.values()) if (lane.text.length > 0) this.checkBehind(lane);
    while (this.running.size > 0) await Promise.all(this.running);
    if (this.failed) throw this.failure;
    return NOTHING;
  }

  completion(completion: ChatCompletion): Promise<ChatCompletion> {
    return checkCompletion(this.ctx, this.attempt, this.checker, this.config.onMask, completion);
  }

  private laneFor(key: string): AsyncLane {
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { tail: '', text: '' };
      this.lanes.set(key, lane);
    }
    return lane;
  }

  private checkBehind(lane: AsyncLane): void {
    const window = lane.tail + lane.text;
    lane.tail = this.config.overlap > 0 ? window.slice(-this.config.overlap) : '';
    lane.text = '';
    const run = checkTexts(this.checker, this.ctx, 'OUTPUT', [window], this.attempt.signal, this.config.onMask)
      .then(
        () => undefined,
        (err: unknown) => this.fail(err),
      )
      .finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /** The first failure stops the attempt: the router aborts the upstream and ends the stream with it. */
  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.failure = err;
    if (!this.attempt.signal.aborted) this.attempt.abort(err instanceof Error ? err : new Error(String(err)));
  }
}
