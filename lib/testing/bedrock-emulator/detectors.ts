/**
 * Text matchers used by the evaluator: phrase matching for topics/words/content filters, and the built-in
 * PII detectors. They are deliberately simple and predictable (tests need to know what triggers), not
 * a model of Bedrock's classifiers.
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

/** Source of the regex detectors (all but `NAME`, which depends on the configured names). */
const PII_PATTERNS: Record<Exclude<SupportedPiiType, 'NAME'>, string> = {
  EMAIL: '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}',
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

/** Builds the detector for `type`; `names` extends the built-in name list for `NAME`. */
export function piiDetector(type: SupportedPiiType, names: readonly string[]): PiiDetector {
  if (type === 'NAME') {
    const regex = nameRegex(names);
    return (text) => findAll(regex, text);
  }
  const regex = new RegExp(PII_PATTERNS[type], 'g');
  if (type === 'CREDIT_DEBIT_CARD_NUMBER') return (text) => findAll(regex, text).filter((m) => passesLuhn(m.text));
  return (text) => findAll(regex, text);
}
