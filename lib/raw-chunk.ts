/**
 * Raw forwarding for the OpenAI-compatible path (issue 14): a streamed chunk that nothing downstream needs
 * in parsed form goes to the client as the upstream's own `data:` text, and a non-streaming answer as the
 * upstream's own body.
 *
 * What the gateway must know about a forwarded chunk (content present for the lazy commit, `content_filter`
 * before content, a finish reason, the output length for the usage estimate, choice 0's text and tool-call
 * start for continuation) comes from `scanChunk`, one validating pass over the text that builds no objects.
 * The scan accepts only what it fully understands: valid JSON, an object whose `choices` is a non-empty
 * array of choices that each carry an object `delta`, the fields it reads of the types it expects, no
 * tracked key spelled with an escape or given twice, no `error` (and no `object: "error"`), and `usage`
 * absent or `null`. Anything else (errors, the usage chunk, keep-alives, Azure's annotations, malformed
 * data) is left to the parsed path, which decides exactly as it always did.
 *
 * Output: the parsed path writes `JSON.stringify(JSON.parse(data))` (with `usage` dropped when the client
 * did not ask for it). For compact upstream JSON, which is what OpenAI and vLLM send, that is the upstream's
 * text, so both paths write the same bytes. For other formatting (spaces, `\u00e9` escapes, `1.0`) the raw
 * path keeps the upstream's spelling: the same JSON value, not the same bytes.
 */
import type { ChatCompletion, ChatCompletionChunk } from './types.js';

/** What a chunk before the first content means for the commit decision. */
export type LeadingKind = 'content' | 'blocked' | 'other';

/** A chunk forwarded as text, with the facts the router and the writer need about it. */
export class RawChunk {
  constructor(
    /** The `data:` payload to send: the upstream's text (without `"usage":null` when asked to drop it). */
    readonly data: string,
    /** As `classifyLeadingChunk` would say of the parsed chunk. */
    readonly leading: LeadingKind,
    /** Whether a choice has a `finish_reason`. */
    readonly finished: boolean,
    /** Characters generated (content, refusal, tool-call arguments of every choice), for the usage estimate. */
    readonly outputChars: number,
    /** The content of choice 0 (`''` when none): what the client's text grows by. */
    readonly text0: string,
    /** Whether choice 0 carries a tool or function call delta. */
    readonly toolCall0: boolean,
    /**
     * Set only for a chunk in the compact layout (see `compactChunk`), whose one choice is choice 0 and whose
     * delta is at most a role and text: `text0` as the upstream wrote it inside its JSON string (escapes
     * kept, no quotes; `''` for no text), so an encoder that re-frames the text need not escape it again.
     * `undefined` otherwise: the encoder learns what it needs from `text0` or the parsed chunk.
     */
    readonly text0Json?: string,
    /** With `text0Json`: choice 0's `finish_reason` (`null` when none). */
    readonly finish0?: string | null,
  ) {}
}

/** `text` as the body of a JSON string (escaped, without the quotes): what `RawChunk.text0Json` holds. */
export function jsonStringBody(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

/** A chunk as it travels from an adapter to the writer: parsed, or forwarded as text. */
export type StreamChunk = ChatCompletionChunk | RawChunk;

/** Thrown inside the scan when it meets anything it does not fully understand; never leaves this module. */
const UNSURE = Symbol('unsure');
/** Deeper nesting than any real chunk: left to `JSON.parse`. */
const MAX_DEPTH = 64;
/** The longest run of string characters that need no attention (no quote, backslash or control character). */
const PLAIN_RUN = /[^"\\\u0000-\u001f]*/y;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;

// Tracked keys, as bits (a second occurrence in the same object is left to the parsed path).
const K_CHOICES = 1;
const K_USAGE = 2;
const K_INDEX = 1;
const K_DELTA = 2;
const K_FINISH = 4;
const K_CONTENT = 1;
const K_REFUSAL = 2;
const K_TOOL_CALLS = 4;
const K_FUNCTION_CALL = 8;
const K_FUNCTION = 1;
const K_ARGUMENTS = 1;

/**
 * Scans one event's data. Returns the forwarded chunk, or `undefined` when the parsed path must decide
 * (see the module comment). `dropNullUsage` removes a `"usage":null` member, as the parsed path drops
 * `usage` for a client that did not ask for it.
 */
export function scanChunk(data: string, dropNullUsage: boolean): RawChunk | undefined {
  const fast = compactChunk(data, dropNullUsage);
  if (fast !== undefined) return fast;
  // The usage chunk (`"choices":[]`, once a stream) in the same compact layout: the general scan would read
  // it all and answer `undefined` (no choice), whatever follows the empty array.
  if (COMPACT_NO_CHOICES.test(data)) return undefined;
  const scan = new Scan(data);
  try {
    return scan.chunk(dropNullUsage);
  } catch (error) {
    if (error === UNSURE) return undefined;
    throw error;
  }
}

// The compact layout OpenAI (and the mock) send for every text chunk, matched by one regular expression
// (irregexp: ~0.1 µs a chunk, against ~0.7 for the general scan and for JSON.parse):
//   {"id":"…","object":"chat.completion.chunk","created":N,"model":"…"[,"system_fingerprint":"…"],
//    "choices":[{"index":0,"delta":{DELTA}[,"logprobs":null],"finish_reason":null|"…"}][,"usage":null]}
// where DELTA is empty or, in this order, some of "role":"…", "content":"…"|null, "refusal":null. Strings
// other than the content are plain (no escape, no control character); the content may have escapes. Any
// other layout, even one space, goes to the general scan below (the same answer, slower).
const PLAIN = '"[^"\\\\\\u0000-\\u001f]*"';
const STRING_BODY = '([^"\\\\\\u0000-\\u001f]*(?:\\\\(?:["\\\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\\\\u0000-\\u001f]*)*)';
const CONTENT = (group: string) => `"content":(?:"${group}"|null)`;
const REFUSAL = '"refusal":null';
const COMPACT_CHUNK = new RegExp(
  `^\\{"id":${PLAIN},"object":"chat\\.completion\\.chunk","created":(?:0|[1-9][0-9]*),"model":${PLAIN}(?:,"system_fingerprint":${PLAIN})?` +
    `,"choices":\\[\\{"index":0,"delta":\\{(?:"role":${PLAIN}(?:,${CONTENT(STRING_BODY)})?(?:,${REFUSAL})?|${CONTENT(STRING_BODY)}(?:,${REFUSAL})?|${REFUSAL})?\\}` +
    `(?:,"logprobs":null)?,"finish_reason":(?:null|"([^"\\\\\\u0000-\\u001f]*)")\\}\\](,"usage":null)?\\}$`,
);

/** The start of a compact chunk whose `choices` is empty (the usage chunk): the parsed path's at once. */
const COMPACT_NO_CHOICES = new RegExp(
  `^\\{"id":${PLAIN},"object":"chat\\.completion\\.chunk","created":(?:0|[1-9][0-9]*),"model":${PLAIN}(?:,"system_fingerprint":(?:${PLAIN}|null))?,"choices":\\[\\]`,
);

/** The fast path of `scanChunk`: the facts of a chunk in the compact layout above, or `undefined` (exported for tests). */
export function compactChunk(s: string, dropNullUsage: boolean): RawChunk | undefined {
  const match = COMPACT_CHUNK.exec(s);
  if (match === null) return undefined;
  const content = match[1] ?? match[2];
  const finish = match[3];
  let length = 0;
  let text0 = '';
  if (content !== undefined && content.length > 0) {
    text0 = content.includes('\\') ? (JSON.parse(`"${content}"`) as string) : content;
    length = text0.length;
  }
  const leading: LeadingKind = length > 0 ? 'content' : finish === 'content_filter' ? 'blocked' : 'other';
  const text = dropNullUsage && match[4] !== undefined ? `${s.slice(0, s.length - match[4].length - 1)}}` : s;
  return new RawChunk(text, leading, finish !== undefined, length, text0, false, content ?? '', finish ?? null);
}

class Scan {
  private i = 0;
  private depth = 0;
  // The last string scanned: its text between the quotes, and its length once decoded.
  private strStart = 0;
  private strEnd = 0;
  private strLength = 0;
  // Facts gathered from the choices.
  private leading: LeadingKind = 'other';
  private finished = false;
  private outputChars = 0;
  private text0 = '';
  private toolCall0 = false;

  constructor(private readonly s: string) {}

  chunk(dropNullUsage: boolean): RawChunk {
    const s = this.s;
    this.ws();
    this.expect(OPEN_BRACE);
    let seen = 0;
    let choices = 0;
    // Where the `"usage":null` member is: its key's quote, the end of its value, the end of the value before it
    // (-1 when it is the first member), and the next key's quote (-1 when none follows).
    let usageStart = -1;
    let usageEnd = -1;
    let usagePrevEnd = -1;
    let usageNextStart = -1;
    let prevEnd = -1;
    this.ws();
    if (s.charCodeAt(this.i) !== CLOSE_BRACE) {
      for (;;) {
        const keyStart = this.i;
        if (usageEnd >= 0 && usageNextStart < 0) usageNextStart = keyStart;
        const key = this.key();
        if (key === 'choices') {
          seen = once(seen, K_CHOICES);
          choices = this.choices();
          if (choices === 0) throw UNSURE; // no choice: the parsed path's, whatever follows
        } else if (key === 'usage') {
          seen = once(seen, K_USAGE);
          this.literal('null');
          usageStart = keyStart;
          usageEnd = this.i;
          usagePrevEnd = prevEnd;
        } else if (key === 'error') {
          throw UNSURE;
        } else if (key === 'object') {
          this.ws();
          if (s.charCodeAt(this.i) === QUOTE) {
            this.string();
            const value = s.slice(this.strStart, this.strEnd);
            if (value === 'error' || value.includes('\\')) throw UNSURE;
          } else {
            this.value();
          }
        } else {
          this.value();
        }
        prevEnd = this.i;
        this.ws();
        const c = s.charCodeAt(this.i++);
        if (c === CLOSE_BRACE) break;
        if (c !== COMMA) throw UNSURE;
        this.ws();
      }
    } else {
      this.i++;
    }
    this.ws();
    if (this.i !== s.length || choices === 0) throw UNSURE;
    let text = s;
    if (dropNullUsage && usageStart >= 0) {
      if (usagePrevEnd >= 0) text = s.slice(0, usagePrevEnd) + s.slice(usageEnd);
      else if (usageNextStart >= 0) text = s.slice(0, usageStart) + s.slice(usageNextStart);
      else throw UNSURE; // cannot happen with choices present; kept for safety
    }
    return new RawChunk(text, this.leading, this.finished, this.outputChars, this.text0, this.toolCall0);
  }

  /** `[choice, …]`; returns how many. */
  private choices(): number {
    const s = this.s;
    this.ws();
    this.expect(OPEN_BRACKET);
    this.ws();
    if (s.charCodeAt(this.i) === CLOSE_BRACKET) {
      this.i++;
      return 0;
    }
    let n = 0;
    for (;;) {
      this.choice();
      n++;
      this.ws();
      const c = s.charCodeAt(this.i++);
      if (c === CLOSE_BRACKET) return n;
      if (c !== COMMA) throw UNSURE;
    }
  }

  private choice(): void {
    const s = this.s;
    this.ws();
    this.expect(OPEN_BRACE);
    let seen = 0;
    let indexZero = false;
    let finish: string | undefined;
    let content = 0;
    let contentStart = 0;
    let contentEnd = 0;
    let refusal = 0;
    let toolCalls = 0;
    let functionCall = false;
    let args = 0;
    this.ws();
    if (s.charCodeAt(this.i) === CLOSE_BRACE) throw UNSURE; // no delta: the parsed path adds one
    for (;;) {
      const key = this.key();
      if (key === 'index') {
        seen = once(seen, K_INDEX);
        this.ws();
        const start = this.i;
        this.number();
        const literal = s.slice(start, this.i);
        if (!/^(0|[1-9][0-9]*)$/.test(literal)) throw UNSURE;
        indexZero = literal === '0';
      } else if (key === 'delta') {
        seen = once(seen, K_DELTA);
        // The delta's members, inline: this is the innermost loop of a stream.
        this.ws();
        this.expect(OPEN_BRACE);
        this.depth++;
        let deltaSeen = 0;
        this.ws();
        if (s.charCodeAt(this.i) === CLOSE_BRACE) {
          this.i++;
        } else {
          for (;;) {
            const name = this.key();
            if (name === 'content') {
              deltaSeen = once(deltaSeen, K_CONTENT);
              if (this.stringOrNull()) {
                contentStart = this.strStart;
                contentEnd = this.strEnd;
                content = this.strLength;
              }
            } else if (name === 'refusal') {
              deltaSeen = once(deltaSeen, K_REFUSAL);
              if (this.stringOrNull()) refusal = this.strLength;
            } else if (name === 'tool_calls') {
              deltaSeen = once(deltaSeen, K_TOOL_CALLS);
              this.ws();
              if (s.charCodeAt(this.i) === OPEN_BRACKET) {
                const calls = this.toolCalls();
                toolCalls = calls.count;
                args = calls.args;
              } else {
                this.literal('null');
              }
            } else if (name === 'function_call') {
              deltaSeen = once(deltaSeen, K_FUNCTION_CALL);
              this.ws();
              if (s.charCodeAt(this.i) === OPEN_BRACE) {
                this.value();
                functionCall = true;
              } else {
                this.literal('null');
              }
            } else {
              this.value();
            }
            this.ws();
            const c = s.charCodeAt(this.i++);
            if (c === CLOSE_BRACE) break;
            if (c !== COMMA) throw UNSURE;
            this.ws();
          }
        }
        this.depth--;
      } else if (key === 'finish_reason') {
        seen = once(seen, K_FINISH);
        if (this.stringOrNull()) {
          finish = s.slice(this.strStart, this.strEnd);
          if (finish.includes('\\')) throw UNSURE;
        }
      } else {
        this.value();
      }
      this.ws();
      const c = s.charCodeAt(this.i++);
      if (c === CLOSE_BRACE) break;
      if (c !== COMMA) throw UNSURE;
      this.ws();
    }
    if ((seen & K_DELTA) === 0) throw UNSURE;
    this.outputChars += content + refusal + args;
    if (finish !== undefined) this.finished = true;
    if (this.leading === 'other') {
      if (content > 0 || toolCalls > 0 || refusal > 0) this.leading = 'content';
      else if (finish === 'content_filter') this.leading = 'blocked';
    }
    if (indexZero) {
      // A string without escapes decodes to its own text; one with escapes is left to JSON.parse.
      if (content > 0) this.text0 += content === contentEnd - contentStart ? s.slice(contentStart, contentEnd) : (JSON.parse(s.slice(contentStart - 1, contentEnd + 1)) as string);
      if (toolCalls > 0 || functionCall) this.toolCall0 = true;
    }
  }

  /** `[call, …]` of a delta: how many, and the length of their `function.arguments`. */
  private toolCalls(): { count: number; args: number } {
    const s = this.s;
    this.expect(OPEN_BRACKET);
    this.ws();
    let count = 0;
    let args = 0;
    if (s.charCodeAt(this.i) === CLOSE_BRACKET) {
      this.i++;
      return { count, args };
    }
    this.depth++;
    for (;;) {
      this.ws();
      this.expect(OPEN_BRACE);
      count++;
      let seen = 0;
      this.ws();
      if (s.charCodeAt(this.i) === CLOSE_BRACE) {
        this.i++;
      } else {
        for (;;) {
          const key = this.key();
          if (key === 'function') {
            seen = once(seen, K_FUNCTION);
            this.ws();
            if (s.charCodeAt(this.i) === OPEN_BRACE) args += this.functionArguments();
            else this.literal('null');
          } else {
            this.value();
          }
          this.ws();
          const c = s.charCodeAt(this.i++);
          if (c === CLOSE_BRACE) break;
          if (c !== COMMA) throw UNSURE;
          this.ws();
        }
      }
      this.ws();
      const c = s.charCodeAt(this.i++);
      if (c === CLOSE_BRACKET) break;
      if (c !== COMMA) throw UNSURE;
    }
    this.depth--;
    return { count, args };
  }

  /** `{"name":…,"arguments":"…"}`: the decoded length of `arguments` (0 when absent or null). */
  private functionArguments(): number {
    const s = this.s;
    this.expect(OPEN_BRACE);
    let seen = 0;
    let length = 0;
    this.ws();
    if (s.charCodeAt(this.i) === CLOSE_BRACE) {
      this.i++;
      return 0;
    }
    for (;;) {
      const key = this.key();
      if (key === 'arguments') {
        seen = once(seen, K_ARGUMENTS);
        if (this.stringOrNull()) length = this.strLength;
      } else {
        this.value();
      }
      this.ws();
      const c = s.charCodeAt(this.i++);
      if (c === CLOSE_BRACE) return length;
      if (c !== COMMA) throw UNSURE;
      this.ws();
    }
  }

  /** A member's key and its colon. Tracked keys are compared as written: a key with an escape is unsure. */
  private key(): string {
    this.string();
    const key = this.s.slice(this.strStart, this.strEnd);
    if (this.strLength !== this.strEnd - this.strStart) throw UNSURE;
    this.ws();
    this.expect(COLON);
    return key;
  }

  /** The key of a member nothing reads (any spelling) and its colon. */
  private memberName(): void {
    this.string();
    this.ws();
    this.expect(COLON);
  }

  /** A string (true) or `null` (false); anything else is unsure. */
  private stringOrNull(): boolean {
    this.ws();
    if (this.s.charCodeAt(this.i) === QUOTE) {
      this.string();
      return true;
    }
    this.literal('null');
    return false;
  }

  /** Any JSON value, checked as `JSON.parse` would check it. */
  private value(): void {
    const s = this.s;
    this.ws();
    const c = s.charCodeAt(this.i);
    if (c === QUOTE) {
      this.string();
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++this.depth > MAX_DEPTH) throw UNSURE;
      const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
      this.i++;
      this.ws();
      if (s.charCodeAt(this.i) === close) {
        this.i++;
      } else {
        for (;;) {
          if (close === CLOSE_BRACE) this.memberName();
          this.value();
          this.ws();
          const next = s.charCodeAt(this.i++);
          if (next === close) break;
          if (next !== COMMA) throw UNSURE;
          this.ws();
        }
      }
      this.depth--;
    } else if (c === 0x74) {
      this.literal('true');
    } else if (c === 0x66) {
      this.literal('false');
    } else if (c === 0x6e) {
      this.literal('null');
    } else {
      this.number();
    }
  }

  /** A string at `i`: sets `strStart`/`strEnd` (inside the quotes) and `strLength` (decoded, in UTF-16 units). */
  private string(): void {
    const s = this.s;
    if (s.charCodeAt(this.i) !== QUOTE) throw UNSURE;
    const start = ++this.i;
    let extra = 0;
    let i = start;
    for (;;) {
      PLAIN_RUN.lastIndex = i;
      PLAIN_RUN.test(s);
      i = PLAIN_RUN.lastIndex;
      const c = s.charCodeAt(i);
      if (c === QUOTE) break;
      if (c !== BACKSLASH) throw UNSURE; // a control character, or the end of the text
      const e = s.charCodeAt(i + 1);
      if (e === 0x75) {
        for (let k = 2; k <= 5; k++) if (!isHex(s.charCodeAt(i + k))) throw UNSURE;
        i += 6;
        extra += 5;
      } else if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
        extra += 1;
      } else {
        throw UNSURE;
      }
    }
    this.strStart = start;
    this.strEnd = i;
    this.strLength = i - start - extra;
    this.i = i + 1;
  }

  /** A number, by JSON's grammar. */
  private number(): void {
    const s = this.s;
    let i = this.i;
    if (s.charCodeAt(i) === MINUS) i++;
    const first = s.charCodeAt(i);
    if (first === 0x30) i++;
    else if (isDigit(first)) while (isDigit(s.charCodeAt(i))) i++;
    else throw UNSURE;
    if (s.charCodeAt(i) === 0x2e) {
      i++;
      if (!isDigit(s.charCodeAt(i))) throw UNSURE;
      while (isDigit(s.charCodeAt(i))) i++;
    }
    const e = s.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === MINUS) i++;
      if (!isDigit(s.charCodeAt(i))) throw UNSURE;
      while (isDigit(s.charCodeAt(i))) i++;
    }
    this.i = i;
  }

  private literal(word: string): void {
    this.ws();
    if (!this.s.startsWith(word, this.i)) throw UNSURE;
    this.i += word.length;
  }

  private expect(code: number): void {
    if (this.s.charCodeAt(this.i) !== code) throw UNSURE;
    this.i++;
  }

  private ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }
}

function once(seen: number, bit: number): number {
  if ((seen & bit) !== 0) throw UNSURE;
  return seen | bit;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** The upstream's own body text of a non-streaming answer, kept beside the parsed completion. */
const rawBodies = new WeakMap<ChatCompletion, string>();

/** Remembers `text` as the body `completion` was parsed from. */
export function keepRawBody(completion: ChatCompletion, text: string): ChatCompletion {
  rawBodies.set(completion, text);
  return completion;
}

/** The body `completion` was parsed from, if its adapter kept it. */
export function rawBodyOf(completion: ChatCompletion): string | undefined {
  return rawBodies.get(completion);
}
