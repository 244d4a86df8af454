/**
 * Public types of the Bedrock ApplyGuardrail emulator: the guardrail configuration it evaluates, the wire
 * shapes it speaks (a subset of the SDK model, see `shared/reference/bedrock-applyguardrail.md` §1–§2),
 * fault injection and the call log.
 */

/** `source` of an ApplyGuardrail request. */
export type GuardrailSource = 'INPUT' | 'OUTPUT';

/** PII entity types the emulator can detect (built-in regex / name-list detectors). */
export type SupportedPiiType =
  | 'EMAIL'
  | 'PHONE'
  | 'US_SOCIAL_SECURITY_NUMBER'
  | 'CREDIT_DEBIT_CARD_NUMBER'
  | 'IP_ADDRESS'
  | 'NAME'
  | 'URL'
  | 'AWS_ACCESS_KEY';

/** What a sensitive-information filter does with a match. `NONE` detects and reports without acting. */
export type SensitiveInfoAction = 'BLOCK' | 'ANONYMIZE' | 'NONE';

export type ContentFilterType = 'HATE' | 'INSULTS' | 'SEXUAL' | 'VIOLENCE' | 'MISCONDUCT' | 'PROMPT_ATTACK';
export type FilterStrength = 'NONE' | 'LOW' | 'MEDIUM' | 'HIGH';

/** A denied topic: any of `phrases` (case-insensitive, on word boundaries) triggers a block. */
export interface DeniedTopicConfig {
  name: string;
  phrases: string[];
}

/** A content filter emulated by keywords: any trigger phrase makes the filter detect with HIGH confidence. */
export interface ContentFilterConfig {
  type: ContentFilterType;
  triggers: string[];
  /** Reported as `filterStrength`; `NONE` disables blocking (detections are reported with action `NONE`). Default `'HIGH'`. */
  strength?: FilterStrength;
}

/** A named custom regex of the sensitive-information policy; masked as `{name}`. */
export interface RegexFilterConfig {
  name: string;
  /** JavaScript regex source, compiled with the `g` flag (and no others). */
  pattern: string;
  action: SensitiveInfoAction;
}

/** The policies of a guardrail. Lists are matched case-insensitively on word boundaries. */
export interface GuardrailPolicies {
  topics?: DeniedTopicConfig[];
  contentFilters?: ContentFilterConfig[];
  /** Custom blocked words or phrases (`wordPolicy.customWords`). */
  words?: string[];
  /** Words reported as the managed `PROFANITY` list (`wordPolicy.managedWordLists`). */
  profanity?: string[];
  pii?: Partial<Record<SupportedPiiType, SensitiveInfoAction>>;
  regexes?: RegexFilterConfig[];
}

/**
 * One guardrail version. The top-level policies apply to both sources; `input` / `output` add policies for
 * one source only (lists are concatenated, and a `pii` action given for one side overrides the shared one).
 */
export interface GuardrailConfig extends GuardrailPolicies {
  /** Guardrail id; must match the AWS pattern `[a-z0-9]+`. */
  id: string;
  /** `'DRAFT'` or a version number as a string (`'1'` … `'99999999'`). */
  version: string;
  /** Default `arn:aws:bedrock:us-east-1:123456789012:guardrail/<id>`. Requests may use either the id or an ARN. */
  arn?: string;
  /** Returned as the single output when an INPUT check blocks. */
  blockedInputMessaging: string;
  /** Returned as the single output when an OUTPUT check blocks. */
  blockedOutputsMessaging: string;
  /** Extra first names for the `NAME` detector, on top of the small built-in list (case-sensitive, capitalised). */
  names?: string[];
  input?: GuardrailPolicies;
  output?: GuardrailPolicies;
}

// ---- Wire shapes (request) ----

export type TextQualifier = 'grounding_source' | 'query' | 'guard_content';

export interface TextContentBlock {
  text: { text: string; qualifiers?: TextQualifier[] };
}

export interface ImageContentBlock {
  image: { format: 'png' | 'jpeg'; source: { bytes: string } };
}

export type GuardrailContentBlock = TextContentBlock | ImageContentBlock;

export type OutputScope = 'INTERVENTIONS' | 'FULL';

export interface ApplyGuardrailRequestBody {
  source: GuardrailSource;
  content: GuardrailContentBlock[];
  outputScope?: OutputScope;
}

// ---- Wire shapes (response) ----

export type GuardrailAction = 'NONE' | 'GUARDRAIL_INTERVENED';

export interface GuardrailUsage {
  topicPolicyUnits: number;
  contentPolicyUnits: number;
  wordPolicyUnits: number;
  sensitiveInformationPolicyUnits: number;
  sensitiveInformationPolicyFreeUnits: number;
  contextualGroundingPolicyUnits: number;
  contentPolicyImageUnits: number;
}

export interface GuardrailCoverage {
  textCharacters: { guarded: number; total: number };
  images?: { guarded: number; total: number };
}

export interface TopicAssessment {
  name: string;
  type: 'DENY';
  action: 'BLOCKED' | 'NONE';
  detected: boolean;
}

export interface ContentFilterAssessment {
  type: ContentFilterType;
  confidence: FilterStrength;
  filterStrength: FilterStrength;
  action: 'BLOCKED' | 'NONE';
  detected: boolean;
}

export interface CustomWordAssessment {
  match: string;
  action: 'BLOCKED';
  detected: true;
}

export interface ManagedWordAssessment {
  match: string;
  type: 'PROFANITY';
  action: 'BLOCKED';
  detected: true;
}

/** Wire value of a sensitive-information action. */
export type SensitiveInfoOutcome = 'BLOCKED' | 'ANONYMIZED' | 'NONE';

export interface PiiEntityAssessment {
  match: string;
  type: SupportedPiiType;
  action: SensitiveInfoOutcome;
  detected: boolean;
}

export interface RegexAssessment {
  name: string;
  match: string;
  regex: string;
  action: SensitiveInfoOutcome;
  detected: true;
}

export interface GuardrailAssessment {
  topicPolicy?: { topics: TopicAssessment[] };
  contentPolicy?: { filters: ContentFilterAssessment[] };
  wordPolicy?: { customWords: CustomWordAssessment[]; managedWordLists: ManagedWordAssessment[] };
  sensitiveInformationPolicy?: { piiEntities: PiiEntityAssessment[]; regexes: RegexAssessment[] };
  invocationMetrics: {
    guardrailProcessingLatency: number;
    usage: GuardrailUsage;
    guardrailCoverage: GuardrailCoverage;
  };
  appliedGuardrailDetails: {
    guardrailId: string;
    guardrailVersion: string;
    guardrailArn: string;
    guardrailOrigin: ['REQUEST'];
    guardrailOwnership: 'SELF';
  };
}

export interface ApplyGuardrailResponseBody {
  usage: GuardrailUsage;
  action: GuardrailAction;
  actionReason: string;
  outputs: { text: string }[];
  assessments: [GuardrailAssessment];
  guardrailCoverage: GuardrailCoverage;
}

// ---- Fault injection ----

/** Service errors the emulator can return, with the status real Bedrock uses for each. */
export type EmulatedErrorName =
  | 'ThrottlingException'
  | 'InternalServerException'
  | 'ServiceUnavailableException'
  | 'AccessDeniedException'
  | 'ValidationException'
  | 'ResourceNotFoundException'
  | 'ServiceQuotaExceededException';

/**
 * - an error name: answer with that service error (JSON body + `x-amzn-errortype`);
 * - `delay`: wait `delayMs`, then answer normally;
 * - `non-json`: answer 200 with an HTML body (the SDK fails to deserialize it);
 * - `hang`: never answer (until the client gives up or the emulator closes).
 */
export type FaultKind = EmulatedErrorName | 'delay' | 'non-json' | 'hang';

export interface FaultSpec {
  kind: FaultKind;
  /** For `delay`. Default 1000. */
  delayMs?: number;
  /** For error kinds: send `retry-after: <seconds>`. Default: no header. */
  retryAfterSeconds?: number;
  /** Apply to the next N ApplyGuardrail calls only. Default: every call until `clearFault()`. */
  times?: number;
}

// ---- Call log ----

export interface EmulatorCall {
  /** 1-based sequence number since start (or the last `reset()`). */
  seq: number;
  /** The `x-amzn-requestid` sent back. */
  requestId: string;
  httpVersion: string;
  /** Percent-decoded path labels, as sent (may be an ARN or empty). */
  guardrailId: string;
  version: string;
  /** Parsed from the body when it is valid JSON. */
  source: string | undefined;
  texts: string[];
  /** Raw `amz-sdk-request` header, e.g. `attempt=2; max=3`. */
  sdkRequest: string | undefined;
  /** Attempt number parsed from `amz-sdk-request`. */
  attempt: number | undefined;
  /** Raw `amz-sdk-invocation-id` header (the same on every retry of one SDK call). */
  invocationId: string | undefined;
  /** The fault applied to this call, if any. */
  fault: FaultKind | undefined;
  receivedAt: number;
  /** Set when the emulator wrote the complete response. */
  respondedAt?: number;
  /** Set when the client closed the request/stream before the response was fully written. */
  abortedAt?: number;
  status?: number;
  /** The `x-amzn-errortype` name of an error response. */
  errorType?: string;
  action?: GuardrailAction;
  /** Text units evaluated: `ceil(chars / 1000)` summed over guarded text blocks. */
  units?: number;
  usage?: GuardrailUsage;
}
