import type { GuardrailConfig } from './types.js';

/**
 * The guardrail the emulator serves when no `guardrails` option is given (id `gr1default`, version `1`),
 * also used by the example server. What it does:
 * - BLOCK: the denied topic "Investment Advice" ("investment advice", "stock tips", "buy stocks", …), the
 *   custom words "forbidden-word" and "BLOCKME", US social security numbers and (Luhn-valid) card numbers,
 *   and, on INPUT only, prompt attacks ("ignore previous instructions", …);
 * - ANONYMIZE: emails → `{EMAIL}`, phone numbers → `{PHONE}`, known names → `{NAME}`, and, on OUTPUT only,
 *   internal ticket ids like `TICKET-1234` → `{INTERNAL_TICKET}`.
 */
export const DEFAULT_GUARDRAIL: GuardrailConfig = {
  id: 'gr1default',
  version: '1',
  topics: [
    {
      name: 'Investment Advice',
      phrases: ['investment advice', 'stock tips', 'buy stocks', 'which stocks should I buy', 'financial advice'],
    },
  ],
  words: ['forbidden-word', 'BLOCKME'],
  pii: {
    EMAIL: 'ANONYMIZE',
    PHONE: 'ANONYMIZE',
    NAME: 'ANONYMIZE',
    US_SOCIAL_SECURITY_NUMBER: 'BLOCK',
    CREDIT_DEBIT_CARD_NUMBER: 'BLOCK',
  },
  blockedInputMessaging: 'Sorry, your request was blocked by the guardrail.',
  blockedOutputsMessaging: 'Sorry, the model response was blocked by the guardrail.',
  // Bedrock's prompt-attack filter only evaluates user input.
  input: {
    contentFilters: [
      {
        type: 'PROMPT_ATTACK',
        triggers: ['ignore previous instructions', 'ignore all previous instructions', 'disregard your instructions'],
        strength: 'HIGH',
      },
    ],
  },
  output: {
    regexes: [{ name: 'INTERNAL_TICKET', pattern: 'TICKET-\\d{4,}', action: 'ANONYMIZE' }],
  },
};
