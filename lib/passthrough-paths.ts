/**
 * Which requests the pass-through may proxy. Paths are compiled once from simple patterns; each request
 * path is then classified once, spelled exactly as the client sent it: proxied when it is written one
 * plain way and matches a pattern, refused (400) when it is spelled in a way an upstream could read
 * differently (dot segments, percent-encoding, backslashes, empty segments) and looks like one of ours,
 * and otherwise left to the host app (`next()`).
 */
import { GatewayConfigError } from './options.js';

/**
 * OpenAI's stateless endpoints that a gateway user expects next to chat completions. Files, uploads,
 * batches, fine-tuning and the like are left out on purpose: behind one server key they are shared by
 * every client (anyone could list and download anyone's files), and a batch runs chat completions
 * upstream outside the gateway's guardrails and limits. Add them to `paths` when that is what you want.
 */
export const DEFAULT_PASSTHROUGH_PATHS: readonly string[] = [
  'POST /v1/embeddings',
  'POST /v1/moderations',
  'POST /v1/audio/speech',
  'POST /v1/audio/transcriptions',
  'POST /v1/audio/translations',
  'POST /v1/images/generations',
  'POST /v1/images/edits',
  'POST /v1/images/variations',
];

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** A segment an upstream reads the same way we do: unreserved characters only, and not made of dots. */
const PLAIN_SEGMENT = /^[A-Za-z0-9._~-]+$/;
const DOTS_ONLY = /^\.+$/;

/** One compiled `paths` entry. */
interface PathRule {
  /** Undefined: every method. */
  readonly methods: ReadonlySet<string> | undefined;
  /** Literal segments and `*` (exactly one segment). */
  readonly segments: readonly string[];
  /** The pattern ended with `/**`: one or more further segments. */
  readonly tail: boolean;
}

/** What to do with a request: proxy it, refuse it with a 400, or leave it to the host app. */
export type PathDecision = 'proxy' | 'reject' | 'next';

export interface PathPolicy {
  decide(method: string, url: string): PathDecision;
}

/**
 * Paths the gateway serves itself (relative to its mount, or to `/v1` when the pass-through is mounted
 * there): no pattern may match one of them or anything under them, in any letter case.
 */
const GATEWAY_PATHS = ['/v1/chat/completions', '/v1/models', '/chat/completions', '/models'].flatMap((p) => [p, `${p}/x`]);

/** Compiles `paths` (see `PassThroughOptions.paths`); throws naming `passThrough.paths[i]` for a bad entry. */
export function compilePathPolicy(patterns: readonly string[]): PathPolicy {
  const rules = patterns.map((pattern, i) => compileRule(pattern, `passThrough.paths[${i}]`));
  return {
    decide(method, url) {
      const path = pathOf(url);
      const segments = plainSegments(path);
      if (segments !== undefined) {
        if (isGatewayPath(segments)) return 'next';
        return rules.some((rule) => rule.methods?.has(method) !== false && matches(rule, segments, false)) ? 'proxy' : 'next';
      }
      // Not one plain spelling: refuse what an upstream might resolve to something under /v1 or to a
      // configured path; leave the rest (the host app's own odd paths) alone.
      const resolved = leniently(path);
      if (resolved[0] === 'v1' || isGatewayPath(resolved) || rules.some((rule) => matches(rule, resolved, true))) return 'reject';
      return 'next';
    },
  };
}

function compileRule(pattern: string, field: string): PathRule {
  const parsed = /^(?:([A-Z]+(?:,[A-Z]+)*)\s+)?(\/\S*)$/.exec(pattern);
  if (!parsed) {
    throw new GatewayConfigError(field, `expected '/path/segments' or 'METHOD[,METHOD] /path/segments', got ${JSON.stringify(pattern)}.`);
  }
  const methodList = parsed[1]?.split(',');
  const unknown = methodList?.find((m) => !METHODS.includes(m));
  if (unknown !== undefined) throw new GatewayConfigError(field, `unknown method '${unknown}' (expected ${METHODS.join(', ')}).`);
  const segments = parsed[2]!.slice(1).split('/');
  const tail = segments.at(-1) === '**';
  if (tail) segments.pop();
  segments.forEach((segment, s) => {
    if (segment === '*') return;
    if (segment === '**') throw new GatewayConfigError(field, "'**' may only be the last segment.");
    if (!PLAIN_SEGMENT.test(segment) || DOTS_ONLY.test(segment)) {
      throw new GatewayConfigError(
        field,
        `segment ${s + 1} (${JSON.stringify(segment)}) must be '*', '**' (last), or letters, digits and . _ ~ - (not only dots, not empty).`,
      );
    }
  });
  const rule: PathRule = { methods: methodList && new Set(methodList), segments, tail };
  const served = GATEWAY_PATHS.find((path) => matches(rule, path.slice(1).split('/'), true));
  if (served !== undefined) {
    throw new GatewayConfigError(field, `${JSON.stringify(pattern)} would proxy ${served}, which the gateway serves itself; list the paths to proxy one by one.`);
  }
  return rule;
}

function matches(rule: PathRule, segments: readonly string[], foldCase: boolean): boolean {
  const count = rule.segments.length;
  if (rule.tail ? segments.length <= count : segments.length !== count) return false;
  for (let i = 0; i < count; i++) {
    const expected = rule.segments[i]!;
    const actual = segments[i]!;
    if (expected === '*') continue;
    if (foldCase ? expected.toLowerCase() !== actual.toLowerCase() : expected !== actual) return false;
  }
  return true;
}

/**
 * The chat endpoint under any prefix (`/v1/x/chat/completions`, `/v1/files/chat/completions`) and the
 * model list: never proxied, even when a `**` pattern covers them, whatever an upstream makes of them.
 */
function isGatewayPath(segments: readonly string[]): boolean {
  const folded = segments.map((s) => s.toLowerCase());
  if (folded[0] === 'models' || (folded[0] === 'v1' && folded[1] === 'models')) return true;
  return folded.some((s, i) => s === 'chat' && folded[i + 1] === 'completions');
}

/** The path part of a request target (`/a/b?x` → `/a/b`). */
function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** The segments of a path written one plain way, or undefined when any segment is not plain. */
function plainSegments(path: string): string[] | undefined {
  if (!path.startsWith('/')) return undefined;
  const segments = path.slice(1).split('/');
  return segments.every((s) => PLAIN_SEGMENT.test(s) && !DOTS_ONLY.test(s)) ? segments : undefined;
}

/**
 * What the most lenient upstream could make of a path: percent-decoded (repeatedly), backslashes as
 * slashes, empty and `.` segments dropped, `..` applied, lower case. Used only to decide to refuse.
 */
function leniently(path: string): string[] {
  let decoded = path;
  for (let i = 0; i < 3 && decoded.includes('%'); i++) {
    try {
      decoded = decodeURIComponent(decoded);
    } catch {
      break;
    }
  }
  const out: string[] = [];
  for (const segment of decoded.replaceAll('\\', '/').toLowerCase().split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return out;
}
