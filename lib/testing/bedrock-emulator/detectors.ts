/**
 * Text matchers used by the evaluator: phrase matching for topics/words/content filters, and the built-in
 * PII detectors. They are deliberately simple and predictable (tests need to know what triggers), not
 * a model of Bedrock's classifiers.
 *
 * Every detector runs in time linear in the text (the emulator is exposed to whatever a client sends, and
 * one request can be 10 MB): the regexes below have a bounded or anchored start (a lookbehind, a fixed
 * prefix such as `http`, `AKIA` or a name) and no nested quantifier over overlapping classes, and e-mail,
 * whose unanchored `[local]+@` regex rescanned the rest of a long token from every start position (quadratic),
 * is found by a scanner around each `@`. `test/bedrock-emulator-bounds.test.ts` holds them to that.
 */
import type { SupportedPiiType } from './types.js';

/** A match of one detector in one text block. */
export interface TextMatch {
  start: number;
  end: number;
  text: string;
}

/**
 * Built-in first names for the `NAME` detector. Chosen to avoid ordinary English words ("Will", "May",
 * "Grace"), so that prose is not masked by accident.
 */
export const BUILT_IN_NAMES: readonly string[] = [
  'Alice', 'Bob', 'Carlos', 'David', 'Emily', 'Hiroshi', 'Jane', 'John', 'Maria', 'Michael', 'Mohammed',
  'Olga', 'Priya', 'Sarah', 'Wei',
];

export const SUPPORTED_PII_TYPES: readonly SupportedPiiType[] = [
  'EMAIL', 'PHONE', 'US_SOCIAL_SECURITY_NUMBER', 'CREDIT_DEBIT_CARD_NUMBER', 'IP_ADDRESS', 'NAME', 'URL',
  'AWS_ACCESS_KEY',
];

const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';

/** Source of the regex detectors (all but `NAME`, which depends on the configured names, and `EMAIL`, a scanner). */
const PII_PATTERNS: Record<Exclude<SupportedPiiType, 'NAME' | 'EMAIL'>, string> = {
  // North-American style with separators, optionally with a country code; or +<cc> international.
  PHONE: '(?<![\\w+])(?:\\+?1[ .-]?)?(?:\\(\\d{3}\\)\\s?|\\d{3}[ .-])\\d{3}[ .-]\\d{4}(?!\\w)|\\+\\d{1,3}(?:[ .-]\\d{2,4}){2,4}(?!\\w)',
  US_SOCIAL_SECURITY_NUMBER: '(?<![\\w-])(?!000|666|9\\d\\d)\\d{3}-(?!00)\\d{2}-(?!0000)\\d{4}(?![\\w-])',
  // 13–19 digits, optionally grouped by spaces or dashes; confirmed with the Luhn check below.
  CREDIT_DEBIT_CARD_NUMBER: '(?<![\\w-])\\d(?:[ -]?\\d){12,18}(?![\\w-])',
  IP_ADDRESS: `(?<![\\w.])${OCTET}(?:\\.${OCTET}){3}(?![\\w.])`,
  URL: 'https?://[^\\s<>"\']+[^\\s<>"\'.,;:!?)]',
  AWS_ACCESS_KEY: '(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])',
};

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const WORD_CHAR = /[\p{L}\p{N}_]/u;

/**
 * Compiles a phrase into a case-insensitive regex: whitespace inside the phrase matches any whitespace run,
 * and the phrase must start/end on a word boundary where it starts/ends with a word character (so
 * "buy stocks" does not fire inside "buy stockship", while "forbidden-word" still matches in "(forbidden-word)").
 */
export function phraseRegex(phrase: string): RegExp {
  const trimmed = phrase.trim();
  const body = trimmed.split(/\s+/).map(escapeRegex).join('\\s+');
  const head = WORD_CHAR.test(trimmed.charAt(0)) ? '(?<![\\p{L}\\p{N}_])' : '';
  const tail = WORD_CHAR.test(trimmed.charAt(trimmed.length - 1)) ? '(?![\\p{L}\\p{N}_])' : '';
  return new RegExp(`${head}${body}${tail}`, 'giu');
}

/** Every non-empty match of a global regex in `text`. */
export function findAll(regex: RegExp, text: string): TextMatch[] {
  const matches: TextMatch[] = [];
  for (const m of text.matchAll(regex)) {
    if (m[0].length > 0) matches.push({ start: m.index, end: m.index + m[0].length, text: m[0] });
  }
  return matches;
}

/** Luhn checksum, so that arbitrary long numbers (order ids, timestamps) are not taken for card numbers. */
function passesLuhn(candidate: string): boolean {
  const digits = candidate.replace(/\D/g, '');
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/**
 * A known first name (case-sensitive), optionally followed by one capitalised surname: "John Smith",
 * "Priya", but not "john" or "Johnson".
 */
function nameRegex(extraNames: readonly string[]): RegExp {
  const names = [...new Set([...BUILT_IN_NAMES, ...extraNames])].map(escapeRegex).join('|');
  return new RegExp(`(?<![\\p{L}\\p{N}_])(?:${names})(?:[ \\t]+\\p{Lu}[\\p{Ll}'-]+)?(?![\\p{L}\\p{N}_])`, 'gu');
}

/** A compiled detector for one PII type. */
export type PiiDetector = (text: string) => TextMatch[];

/**
 * The regex the e-mail scanner implements, kept as the specification (and the oracle of its tests). Do not
 * run it on untrusted text: `[…]+@` is retried from every position of a long token without an `@`.
 */
export const EMAIL_REFERENCE_PATTERN = '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}';

const DOT = 0x2e;

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** `[A-Za-z0-9-]`: a domain label character. */
function isLabelChar(c: number): boolean {
  return isAsciiLetter(c) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
}

/** `[A-Za-z0-9._%+-]`: a local-part character. */
function isLocalChar(c: number): boolean {
  return isLabelChar(c) || c === DOT || c === 0x5f || c === 0x25 || c === 0x2b;
}

/**
 * End (exclusive) of the domain that `EMAIL_REFERENCE_PATTERN` matches after an `@` whose domain starts at
 * `from`, or -1. The domain is a chain of labels `l0.l1.….lk`; the regex (greedy, backtracking) ends at the
 * last label `lj` (j ≥ 1) that starts with two or more letters, after that letter run.
 */
function emailDomainEnd(text: string, from: number): number {
  let end = -1;
  let pos = from;
  for (let label = 0; ; label++) {
    let i = pos;
    while (i < text.length && isAsciiLetter(text.charCodeAt(i))) i++;
    const letters = i - pos;
    while (i < text.length && isLabelChar(text.charCodeAt(i))) i++;
    if (i === pos) return end; // empty first label
    if (label >= 1 && letters >= 2) end = pos + letters;
    if (text.charCodeAt(i) !== DOT || !isLabelChar(text.charCodeAt(i + 1))) return end;
    pos = i + 1;
  }
}

/**
 * Every match of `EMAIL_REFERENCE_PATTERN` in `text`, as `matchAll` would find them, in linear time: each
 * character is scanned at most once leftwards (a local part stops at the previous `@` or match) and once
 * rightwards (a domain stops before the next `@`).
 */
export function findEmails(text: string): TextMatch[] {
  const matches: TextMatch[] = [];
  let previousEnd = 0;
  let at = text.indexOf('@');
  while (at !== -1) {
    let start = at;
    while (start > previousEnd && isLocalChar(text.charCodeAt(start - 1))) start--;
    const end = start < at ? emailDomainEnd(text, at + 1) : -1;
    if (end === -1) {
      at = text.indexOf('@', at + 1);
      continue;
    }
    matches.push({ start, end, text: text.slice(start, end) });
    previousEnd = end;
    at = text.indexOf('@', end);
  }
  return matches;
}

/** Builds the detector for `type`; `names` extends the built-in name list for `NAME`. */
export function piiDetector(type: SupportedPiiType, names: readonly string[]): PiiDetector {
  if (type === 'EMAIL') return findEmails;
  if (type === 'NAME') {
    const regex = nameRegex(names);
    return (text) => findAll(regex, text);
  }
  const regex = new RegExp(PII_PATTERNS[type], 'g');
  if (type === 'CREDIT_DEBIT_CARD_NUMBER') return (text) => findAll(regex, text).filter((m) => passesLuhn(m.text));
  return (text) => findAll(regex, text);
}
