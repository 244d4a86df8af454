/**
 * The emulator's bounds: every detector is linear in its input (a 10 MB body or a 400,000-character token;
 * the wall-clock bound is deliberately wide, it only catches a quadratic blow-up), the e-mail scanner finds exactly what its reference regex finds, and calls attach
 * nothing per call to a long-lived signal.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  DEFAULT_GUARDRAIL,
  evaluateGuardrail,
  startBedrockEmulator,
  SUPPORTED_PII_TYPES,
  type GuardrailConfig,
} from '../lib/testing/bedrock-emulator.js';
import { EMAIL_REFERENCE_PATTERN, findAll, findEmails, phraseRegex, piiDetector } from '../lib/testing/bedrock-emulator/detectors.js';

/**
 * Not a speed target: a guard against quadratic blow-ups, wide enough for a loaded 2-core CI machine. A
 * linear scan of 10 MB takes tens of ms on a quiet machine (2.5 s was seen under load); the quadratic
 * e-mail regex took 0.7–2.5 s for 40 kB, so for the 400 kB tokens below it would take minutes.
 */
const BOUND_MS = 8000;

function timed<T>(fn: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = fn();
  return { value, ms: performance.now() - started };
}

/** Every PII type plus words, topics, a content filter and a regex, on both sources. */
const EVERYTHING: GuardrailConfig = {
  ...DEFAULT_GUARDRAIL,
  id: 'grbounds',
  names: ['Zelda'],
  pii: Object.fromEntries(SUPPORTED_PII_TYPES.map((type) => [type, 'ANONYMIZE'])),
};

const SENTENCE =
  'Hello John Smith, mail john.doe@example.com or call 555-123-4567 / +44 20 7946 0958; card 4111 1111 1111 1111, ' +
  'ssn 123-45-6789, ip 10.0.3.4, key AKIAIOSFODNN7EXAMPLE, see https://example.com/a?b=c. Ticket TICKET-1234. ';

/** 400,000-character tokens without a space, each aimed at one detector's worst case. */
const TOKENS: Record<string, string> = {
  'local-part characters, no @': 'a'.repeat(400_000),
  'dotted labels, no @': 'ab.'.repeat(133_340),
  'many @ without a domain': 'a@'.repeat(200_000),
  'many @ with a numeric domain': 'a@b.1'.repeat(80_000),
  'one @ and a long domain': `x@${'ab.'.repeat(133_330)}1`,
  digits: '1'.repeat(400_000),
  'digits and dashes': '12-'.repeat(133_340),
  'digits and dots': '1.'.repeat(200_000),
  'plus and digits': '+1-'.repeat(133_340),
  'url with a punctuation tail': `http://${')'.repeat(400_000)}`,
  'urls back to back': 'http://.'.repeat(50_000),
  'access key prefixes': 'AKIA'.repeat(100_000),
  'names with spaces': `John${'\t'.repeat(400_000)}A1`,
  'name and a long surname': `John A${"'".repeat(400_000)}1`,
};

describe('detectors are linear', () => {
  it.each(Object.entries(TOKENS))('checks a 400,000-character token (%s) in linear time', (_label, token) => {
    for (const source of ['INPUT', 'OUTPUT'] as const) {
      const { ms } = timed(() => evaluateGuardrail(EVERYTHING, source, [{ text: { text: token } }]));
      expect(ms).toBeLessThan(BOUND_MS);
    }
  });

  it('checks a 10 MB text in linear time, and still finds everything in it', () => {
    const copies = Math.ceil(10_000_000 / SENTENCE.length);
    const { value, ms } = timed(() => evaluateGuardrail(EVERYTHING, 'INPUT', [{ text: { text: SENTENCE.repeat(copies) } }]));
    expect(ms).toBeLessThan(BOUND_MS);
    const masked =
      'Hello {NAME}, mail {EMAIL} or call {PHONE} / {PHONE}; card {CREDIT_DEBIT_CARD_NUMBER}, ' +
      'ssn {US_SOCIAL_SECURITY_NUMBER}, ip {IP_ADDRESS}, key {AWS_ACCESS_KEY}, see {URL}. Ticket TICKET-1234. ';
    expect(value.outputs).toHaveLength(1);
    expect(value.outputs[0]?.text === masked.repeat(copies)).toBe(true);
    const perType = new Map<string, number>();
    for (const e of value.assessments[0]?.sensitiveInformationPolicy?.piiEntities ?? []) perType.set(e.type, (perType.get(e.type) ?? 0) + 1);
    expect(Object.fromEntries(perType)).toEqual({
      NAME: copies,
      EMAIL: copies,
      PHONE: 2 * copies,
      CREDIT_DEBIT_CARD_NUMBER: copies,
      US_SOCIAL_SECURITY_NUMBER: copies,
      IP_ADDRESS: copies,
      AWS_ACCESS_KEY: copies,
      URL: copies,
    });
  });

  it('checks a 10 MB token without a space with each detector and phrase matcher', () => {
    // 200,000 characters first, so that a quadratic regression fails here (in seconds) rather than hanging on 10 MB.
    const tokens = ['a'.repeat(200_000), 'a'.repeat(10_000_000), '1'.repeat(10_000_000), 'a.'.repeat(5_000_000), 'a@'.repeat(5_000_000)];
    const detectors = [
      ...SUPPORTED_PII_TYPES.map((type) => piiDetector(type, ['Zelda'])),
      (text: string) => findAll(phraseRegex('buy stocks'), text),
      (text: string) => findAll(phraseRegex('forbidden-word'), text),
    ];
    for (const token of tokens) {
      const { ms } = timed(() => detectors.forEach((detect) => detect(token)));
      expect(ms).toBeLessThan(BOUND_MS);
    }
  });

  it('answers a ~10 MB ApplyGuardrail request over HTTP in linear time', async () => {
    const emulator = await startBedrockEmulator({ guardrails: [EVERYTHING], maxBodyBytes: 11 * 1024 * 1024 });
    try {
      const body = JSON.stringify({ source: 'INPUT', content: [{ text: { text: 'a'.repeat(10_000_000) } }] });
      const started = performance.now();
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: emulator.port,
            method: 'POST',
            path: `/guardrail/${EVERYTHING.id}/version/1/apply`,
            headers: { 'content-type': 'application/json', authorization: 'Bearer x' },
            agent: false,
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      expect(status).toBe(200);
      expect(performance.now() - started).toBeLessThan(BOUND_MS);
    } finally {
      await emulator.close();
    }
  });
});

describe('the e-mail scanner', () => {
  const reference = (text: string) => findAll(new RegExp(EMAIL_REFERENCE_PATTERN, 'g'), text);

  it.each([
    'mail john.doe@example.com now',
    'a@b.co',
    'a@b.c',
    'a@b.com1',
    'x@b.com1y@c.org',
    'a@b.c.de.f1.gh9',
    'a@-.xx',
    '@b.com',
    ' @b.com a@@b.com a@.b.com a@b..com a@b.com.',
    'first.last+tag%x_y-z@sub-domain.example.museum, second@x.io;third@y.z',
    'Ünïcode@example.com and é@é.com',
    'a@b.comb@c.org',
    'a@b.cc@d.ee',
  ])('finds what the reference regex finds in %j', (text) => {
    expect(findEmails(text)).toEqual(reference(text));
  });

  it('agrees with the reference regex on 20,000 random short strings', () => {
    const alphabet = 'aZ1-._%+@ .@@..';
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let n = 0; n < 20_000; n++) {
      let text = '';
      const length = Math.floor(random() * 24);
      for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)];
      const found = findEmails(text);
      if (JSON.stringify(found) !== JSON.stringify(reference(text))) expect({ text, found }).toEqual({ text, found: reference(text) });
    }
  });
});

describe('no per-call listeners on long-lived signals', () => {
  function post(port: number, id: string, headers: Record<string, string> = {}): { done: Promise<number>; req: http.ClientRequest } {
    let req!: http.ClientRequest;
    const done = new Promise<number>((resolve) => {
      req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: `/guardrail/${id}/version/1/apply`, headers: { authorization: 'Bearer x', ...headers }, agent: false },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(JSON.stringify({ source: 'INPUT', content: [{ text: { text: 'hello John' } }] }));
    });
    return { done, req };
  }

  it('holds one controller per call in flight and none once calls end, without AbortSignal.any', async () => {
    const any = jest.spyOn(AbortSignal, 'any');
    const emulator = await startBedrockEmulator({ latencyMs: 5 });
    try {
      for (let round = 0; round < 5; round++) {
        const statuses = await Promise.all(Array.from({ length: 40 }, () => post(emulator.port, DEFAULT_GUARDRAIL.id).done));
        expect(statuses.every((s) => s === 200)).toBe(true);
        expect(emulator.trackedCalls).toBe(0);
      }
      // Calls the client abandons (hangs) release their controller when the connection closes.
      const hung = Array.from({ length: 10 }, () => post(emulator.port, DEFAULT_GUARDRAIL.id, { 'x-emulator-fault': 'hang' }));
      await emulator.waitFor((calls) => calls.filter((c) => c.fault === 'hang').length === 10);
      expect(emulator.trackedCalls).toBe(10);
      for (const { req } of hung) req.destroy();
      await Promise.all(hung.map((h) => h.done));
      await emulator.waitFor((calls) => calls.filter((c) => c.abortedAt !== undefined).length === 10);
      expect(emulator.trackedCalls).toBe(0);
      expect(any).not.toHaveBeenCalled();
    } finally {
      any.mockRestore();
      await emulator.close();
    }
  });

  it('still ends hanging calls promptly on close()', async () => {
    const emulator = await startBedrockEmulator();
    const hung = post(emulator.port, DEFAULT_GUARDRAIL.id, { 'x-emulator-fault': 'hang' });
    await emulator.waitFor((calls) => calls.some((c) => c.fault === 'hang'));
    expect(emulator.trackedCalls).toBe(1);
    const started = performance.now();
    await emulator.close();
    await hung.done;
    expect(performance.now() - started).toBeLessThan(1000);
    expect(emulator.trackedCalls).toBe(0);
  });
});
