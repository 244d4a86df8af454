/**
 * The one redactor. Everything that can reach a client (error messages, in-band frames, pass-through error
 * bodies) or a log line goes through `redact()`, which removes:
 * - every credential the gateway holds, by value: deployment keys, Azure/Anthropic keys, AWS secrets and
 *   session tokens, the pass-through key and header values, passwords in store URLs, and the values key
 *   functions return as they are used (`registerSecret`);
 * - what looks like one even when the gateway never held it (an upstream echoing some other key):
 *   `sk-…` keys, bearer tokens, AWS key ids, `api_key=…` pairs;
 * - upstream internals: URLs of any scheme (credentials in DSNs included), IP addresses and host:port
 *   pairs, and stack-frame lines.
 * The message stays readable: "invalid token [redacted]", "connect ECONNREFUSED [address]".
 */

/** Shorter values are not treated as secrets: replacing every "x" or "key" would garble every message. */
export const MIN_SECRET_LENGTH = 8;
/** Rotating key functions add a value per rotation; the oldest go first past this many. */
const MAX_SECRETS = 10_000;

const secrets = new Set<string>();
let secretPattern: RegExp | undefined;
let secretPatternStale = false;

/**
 * Adds a credential to redact by value from then on, in this process (a value registered by one gateway
 * is redacted everywhere: erring on the side of hiding). Values shorter than `MIN_SECRET_LENGTH`, and
 * anything that is not a string, are ignored.
 */
export function registerSecret(value: unknown): void {
  if (typeof value !== 'string') return;
  const secret = value.trim();
  if (secret.length < MIN_SECRET_LENGTH || secrets.has(secret)) return;
  if (secrets.size >= MAX_SECRETS) secrets.delete(secrets.values().next().value!);
  secrets.add(secret);
  secretPatternStale = true;
}

/** Registers the password (and user) of a URL such as `redis://user:password@host:6379`. */
export function registerUrlCredentials(url: unknown): void {
  if (typeof url !== 'string') return;
  try {
    const parsed = new URL(url);
    registerSecret(decodeURIComponent(parsed.password));
    registerSecret(parsed.password);
  } catch {
    // Not a URL: nothing to take from it (the config validation reports it).
  }
}

const REDACTED = '[redacted]';

/** What needs no knowledge of the values: applied in order, after the registered values. The first one
 * (stack frames) stays first: `redactKeepingFrames` skips it. */
const PATTERNS: readonly [RegExp, string][] = [
  // Stack frames: "    at fn (/srv/app.js:12:34)", "at /srv/app.js:1:2", "at node:internal/x:1:2".
  [/\r?\n?[ \t]*\bat (?:[^\n()]{0,200}\()?(?:[A-Za-z]:)?(?:[\\/]|node:|file:)[^\n()]{0,500}:\d+:\d+\)?/g, ''],
  // URLs of any scheme, with whatever credentials they carry (postgres://admin:pw@db.internal/x).
  [/\b[a-z][a-z0-9+.-]{1,20}:\/\/[^\s"'<>)\]]+/gi, '[url]'],
  [/\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}/g, REDACTED],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  [/\b(AKIA|ASIA)[A-Z0-9]{12,}/g, REDACTED],
  // An echoed SigV4 Authorization header: key id, scope and signature.
  [/\bAWS4-HMAC-SHA256 Credential=[^\s"',]+(?:,\s*SignedHeaders=[^\s"',]+)?(?:,\s*Signature=[0-9a-f]+)?/g, `AWS4-HMAC-SHA256 ${REDACTED}`],
  [/\b(api[-_]?key|access[-_]?token|secret|password|token)(["']?\s*[:=]\s*["']?)[^\s"',&]+/gi, `$1$2${REDACTED}`],
  // Addresses: IPv4 (with a port), bracketed IPv6, and host:port pairs (db.internal:5432, localhost:8000).
  [/\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b/g, '[address]'],
  [/\[[0-9A-Fa-f:.]{2,45}\](?::\d{1,5})?/g, '[address]'],
  [/\b(?:localhost|[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+):\d{2,5}\b/g, '[address]'],
];

/** The text with every registered secret, credential-like token and upstream internal replaced. */
export function redact(text: string): string {
  return redactFrom(text, 0);
}

/**
 * For the stack of the gateway's own internal error (a bug), logged for whoever fixes it: the frames stay,
 * everything else is redacted as usual.
 */
export function redactKeepingFrames(text: string): string {
  return redactFrom(text, 1);
}

function redactFrom(text: string, firstPattern: number): string {
  let out = text;
  const values = currentSecretPattern();
  if (values) out = out.replace(values, REDACTED);
  for (let i = firstPattern; i < PATTERNS.length; i++) out = out.replace(PATTERNS[i]![0], PATTERNS[i]![1]);
  return out;
}

function currentSecretPattern(): RegExp | undefined {
  if (secretPatternStale) {
    secretPatternStale = false;
    // Longest first, so a secret that contains another is replaced whole.
    const alternatives = [...secrets].sort((a, b) => b.length - a.length).map(escapeRegExp);
    secretPattern = alternatives.length === 0 ? undefined : new RegExp(alternatives.join('|'), 'g');
  }
  return secretPattern;
}

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A log entry's fields with every string redacted, recursively (bounded depth). Errors become plain
 * `{ type, message, stack? }` objects; their stacks keep the frames (only internal errors are logged with
 * one) and lose everything else the redactor removes.
 */
export function redactFields(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (value === null || typeof value !== 'object' || depth > 6) return value;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: redact(value.message) };
    if (value.stack) out['stack'] = redactKeepingFrames(value.stack);
    return out;
  }
  if (Array.isArray(value)) return value.map((item) => redactFields(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = redactFields(item, depth + 1);
  return out;
}
