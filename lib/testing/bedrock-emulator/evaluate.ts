/**
 * The guardrail evaluator: compiles a `GuardrailConfig` once (validating it, so a bad config fails when it
 * is registered, naming the field) and evaluates ApplyGuardrail requests against it per
 * `shared/reference/bedrock-applyguardrail.md` §6.2.4–6. Pure: no I/O, no clock except the measured latency.
 */
import { performance } from 'node:perf_hooks';
import { findAll, phraseRegex, piiDetector, SUPPORTED_PII_TYPES, type PiiDetector, type TextMatch } from './detectors.js';
import type {
  ApplyGuardrailResponseBody,
  ContentFilterAssessment,
  ContentFilterType,
  CustomWordAssessment,
  FilterStrength,
  GuardrailAssessment,
  GuardrailConfig,
  GuardrailContentBlock,
  GuardrailCoverage,
  GuardrailPolicies,
  GuardrailSource,
  GuardrailUsage,
  ManagedWordAssessment,
  OutputScope,
  PiiEntityAssessment,
  RegexAssessment,
  SensitiveInfoAction,
  SensitiveInfoOutcome,
  SupportedPiiType,
  TopicAssessment,
} from './types.js';

/** AWS patterns for a registered guardrail (a request may also use an ARN or, to get a 404, an empty label). */
const GUARDRAIL_ID_PATTERN = /^[a-z0-9]+$/;
const GUARDRAIL_VERSION_PATTERN = /^(DRAFT|[1-9][0-9]{0,7})$/;

const DEFAULT_ARN_PREFIX = 'arn:aws:bedrock:us-east-1:123456789012:guardrail/';

interface CompiledPhraseList {
  phrases: string[];
  regexes: RegExp[];
}

interface CompiledPolicies {
  topics: { name: string; matcher: CompiledPhraseList }[];
  contentFilters: { type: ContentFilterType; strength: FilterStrength; matcher: CompiledPhraseList }[];
  words: RegExp[];
  profanity: RegExp[];
  pii: { type: SupportedPiiType; action: SensitiveInfoAction; detect: PiiDetector }[];
  regexes: { name: string; pattern: string; action: SensitiveInfoAction; regex: RegExp }[];
}

/** A validated guardrail with its matchers built, one policy set per source. */
export interface CompiledGuardrail {
  readonly config: GuardrailConfig;
  readonly arn: string;
  readonly policies: Readonly<Record<GuardrailSource, CompiledPolicies>>;
}

export interface EvaluateOptions {
  /** Default `'INTERVENTIONS'`. */
  outputScope?: OutputScope;
  /** Reported as `guardrailProcessingLatency`. Default: the measured evaluation time in ms. */
  processingLatencyMs?: number;
}

// ---- Compilation (and config validation) ----

/** Thrown when a guardrail config is invalid; the message names the field. */
export class GuardrailConfigError extends Error {
  override name = 'GuardrailConfigError';
}

function configError(config: GuardrailConfig, field: string, problem: string): GuardrailConfigError {
  return new GuardrailConfigError(
    `Bedrock emulator: guardrail ${JSON.stringify(config.id)} version ${JSON.stringify(config.version)}: ${field} ${problem}`,
  );
}

function requireNonEmptyString(config: GuardrailConfig, field: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw configError(config, field, 'must be a non-empty string');
  return value;
}

function compilePhrases(config: GuardrailConfig, field: string, phrases: unknown): CompiledPhraseList {
  if (!Array.isArray(phrases) || phrases.length === 0) throw configError(config, field, 'must be a non-empty array of strings');
  const checked = phrases.map((p, i) => requireNonEmptyString(config, `${field}[${i}]`, p));
  return { phrases: checked, regexes: checked.map(phraseRegex) };
}

function requireAction(config: GuardrailConfig, field: string, action: unknown): SensitiveInfoAction {
  if (action === 'BLOCK' || action === 'ANONYMIZE' || action === 'NONE') return action;
  throw configError(config, field, "must be 'BLOCK', 'ANONYMIZE' or 'NONE'");
}

/** Shared policies plus the side-specific ones; for keyed policies the side-specific entry wins. */
function mergePolicies(shared: GuardrailPolicies, side: GuardrailPolicies | undefined): GuardrailPolicies {
  if (!side) return shared;
  const byKey = <T>(list: T[] | undefined, extra: T[] | undefined, key: (item: T) => string): T[] => {
    const merged = new Map<string, T>();
    for (const item of [...(list ?? []), ...(extra ?? [])]) merged.set(key(item), item);
    return [...merged.values()];
  };
  return {
    topics: byKey(shared.topics, side.topics, (t) => t.name),
    contentFilters: byKey(shared.contentFilters, side.contentFilters, (f) => f.type),
    words: [...(shared.words ?? []), ...(side.words ?? [])],
    profanity: [...(shared.profanity ?? []), ...(side.profanity ?? [])],
    pii: { ...shared.pii, ...side.pii },
    regexes: byKey(shared.regexes, side.regexes, (r) => r.name),
  };
}

function compilePolicies(config: GuardrailConfig, side: 'input' | 'output'): CompiledPolicies {
  const policies = mergePolicies(config, config[side]);
  const names = (config.names ?? []).map((n, i) => requireNonEmptyString(config, `names[${i}]`, n));
  return {
    topics: (policies.topics ?? []).map((topic, i) => ({
      name: requireNonEmptyString(config, `topics[${i}].name`, topic.name),
      matcher: compilePhrases(config, `topics[${i}].phrases`, topic.phrases),
    })),
    contentFilters: (policies.contentFilters ?? []).map((filter, i) => ({
      type: filter.type,
      strength: filter.strength ?? 'HIGH',
      matcher: compilePhrases(config, `contentFilters[${i}].triggers`, filter.triggers),
    })),
    words: (policies.words ?? []).map((w, i) => phraseRegex(requireNonEmptyString(config, `words[${i}]`, w))),
    profanity: (policies.profanity ?? []).map((w, i) => phraseRegex(requireNonEmptyString(config, `profanity[${i}]`, w))),
    pii: Object.entries(policies.pii ?? {}).map(([type, action]) => {
      if (!SUPPORTED_PII_TYPES.includes(type as SupportedPiiType)) {
        throw configError(config, `pii.${type}`, `is not supported (supported: ${SUPPORTED_PII_TYPES.join(', ')})`);
      }
      const piiType = type as SupportedPiiType;
      return { type: piiType, action: requireAction(config, `pii.${type}`, action), detect: piiDetector(piiType, names) };
    }),
    regexes: (policies.regexes ?? []).map((r, i) => ({
      name: requireNonEmptyString(config, `regexes[${i}].name`, r.name),
      pattern: r.pattern,
      action: requireAction(config, `regexes[${i}].action`, r.action),
      regex: compileUserRegex(config, `regexes[${i}].pattern`, r.pattern),
    })),
  };
}

function compileUserRegex(config: GuardrailConfig, field: string, pattern: unknown): RegExp {
  const source = requireNonEmptyString(config, field, pattern);
  try {
    return new RegExp(source, 'g');
  } catch (err) {
    throw configError(config, field, `is not a valid regex (${(err as Error).message})`);
  }
}

/** Validates `config` and builds its matchers. Throws a `GuardrailConfigError` naming the bad field. */
export function compileGuardrail(config: GuardrailConfig): CompiledGuardrail {
  if (typeof config.id !== 'string' || !GUARDRAIL_ID_PATTERN.test(config.id)) {
    throw configError(config, 'id', 'must match [a-z0-9]+ (the AWS guardrail id pattern)');
  }
  if (typeof config.version !== 'string' || !GUARDRAIL_VERSION_PATTERN.test(config.version)) {
    throw configError(config, 'version', "must be 'DRAFT' or a number from '1' to '99999999'");
  }
  requireNonEmptyString(config, 'blockedInputMessaging', config.blockedInputMessaging);
  requireNonEmptyString(config, 'blockedOutputsMessaging', config.blockedOutputsMessaging);
  return {
    config,
    arn: config.arn ?? `${DEFAULT_ARN_PREFIX}${config.id}`,
    policies: { INPUT: compilePolicies(config, 'input'), OUTPUT: compilePolicies(config, 'output') },
  };
}

// ---- Evaluation ----

/** Text blocks that guardrail policies evaluate: untagged ones and `guard_content` (not grounding sources or queries). */
function isGuardedText(qualifiers: readonly string[] | undefined): boolean {
  return !qualifiers || qualifiers.length === 0 || qualifiers.includes('guard_content');
}

interface TextBlock {
  text: string;
  guarded: boolean;
}

function textBlocksOf(content: GuardrailContentBlock[]): TextBlock[] {
  return content.flatMap((block) => ('text' in block ? [{ text: block.text.text, guarded: isGuardedText(block.text.qualifiers) }] : []));
}

function anyPhraseMatches(matcher: CompiledPhraseList, blocks: TextBlock[]): boolean {
  // `test` on a global regex is stateful, so count matches via a fresh iterator instead.
  return blocks.some((b) => matcher.regexes.some((re) => findAll(re, b.text).length > 0));
}

function assessTopics(policies: CompiledPolicies, blocks: TextBlock[]): TopicAssessment[] {
  return policies.topics.map((topic) => {
    const detected = anyPhraseMatches(topic.matcher, blocks);
    return { name: topic.name, type: 'DENY', action: detected ? 'BLOCKED' : 'NONE', detected };
  });
}

function assessContentFilters(policies: CompiledPolicies, blocks: TextBlock[]): ContentFilterAssessment[] {
  return policies.contentFilters.map((filter) => {
    const detected = anyPhraseMatches(filter.matcher, blocks);
    const blocking = detected && filter.strength !== 'NONE';
    return {
      type: filter.type,
      confidence: detected ? 'HIGH' : 'NONE',
      filterStrength: filter.strength,
      action: blocking ? 'BLOCKED' : 'NONE',
      detected,
    };
  });
}

/** Each distinct (case-insensitive) word found, in order of first appearance. */
function findWords(regexes: RegExp[], blocks: TextBlock[]): string[] {
  const seen = new Map<string, string>();
  for (const block of blocks) {
    for (const re of regexes) {
      for (const m of findAll(re, block.text)) {
        if (!seen.has(m.text.toLowerCase())) seen.set(m.text.toLowerCase(), m.text);
      }
    }
  }
  return [...seen.values()];
}

interface SensitiveMatch extends TextMatch {
  action: SensitiveInfoAction;
  /** `{TYPE}` for PII, `{name}` for regexes. */
  tag: string;
  assessment: PiiEntityAssessment | RegexAssessment;
}

const OUTCOME: Record<SensitiveInfoAction, SensitiveInfoOutcome> = { BLOCK: 'BLOCKED', ANONYMIZE: 'ANONYMIZED', NONE: 'NONE' };

function sensitiveMatchesIn(policies: CompiledPolicies, text: string): SensitiveMatch[] {
  const candidates: SensitiveMatch[] = [];
  // Plain loops and object literals (no spreads): a dense 10 MB text has hundreds of thousands of matches.
  for (const pii of policies.pii) {
    const tag = `{${pii.type}}`;
    for (const m of pii.detect(text)) {
      const assessment: PiiEntityAssessment = { match: m.text, type: pii.type, action: OUTCOME[pii.action], detected: true };
      candidates.push({ start: m.start, end: m.end, text: m.text, action: pii.action, tag, assessment });
    }
  }
  for (const r of policies.regexes) {
    const tag = `{${r.name}}`;
    for (const m of findAll(r.regex, text)) {
      const assessment: RegexAssessment = { name: r.name, match: m.text, regex: r.pattern, action: OUTCOME[r.action], detected: true };
      candidates.push({ start: m.start, end: m.end, text: m.text, action: r.action, tag, assessment });
    }
  }
  return candidates.length > 1 ? dropOverlaps(candidates) : candidates;
}

/**
 * Keeps the earliest, then longest, of overlapping matches, so that e.g. the NAME "john" inside
 * "john@example.com" does not also mask part of the EMAIL. Reported entities and masked text then agree.
 */
function dropOverlaps(matches: SensitiveMatch[]): SensitiveMatch[] {
  const sorted = matches.sort((a, b) => a.start - b.start || b.end - a.end);
  const kept: SensitiveMatch[] = [];
  for (const m of sorted) {
    const last = kept[kept.length - 1];
    if (!last || m.start >= last.end) kept.push(m);
  }
  return kept;
}

function maskText(text: string, matches: SensitiveMatch[]): string {
  const parts: string[] = [];
  let cursor = 0;
  for (const m of matches) {
    if (m.action !== 'ANONYMIZE') continue;
    parts.push(text.slice(cursor, m.start), m.tag);
    cursor = m.end;
  }
  parts.push(text.slice(cursor));
  return parts.join('');
}

function textUnits(blocks: TextBlock[]): number {
  return blocks.reduce((sum, b) => (b.guarded ? sum + Math.ceil(b.text.length / 1000) : sum), 0);
}

/** Text units a request costs per configured policy: `ceil(chars / 1000)` per guarded text block, summed. */
export function textUnitsOf(content: GuardrailContentBlock[]): number {
  return textUnits(textBlocksOf(content));
}

/** Units per *configured* policy for this source; unconfigured policies cost nothing. */
function usageFor(policies: CompiledPolicies, units: number, images: number): GuardrailUsage {
  const hasPii = policies.pii.length > 0;
  return {
    topicPolicyUnits: policies.topics.length > 0 ? units : 0,
    contentPolicyUnits: policies.contentFilters.length > 0 ? units : 0,
    wordPolicyUnits: policies.words.length + policies.profanity.length > 0 ? units : 0,
    sensitiveInformationPolicyUnits: hasPii ? units : 0,
    // Regex-only sensitive-information evaluation is the free tier (reference §5.1).
    sensitiveInformationPolicyFreeUnits: !hasPii && policies.regexes.length > 0 ? units : 0,
    contextualGroundingPolicyUnits: 0,
    contentPolicyImageUnits: policies.contentFilters.length > 0 ? images : 0,
  };
}

function coverageFor(policies: CompiledPolicies, blocks: TextBlock[], images: number): GuardrailCoverage {
  const total = blocks.reduce((sum, b) => sum + b.text.length, 0);
  const guarded = blocks.reduce((sum, b) => (b.guarded ? sum + b.text.length : sum), 0);
  const coverage: GuardrailCoverage = { textCharacters: { guarded, total } };
  // Only content filters look at images.
  if (images > 0) coverage.images = { guarded: policies.contentFilters.length > 0 ? images : 0, total: images };
  return coverage;
}

/** With `FULL`, configured PII types that found nothing are listed too (there is no match text to report). */
function undetectedPii(policies: CompiledPolicies, found: PiiEntityAssessment[]): PiiEntityAssessment[] {
  const foundTypes = new Set(found.map((e) => e.type));
  return policies.pii
    .filter((p) => !foundTypes.has(p.type))
    .map((p) => ({ match: '', type: p.type, action: 'NONE', detected: false }));
}

/**
 * Evaluates one ApplyGuardrail request. BLOCK wins over masking: a block returns the source's blocked
 * message as the single output; masking returns one output per text block; otherwise `outputs` is empty.
 */
export function evaluateCompiled(
  guardrail: CompiledGuardrail,
  source: GuardrailSource,
  content: GuardrailContentBlock[],
  options: EvaluateOptions = {},
): ApplyGuardrailResponseBody {
  const startedAt = performance.now();
  const policies = guardrail.policies[source];
  const full = options.outputScope === 'FULL';
  const blocks = textBlocksOf(content);
  const guarded = blocks.filter((b) => b.guarded);
  const images = content.length - blocks.length;

  const topics = assessTopics(policies, guarded);
  const filters = assessContentFilters(policies, guarded);
  const customWords: CustomWordAssessment[] = findWords(policies.words, guarded).map((match) => ({ match, action: 'BLOCKED', detected: true }));
  const managedWordLists: ManagedWordAssessment[] = findWords(policies.profanity, guarded).map((match) => ({
    match,
    type: 'PROFANITY',
    action: 'BLOCKED',
    detected: true,
  }));
  const sensitivePerBlock = blocks.map((b) => (b.guarded ? sensitiveMatchesIn(policies, b.text) : []));
  const sensitive = sensitivePerBlock.flat();
  const piiEntities: PiiEntityAssessment[] = [];
  const regexes: RegexAssessment[] = [];
  for (const m of sensitive) {
    if ('type' in m.assessment) piiEntities.push(m.assessment);
    else regexes.push(m.assessment);
  }

  const blocked =
    topics.some((t) => t.action === 'BLOCKED') ||
    filters.some((f) => f.action === 'BLOCKED') ||
    customWords.length > 0 ||
    managedWordLists.length > 0 ||
    sensitive.some((m) => m.action === 'BLOCK');
  const masked = !blocked && sensitive.some((m) => m.action === 'ANONYMIZE');

  const usage = usageFor(policies, textUnits(blocks), images);
  const guardrailCoverage = coverageFor(policies, blocks, images);
  const assessment: GuardrailAssessment = {
    ...pickTopicPolicy(topics, full),
    ...pickContentPolicy(filters, full),
    ...(customWords.length + managedWordLists.length > 0 ? { wordPolicy: { customWords, managedWordLists } } : {}),
    ...pickSensitivePolicy(full ? [...piiEntities, ...undetectedPii(policies, piiEntities)] : piiEntities, regexes),
    invocationMetrics: {
      guardrailProcessingLatency: options.processingLatencyMs ?? Math.round(performance.now() - startedAt),
      usage,
      guardrailCoverage,
    },
    appliedGuardrailDetails: {
      guardrailId: guardrail.config.id,
      guardrailVersion: guardrail.config.version,
      guardrailArn: guardrail.arn,
      guardrailOrigin: ['REQUEST'],
      guardrailOwnership: 'SELF',
    },
  };

  return {
    usage,
    action: blocked || masked ? 'GUARDRAIL_INTERVENED' : 'NONE',
    actionReason: blocked ? 'Guardrail blocked.' : masked ? 'Guardrail masked.' : 'No action.',
    outputs: blocked
      ? [{ text: source === 'INPUT' ? guardrail.config.blockedInputMessaging : guardrail.config.blockedOutputsMessaging }]
      : masked
        ? blocks.map((b, i) => ({ text: maskText(b.text, sensitivePerBlock[i] ?? []) }))
        : [],
    assessments: [assessment],
    guardrailCoverage,
  };
}

/** INTERVENTIONS lists detected topics only; FULL lists every configured topic. */
function pickTopicPolicy(topics: TopicAssessment[], full: boolean): Pick<GuardrailAssessment, 'topicPolicy'> {
  const listed = full ? topics : topics.filter((t) => t.detected);
  return listed.length > 0 ? { topicPolicy: { topics: listed } } : {};
}

function pickContentPolicy(filters: ContentFilterAssessment[], full: boolean): Pick<GuardrailAssessment, 'contentPolicy'> {
  const listed = full ? filters : filters.filter((f) => f.detected);
  return listed.length > 0 ? { contentPolicy: { filters: listed } } : {};
}

function pickSensitivePolicy(
  piiEntities: PiiEntityAssessment[],
  regexes: RegexAssessment[],
): Pick<GuardrailAssessment, 'sensitiveInformationPolicy'> {
  return piiEntities.length + regexes.length > 0 ? { sensitiveInformationPolicy: { piiEntities, regexes } } : {};
}

/**
 * Evaluates an ApplyGuardrail request against `config` without any server: the same result the emulator
 * would send. Compiles (and validates) the config on every call; the emulator compiles once on registration.
 */
export function evaluateGuardrail(
  config: GuardrailConfig,
  source: GuardrailSource,
  content: GuardrailContentBlock[],
  options?: EvaluateOptions,
): ApplyGuardrailResponseBody {
  return evaluateCompiled(compileGuardrail(config), source, content, options);
}
