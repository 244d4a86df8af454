import type { MockServer } from '../lib/testing/index.js';
import { fallbackFixture } from './helpers/fallback-fixture.js';
import { createRouter, fallbackHandler, GatewayConfigError, type FallbackHandlerOptions } from '../lib/index.js';
import { repeatedPrefixLength } from '../lib/fallback-handler.js';
import { chat, chatBoth, parityView, type ChatOutcome } from './helpers/chat.js';
import { EXPRESS_MAJOR } from './helpers/express.js';
import type { TestGateway } from './helpers/gateway.js';

const ask = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'Hi there' }], ...extra });

const fixture = fallbackFixture();
const { openai } = fixture;
const gateway = fixture.gateway;
let primary: MockServer;
let backup: MockServer;
let claude: MockServer;
beforeAll(() => ({ primary, backup, claude } = fixture));

/** The parity assertion of the issue: same answering group, same call counts, same attempt log, same final answer. */
async function expectParity(g: TestGateway): Promise<[ChatOutcome, ChatOutcome]> {
  const before = counts();
  const plain = await chat(g.url, ask('main', { stream: false }));
  const mid = counts();
  const streamed = await chat(g.url, ask('main', { stream: true }));
  const after = counts();
  expect(parityView(streamed)).toEqual(parityView(plain));
  expect(diff(after, mid)).toEqual(diff(mid, before));
  const logOf = (i: number) => g.contexts[g.contexts.length - 2 + i]!.attempts.map((a) => ({ group: a.group, deployment: a.deployment, kind: a.kind, outcome: a.outcome, status: a.status, type: a.errorType }));
  expect(logOf(1)).toEqual(logOf(0));
  expect(streamed.headers['x-gateway-attempt-log']).toBe(plain.headers['x-gateway-attempt-log']);
  return [plain, streamed];
}
const counts = fixture.counts;
const diff = (a: number[], b: number[]) => a.map((v, i) => v - b[i]!);

describe(`fallback handler (Express ${EXPRESS_MAJOR}): every scenario, streaming and not, asserted to agree`, () => {
  const general = { fallbacks: { main: ['backup'] } };
  const policy = { contentPolicyFallbacks: { main: ['other'] }, fallbacks: { main: ['backup'] } };

  it('seed reproduction: stream: true, DashScope "inappropriate content" 400, contentPolicyFallbacks → a normal stream from the fallback, primary called once', async () => {
    const g = await gateway(openai(primary, 'content-policy-dashscope'), { contentPolicyFallbacks: { main: ['backup'] } });
    const res = await chat(g.url, ask('main', { stream: true }));
    expect(res.status).toBe(200);
    expect(res.error).toBeUndefined();
    expect(res.text).toBe('Hello! This is a mock answer from backup.');
    expect(res.finishReason).toBe('stop');
    expect(res.frames.at(-1)).toBe('[DONE]');
    expect(primary.callCount()).toBe(1);
    expect(backup.callCount()).toBe(1);
    expect(res.headers).toMatchObject({ 'x-gateway-model-group': 'backup', 'x-gateway-fallbacks': '1', 'x-gateway-attempts': '2' });
  });

  it('primary 500 → general fallback', async () => {
    const g = await gateway(openai(primary, 'error-500'), general);
    const [plain] = await expectParity(g);
    expect(plain.text).toBe('Hello! This is a mock answer from backup.');
    expect(counts()).toEqual([2, 2, 0]);
  });

  it.each(['content-policy', 'content-policy-azure', 'content-policy-dashscope'])('OpenAI-compatible %s 400 → content-policy fallback', async (scenario) => {
    const g = await gateway(openai(primary, scenario), policy);
    const [plain] = await expectParity(g);
    expect(plain.text).toBe('Hello! This is a mock answer from claude.');
    expect(plain.headers['x-gateway-model-group']).toBe('other');
  });

  it('Anthropic content-filtering 400 → content-policy fallback', async () => {
    const g = await gateway({ provider: 'anthropic', baseUrl: claude.url, model: 'content-policy', apiKey: 'k' }, { contentPolicyFallbacks: { main: ['backup'] } });
    const [plain] = await expectParity(g);
    expect(plain.text).toBe('Hello! This is a mock answer from backup.');
  });

  it('context-window 400 → context-window fallback', async () => {
    const g = await gateway(openai(primary, 'context-window'), { contextWindowFallbacks: { main: ['other'] }, fallbacks: { main: ['backup'] } });
    const [plain] = await expectParity(g);
    expect(plain.headers['x-gateway-model-group']).toBe('other');
  });

  it.each<[string, Omit<FallbackHandlerOptions, 'router'>, string]>([
    ['stream-error:error-500', general, 'backup'],
    ['stream-error:content-policy-dashscope', policy, 'other'],
    ['stream-error:content-policy-azure', policy, 'other'],
    ['stream-error:context-window', { contextWindowFallbacks: { main: ['other'] } }, 'other'],
  ])('%s as the first in-band event of a 200 stream falls back like the HTTP status', async (scenario, options, group) => {
    const g = await gateway(openai(primary, scenario), options);
    const [plain] = await expectParity(g);
    expect(plain.headers['x-gateway-model-group']).toBe(group);
  });

  it('the Anthropic in-band event: error first falls back too', async () => {
    const g = await gateway({ provider: 'anthropic', baseUrl: claude.url, model: 'stream-error:overloaded', apiKey: 'k' }, general);
    const [plain] = await expectParity(g);
    expect(plain.headers['x-gateway-model-group']).toBe('backup');
  });

  it('429 with Retry-After → fallback; while the primary cools down, later requests go to the fallback without calling it', async () => {
    // The 429 cools the single-deployment group down for its Retry-After, so each mode starts from a fresh
    // gateway (the same state) for the parity check.
    const [g1, g2] = [await gateway(openai(primary, 'rate-limit:1'), general), await gateway(openai(primary, 'rate-limit:1'), general)];
    const plain = await chat(g1.url, ask('main', { stream: false }));
    const streamed = await chat(g2.url, ask('main', { stream: true }));
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(plain.headers['x-gateway-attempt-log']).toBe('main/openai/rate-limit:1:429:rate_limit_exceeded, backup/openai/normal:200');
    expect(primary.callCount()).toBe(2);
    const [again, againStreamed] = await chatBoth(g1.url, ask('main'));
    expect(again.headers['x-gateway-attempt-log']).toBe('backup/openai/normal:200');
    expect(parityView(againStreamed)).toEqual(parityView(again));
    expect(primary.callCount()).toBe(2);
  });

  it('first-token timeout → fallback', async () => {
    const g = await gateway(openai(primary, 'hang', { firstTokenMs: 150, totalMs: 150 }), general);
    const [plain] = await expectParity(g);
    expect(plain.headers['x-gateway-attempt-log']).toContain(':504:timeout');
  });

  it('empty answer → fallback', async () => {
    const g = await gateway(openai(primary, 'empty-stream'), general);
    const [plain] = await expectParity(g);
    expect(plain.headers['x-gateway-model-group']).toBe('backup');
  });

  it('content_filter before content → content-policy fallback', async () => {
    const g = await gateway(openai(primary, 'content-filter-first'), policy);
    const [plain] = await expectParity(g);
    expect(plain.headers['x-gateway-model-group']).toBe('other');
  });

  it('the general list serves content-policy errors without their own list only with generalForSpecific: true (default false)', async () => {
    const g = await gateway(openai(primary, 'content-policy'), { ...general, generalForSpecific: true });
    const [plain] = await expectParity(g);
    expect(plain.headers['x-gateway-model-group']).toBe('backup');
    const strict = await gateway(openai(primary, 'content-policy'), general);
    const [p2] = await expectParity(strict);
    expect(p2.status).toBe(400);
  });

  it('all fallbacks failing → the last error, its status, and the attempt list in the body and a header', async () => {
    const g = await gateway(openai(primary, 'error-500'), { fallbacks: { main: ['dead'], dead: ['dead2'] } }, [
      { name: 'dead', deployments: [openai(backup, 'rate-limit:0')] },
      { name: 'dead2', deployments: [openai(backup, 'error-503')] },
    ]);
    const [plain] = await expectParity(g);
    expect(plain.status).toBe(503);
    expect(plain.error).toEqual({
      message: 'The engine is currently overloaded, please try again later.',
      code: 503,
      type: 'upstream_error',
      attempts: [
        { group: 'main', deployment: 'openai/error-500', status: 502, type: 'upstream_error' },
        { group: 'dead', deployment: 'openai/rate-limit:0', status: 429, type: 'rate_limit_exceeded' },
        { group: 'dead2', deployment: 'openai/error-503', status: 503, type: 'upstream_error' },
      ],
    });
    expect(plain.headers['x-gateway-attempt-log']).toBe('main/openai/error-500:502:upstream_error, dead/openai/rate-limit:0:429:rate_limit_exceeded, dead2/openai/error-503:503:upstream_error');
  });

  it('maxFallbacks is honoured across nested fallbacks', async () => {
    const g = await gateway(openai(primary, 'error-500'), { fallbacks: { main: ['dead', 'backup'], dead: ['dead2'] }, maxFallbacks: 1 }, [
      { name: 'dead', deployments: [openai(backup, 'error-500')] },
      { name: 'dead2', deployments: [openai(backup, 'normal')] },
    ]);
    const [plain] = await expectParity(g);
    expect(plain.status).toBe(502);
    expect(plain.headers['x-gateway-fallbacks']).toBe('1');
  });

  it('nested fallbacks go depth first, then back to the parent list', async () => {
    const g = await gateway(openai(primary, 'error-500'), { fallbacks: { main: ['dead', 'backup'], dead: ['dead2'] }, maxFallbacks: 5 }, [
      { name: 'dead', deployments: [openai(backup, 'error-500')] },
      { name: 'dead2', deployments: [openai(backup, 'error-503')] },
    ]);
    const [plain] = await expectParity(g);
    expect(plain.status).toBe(200);
    expect((plain.headers['x-gateway-attempt-log'] as string).split(', ').map((e) => e.split('/')[0])).toEqual(['main', 'dead', 'dead2', 'backup']);
  });

  it('a fallback cycle serves each group once (also through an alias and the wildcard group)', async () => {
    const g = await gateway(openai(primary, 'error-500'), { fallbacks: { main: ['loop', 'main-alias', 'unknown-a', 'unknown-b'], loop: ['main'], '*': ['main'] }, maxFallbacks: 10 }, [
      { name: 'loop', deployments: [openai(backup, 'error-500')] },
      { name: 'alias-holder', aliases: ['main-alias'], deployments: [openai(backup, 'error-503')] },
      { name: '*', deployments: [openai(backup, 'error-500')] },
    ]);
    const [plain] = await expectParity(g);
    expect(plain.status).toBe(502);
    const groups = (plain.headers['x-gateway-attempt-log'] as string).split(', ').map((e) => e.split('/')[0]);
    expect(groups).toEqual(['main', 'loop', 'alias-holder', '*']);
  });

  it('fallbacks disabled by header: the primary error, on every path', async () => {
    const g = await gateway(openai(primary, 'content-policy-dashscope'), policy);
    const [plain, streamed] = await chatBoth(g.url, ask('main'), { headers: { 'x-gateway-disable-fallbacks': 'true' } });
    expect(plain.status).toBe(400);
    expect(plain.error?.['type']).toBe('content_policy_violation');
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(counts()).toEqual([2, 0, 0]);
  });

  it('a plain 400 never falls back, and is the same 400 in both modes', async () => {
    const g = await gateway(openai(primary, 'bad-request'), { ...policy, contextWindowFallbacks: { '*': ['backup'] } });
    const [plain] = await expectParity(g);
    expect(plain.status).toBe(400);
    expect(plain.error).toMatchObject({ code: 400, type: 'invalid_request_error' });
    expect(counts()).toEqual([2, 0, 0]);
  });

  describe('after the first byte', () => {
    it('a mid-stream failure after content: one error frame and [DONE], no duplicated content, no fallback call', async () => {
      const g = await gateway(openai(primary, 'midstream-error'), general);
      const res = await chat(g.url, ask('main', { stream: true }));
      expect(res.status).toBe(200);
      expect(res.frames.filter((f) => f.startsWith('{"error"'))).toHaveLength(1);
      expect(res.frames.at(-1)).toBe('[DONE]');
      expect(res.complete).toBe(true);
      expect(backup.callCount()).toBe(0);
      const text = res.text;
      expect('Hello! This is a mock answer from primary.'.startsWith(text)).toBe(true);
    });

    it('with continuation on, the stream continues on a continuation group with no repeated text', async () => {
      // The backup restates the last words of the partial answer before going on, as models often do.
      backup.setScenario('normal', ({ body }) => {
        const messages = (body as { messages: { role: string; content: string }[] }).messages;
        const partial = messages.at(-2)?.role === 'assistant' ? messages.at(-2)!.content : '';
        return { scenario: 'normal', text: `${partial.slice(-8)} and then the rest of the answer.`, chunks: 3 };
      });
      const g = await gateway(openai(primary, 'midstream-error'), { ...general, continuation: { groups: ['backup'] } });
      const res = await chat(g.url, ask('main', { stream: true }));
      expect(res.error).toBeUndefined();
      expect(res.finishReason).toBe('stop');
      expect(res.frames.at(-1)).toBe('[DONE]');
      const roles = res.frames.filter((f) => f.includes('"role"'));
      expect(roles).toHaveLength(1); // the continuation's role chunk was dropped
      const sent = backup.calls[0]!.body as { messages: { role: string; content: string }[] };
      const partial = sent.messages.at(-2)!.content;
      expect(sent.messages.at(-2)).toEqual({ role: 'assistant', content: partial });
      expect('Hello! This is a mock answer from primary.'.startsWith(partial)).toBe(true);
      expect(sent.messages.at(-1)?.role).toBe('user');
      // The restated words go, and so does the doubled space after them (test/continuation.test.ts has the rest).
      expect(res.text).toBe(`${partial.trimEnd()} and then the rest of the answer.`);
    });

    it('continuation only uses groups marked as able to continue', async () => {
      const g = await gateway(openai(primary, 'midstream-error'), { fallbacks: { main: ['other'] }, continuation: { groups: ['backup'] } });
      const res = await chat(g.url, ask('main', { stream: true }));
      expect(res.inBand).toBe(true);
      expect(claude.callCount()).toBe(0);
    });
  });

  it('repeatedPrefixLength finds the overlap, ignoring chance matches under 4 characters', () => {
    expect(repeatedPrefixLength('The quick brown fox', 'brown fox jumps')).toBe(9);
    expect(repeatedPrefixLength('ends with a', 'a new start')).toBe(0);
    expect(repeatedPrefixLength('abc', 'xyz')).toBe(0);
  });

  it('bad configuration throws naming the field', () => {
    const router = createRouter({ models: [{ name: 'main', deployments: [openai(primary, 'normal')] }] });
    expect(() => fallbackHandler({ router, fallbacks: { main: ['nope'] } })).toThrow(GatewayConfigError);
    expect(() => fallbackHandler({ router, fallbacks: { main: ['nope'] } })).toThrow(/'fallbackHandler.fallbacks.main\[0\]'/);
    expect(() => fallbackHandler({ router, contentPolicyFallbacks: { ghost: ['main'] } })).toThrow(/'fallbackHandler.contentPolicyFallbacks.ghost'/);
    expect(() => fallbackHandler({ router, maxFallbacks: -1 })).toThrow(/'fallbackHandler.maxFallbacks'/);
    expect(() => fallbackHandler({ router: {} as never })).toThrow(/'fallbackHandler.router'/);
    expect(fallbackHandler({ router }).length).toBe(4);
    void router.close();
  });
});
