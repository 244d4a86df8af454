/**
 * One ApplyGuardrail call, turned into a decision: the call runs under a hard deadline and the request's
 * abort signal, its outcome is recorded on the context (accounting and headers), and a failure becomes
 * either `GuardrailUnavailableError` (fail closed) or a pass (fail open, logged once per incident).
 */
import { performance } from 'node:perf_hooks';
import type { ApplyGuardrailCommandOutput, BedrockRuntimeClient, GuardrailUsage } from '@aws-sdk/client-bedrock-runtime';
import { bedrockSdk } from '../bedrock-sdk.js';
import type { GatewayContext, GuardrailRecord } from '../context.js';
import { type GuardrailTrace, guardrailChannel, traceGuardrail } from '../diagnostics.js';
import { GuardrailUnavailableError, GuardrailViolationError } from '../errors.js';
import type { Logger } from '../logger.js';
import { type CheckedPiece, groupIntoCalls, joinPieces, splitText } from './limits.js';
import { type Replacement, maskedSpans } from './masking.js';

export type GuardrailSource = GuardrailRecord['source'];

/** What a check decided: the text passes, or must be replaced by `outputs` (one per text sent). Blocks throw. */
export type Verdict = { kind: 'pass' } | { kind: 'mask'; outputs: string[]; replacements: Replacement[] };

/**
 * What to do with an ANONYMIZED verdict: `apply` the masked text, `block` (the text cannot be masked any
 * more, or masking is not wanted), or `pass` (accept the original text).
 */
export type MaskHandling = 'apply' | 'block' | 'pass';

export interface CheckerConfig {
  client: BedrockRuntimeClient;
  guardrailIdentifier: string;
  guardrailVersion: string;
  name: string;
  timeoutMs: number;
  failOpen: boolean;
  softBlock: boolean;
  logger: Logger;
}

/** The soft-block text when the guardrail gave none (a masking verdict turned into a block). */
const FALLBACK_SOFT_MESSAGE = 'Sorry, this content was blocked by a guardrail.';

const PASS: Verdict = { kind: 'pass' };

/** The deadline's abort reason, to tell a timeout from the caller's own abort. */
class DeadlineExceeded extends Error {
  constructor(timeoutMs: number) {
    super(`deadline of ${timeoutMs} ms exceeded`);
  }
}

/** Thrown for a 200 answer without a usable `action` (the SDK does not enforce required members). */
class MalformedAnswer extends Error {
  override name = 'MalformedAnswer';
}

export class GuardrailChecker {
  private readonly config: CheckerConfig;
  /** True while the guardrail keeps failing under fail-open: only the first failure of a run is logged. */
  private incident = false;

  constructor(config: CheckerConfig) {
    this.config = config;
  }

  /**
   * Checks `texts` (one content block each). Resolves with the verdict, throws `GuardrailViolationError` on
   * a block, `GuardrailUnavailableError` when the call fails and the guardrail fails closed, or the
   * parent's abort reason when the caller gave up.
   */
  async check(ctx: GatewayContext, source: GuardrailSource, texts: readonly string[], parent: AbortSignal, onMask: MaskHandling): Promise<Verdict> {
    const startedAt = performance.now();
    const trace = guardrailChannel.hasSubscribers ? traceGuardrail(ctx, this.config.name, source, texts.length, parent) : undefined;
    let answer: ApplyGuardrailCommandOutput;
    let verdict: Decision;
    try {
      answer = await this.send(source, texts, parent);
      verdict = decide(answer, texts.length);
    } catch (err) {
      this.record(ctx, source, 'ERROR', 0, startedAt, trace);
      if (parent.aborted) throw parent.reason;
      return this.failed(ctx, source, err);
    }
    this.recovered();
    const units = textUnitsOf(answer.usage);
    if (verdict.kind === 'block' || (verdict.kind === 'mask' && onMask === 'block')) {
      this.record(ctx, source, 'BLOCKED', units, startedAt, trace);
      throw this.violation(verdict.kind === 'block' ? verdict.message : undefined);
    }
    if (verdict.kind === 'mask' && onMask === 'apply') {
      this.record(ctx, source, 'MASKED', units, startedAt, trace);
      return verdict;
    }
    // A mask verdict accepted as is records NONE: the record says what was done to the text.
    this.record(ctx, source, 'NONE', units, startedAt, trace);
    return PASS;
  }

  /**
   * A masking verdict whose masked text cannot be put in place (a name that would stop being a valid
   * name, pieces that cannot be joined): refused like a block and recorded as one (no extra units).
   */
  refuseMask(ctx: GatewayContext, source: GuardrailSource): GuardrailViolationError {
    this.record(ctx, source, 'BLOCKED', 0, performance.now());
    return this.violation(undefined);
  }

  private async send(source: GuardrailSource, texts: readonly string[], parent: AbortSignal): Promise<ApplyGuardrailCommandOutput> {
    const command = new (bedrockSdk().ApplyGuardrailCommand)({
      guardrailIdentifier: this.config.guardrailIdentifier,
      guardrailVersion: this.config.guardrailVersion,
      source,
      content: texts.map((text) => ({ text: { text } })),
    });
    return withDeadline(parent, this.config.timeoutMs, (abortSignal) => this.config.client.send(command, { abortSignal }));
  }

  private violation(guardrailMessage: string | undefined): GuardrailViolationError {
    if (!this.config.softBlock) return new GuardrailViolationError();
    return new GuardrailViolationError(undefined, { softMessage: guardrailMessage ?? FALLBACK_SOFT_MESSAGE });
  }

  private failed(ctx: GatewayContext, source: GuardrailSource, err: unknown): Verdict {
    const reason = err instanceof DeadlineExceeded ? `did not answer within ${this.config.timeoutMs} ms` : 'failed';
    if (!this.config.failOpen) {
      throw new GuardrailUnavailableError(`Guardrail '${this.config.name}' ${reason}.`, { cause: err });
    }
    if (!this.incident) {
      this.incident = true;
      this.config.logger.warn(
        { requestId: ctx.id, guardrail: this.config.name, source, error: errorName(err), reason },
        'guardrail unavailable; failing open (further failures are not logged until it recovers)',
      );
    }
    return PASS;
  }

  private recovered(): void {
    if (!this.incident) return;
    this.incident = false;
    this.config.logger.info({ guardrail: this.config.name }, 'guardrail available again');
  }

  private record(ctx: GatewayContext, source: GuardrailSource, action: GuardrailRecord['action'], units: number, startedAt: number, trace?: GuardrailTrace): void {
    const record: GuardrailRecord = { guardrail: this.config.name, source, action, units, latencyMs: Math.round(performance.now() - startedAt) };
    ctx.guardrails.push(record);
    trace?.end(record);
  }
}

/**
 * Checks texts of any length within ApplyGuardrail's per-call limit (`limits.ts`): a text longer than one
 * call allows is cut into overlapping pieces, and the blocks are grouped into calls of at most 25 text
 * units. Texts that fit one call go out exactly as `check` sends them. The calls run one after the
 * other: the first block stops the rest (a blocked input is billed only for what was evaluated), and a
 * request never asks for more than one call's units at a time (the quota is per second). The verdict has
 * one output per given text, the pieces' masked texts joined back. A function over `checker.check`, so
 * every caller (input, output windows, whole completions) shares it.
 */
export async function checkTexts(
  checker: GuardrailChecker,
  ctx: GatewayContext,
  source: GuardrailSource,
  texts: readonly string[],
  parent: AbortSignal,
  onMask: MaskHandling,
): Promise<Verdict> {
  const blocks = texts.flatMap((text, owner) => splitText(text).map((piece) => ({ owner, piece, text: text.slice(piece.start, piece.end) })));
  const calls = groupIntoCalls(blocks.map((b) => b.text.length));
  if (calls.length <= 1 && blocks.length === texts.length) return checker.check(ctx, source, texts, parent, onMask);
  const checked: Checked[][] = texts.map(() => []);
  const replacements: Replacement[] = [];
  let masked = false;
  for (const call of calls) {
    const sent = call.map((i) => blocks[i]!);
    const verdict = await checker.check(ctx, source, sent.map((b) => b.text), parent, onMask);
    const own = verdict.kind === 'mask' ? verdict.replacements : [];
    if (verdict.kind === 'mask') {
      masked = true;
      replacements.push(...own);
    }
    sent.forEach((block, j) => {
      const out = verdict.kind === 'mask' ? (verdict.outputs[j] ?? block.text) : block.text;
      const spans = out === block.text ? [] : maskedSpans(block.text, out, own);
      checked[block.owner]!.push({ ...block.piece, masked: out, spans });
    });
  }
  if (!masked) return PASS;
  const outputs = checked.map((pieces, i) => joinChecked(texts[i]!, pieces));
  if (outputs.some((o) => o === undefined)) throw checker.refuseMask(ctx, source);
  return { kind: 'mask', outputs: outputs as string[], replacements };
}

/** A checked piece; `spans` is undefined when its masked text cannot be lined up with the original. */
type Checked = Omit<CheckedPiece, 'spans'> & { spans: CheckedPiece['spans'] | undefined };

/**
 * The masked text of one text from its checked pieces; `undefined` when they cannot be joined (a piece
 * whose masking cannot be lined up gives no safe cut to the next one). A whole text needs no joining.
 */
function joinChecked(text: string, pieces: readonly Checked[]): string | undefined {
  if (pieces.length === 1) return pieces[0]?.masked;
  if (pieces.some((p) => p.spans === undefined)) return undefined;
  return joinPieces(text.length, pieces as CheckedPiece[]);
}

type Decision = Verdict | { kind: 'block'; message: string | undefined };

/**
 * Reads an ApplyGuardrail answer. An intervention is a mask only when every acting assessment entry
 * ANONYMIZED and there is one output per text; anything else that intervened (a BLOCKED entry, a policy we
 * do not model, a short `outputs`) is a block, so an unexpected answer never lets text through unchecked.
 */
function decide(answer: ApplyGuardrailCommandOutput, textCount: number): Decision {
  if (answer.action === 'NONE') return PASS;
  if (answer.action !== 'GUARDRAIL_INTERVENED') throw new MalformedAnswer(`unexpected action ${String(answer.action)}`);
  const outputs = (answer.outputs ?? []).map((o) => o.text ?? '');
  const actions = new Set<string>();
  for (const assessment of answer.assessments ?? []) collectActions(assessment, actions);
  const masksOnly = actions.has('ANONYMIZED') && [...actions].every((a) => a === 'ANONYMIZED' || a === 'NONE');
  if (masksOnly && outputs.length === textCount) return { kind: 'mask', outputs, replacements: replacementsOf(answer) };
  return { kind: 'block', message: outputs[0] };
}

/** Every `action` value anywhere in an assessment (policies Bedrock adds later are covered too). */
function collectActions(value: unknown, into: Set<string>): void {
  if (Array.isArray(value)) {
    for (const item of value) collectActions(item, into);
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, field] of Object.entries(value)) {
      if (key === 'action' && typeof field === 'string') into.add(field);
      else if (key !== 'invocationMetrics' && key !== 'appliedGuardrailDetails') collectActions(field, into);
    }
  }
}

function replacementsOf(answer: ApplyGuardrailCommandOutput): Replacement[] {
  const replacements: Replacement[] = [];
  for (const assessment of answer.assessments ?? []) {
    const policy = assessment.sensitiveInformationPolicy;
    for (const e of policy?.piiEntities ?? []) {
      if (e.action === 'ANONYMIZED' && e.match) replacements.push({ match: e.match, tag: `{${e.type}}` });
    }
    for (const r of policy?.regexes ?? []) {
      if (r.action === 'ANONYMIZED' && r.match) replacements.push({ match: r.match, tag: `{${r.name}}` });
    }
  }
  return replacements;
}

/**
 * Text units of one call as billed: the sum over the text policies' unit counters (each configured policy
 * bills `ceil(chars / 1000)` per text block, so one 1,000-character check against three policies is 3
 * units). Image units and the automated-reasoning policy count are not text units.
 */
export function textUnitsOf(usage: GuardrailUsage | undefined): number {
  if (!usage) return 0;
  return (
    (usage.topicPolicyUnits ?? 0) +
    (usage.contentPolicyUnits ?? 0) +
    (usage.wordPolicyUnits ?? 0) +
    (usage.sensitiveInformationPolicyUnits ?? 0) +
    (usage.sensitiveInformationPolicyFreeUnits ?? 0) +
    (usage.contextualGroundingPolicyUnits ?? 0) +
    (usage.automatedReasoningPolicyUnits ?? 0)
  );
}

/**
 * Runs `call` with a signal that aborts when `parent` does or after `timeoutMs`. Built by hand rather than
 * with `AbortSignal.any([parent, AbortSignal.timeout(ms)])`: on Node 20 that keeps every composed signal
 * registered on the long-lived parent and a timer alive for the full timeout after the call is over. Here
 * the timer is cleared and the listener removed as soon as the call settles.
 */
export async function withDeadline<T>(parent: AbortSignal, timeoutMs: number, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  if (parent.aborted) throw parent.reason;
  const controller = new AbortController();
  const onParentAbort = (): void => controller.abort(parent.reason);
  parent.addEventListener('abort', onParentAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new DeadlineExceeded(timeoutMs)), timeoutMs);
  try {
    return await call(controller.signal);
  } catch (err) {
    // The SDK reports every abort as a generic AbortError; say which deadline it was.
    if (controller.signal.reason instanceof DeadlineExceeded) throw controller.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', onParentAbort);
  }
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}
