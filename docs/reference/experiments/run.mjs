// Runs the real client SDKs against sse-server.mjs and prints what each one does, per case.
// Findings are written up in ../responses-and-messages-clients.md.
//
// The SDKs are NOT dependencies of this repo. Install them in a scratch folder and point SDK_DIR at it:
//   mkdir /tmp/sdkres && cd /tmp/sdkres && npm init -y && \
//     npm install openai@6.49.0 @anthropic-ai/sdk@1.16.0 ai@6 @ai-sdk/openai@3 @ai-sdk/anthropic@3
//   SDK_DIR=/tmp/sdkres node docs/reference/experiments/run.mjs            # every case, every driver
//   SDK_DIR=/tmp/sdkres node docs/reference/experiments/run.mjs responses a-nested   # one protocol / case
// (The note also ran it on Node 24 with openai@7 ai@7 @ai-sdk/openai@4 @ai-sdk/anthropic@4.)
// Add --json for the full error objects. Traffic stays on 127.0.0.1.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from './sse-server.mjs';

const SDK_DIR = process.env.SDK_DIR ?? '/tmp/sdkres';
const req = createRequire(path.join(SDK_DIR, 'package.json'));
const version = (p) => JSON.parse(fs.readFileSync(path.join(SDK_DIR, 'node_modules', p, 'package.json'), 'utf8')).version;
const OpenAI = req('openai').default ?? req('openai');
const Anthropic = req('@anthropic-ai/sdk').default ?? req('@anthropic-ai/sdk');
const { streamText, generateText } = req('ai');
const { createOpenAI } = req('@ai-sdk/openai');
const { createAnthropic } = req('@ai-sdk/anthropic');

const args = process.argv.slice(2).filter((a) => a !== '--json');
const asJson = process.argv.includes('--json');
const [onlyProtocol, onlyCase] = args;

const CASES = {
  responses: ['ok', 'a-flat', 'a-flat-400', 'a-nested', 'a-hybrid', 'b-failed', 'b-failed-400', 'c-flat+failed', 'c-nested+failed', 'c-failed+nested', 'c-hybrid+failed',
    'd-cut-end', 'd-cut-destroy', 'f-nested-before-output', 'f-failed-before-output', 'g-no-seq-nested', 'g-no-indexes', 'g-no-created',
    'e-400', 'e-400-guardrail', 'e-429', 'e-500', 'e-503', 'h-500-no-retry', 'h-400-retry', 'h-429-retry-after-1s'],
  messages: ['ok', 'a-overloaded', 'a-guardrail', 'a-invalid', 'a-no-event-line', 'a-after-stop', 'd-cut-end', 'd-cut-destroy',
    'f-error-first', 'f-overloaded-first', 'f-error-after-start', 'g-start-no-usage',
    'e-400', 'e-400-guardrail', 'e-429', 'e-500', 'e-529', 'h-500-no-retry', 'h-400-retry', 'h-429-retry-after-1s'],
};

function describe(e) {
  if (e === undefined) return undefined;
  if (!(e instanceof Error)) return { plainObject: e };
  const out = { class: e.constructor?.name, message: String(e.message).slice(0, 160) };
  for (const k of ['status', 'statusCode', 'isRetryable', 'code', 'type', 'param', 'apiMessage', 'reason']) {
    if (e[k] !== undefined && e[k] !== null) out[k] = e[k];
  }
  if (e.cause) out.cause = `${e.cause.constructor?.name}: ${String(e.cause.message).slice(0, 80)}`;
  if (e.lastError) out.lastError = describe(e.lastError);
  return out;
}
const short = (d) => {
  if (!d) return '-';
  if (d.plainObject) return `plain ${JSON.stringify(d.plainObject).slice(0, 140)}`;
  const extras = ['status', 'statusCode', 'isRetryable', 'code', 'type', 'apiMessage'].filter((k) => d[k] !== undefined).map((k) => `${k}=${JSON.stringify(d[k])}`);
  return `${d.class}(${JSON.stringify(d.message)}${extras.length ? ', ' + extras.join(', ') : ''})${d.lastError ? ' last=' + short(d.lastError) : ''}`;
};

// ---------------------------------------------------------------- drivers
const drivers = {
  responses: {
    async 'openai create(stream)'(url, id) {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'k' });
      const types = [];
      try {
        const s = await client.responses.create({ model: id, input: 'hi', stream: true });
        for await (const ev of s) types.push(ev.type);
        return { events: types, threw: undefined };
      } catch (e) { return { events: types, threw: describe(e) }; }
    },
    async 'openai stream()'(url, id) {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'k' });
      const types = [];
      let iterErr; let final; let finalErr; let errorEvents = 0;
      const rs = client.responses.stream({ model: id, input: 'hi' });
      rs.on('error', () => { errorEvents++; });
      try { for await (const ev of rs) types.push(ev.type); } catch (e) { iterErr = describe(e); }
      try { const r = await rs.finalResponse(); final = { status: r.status, output_text: r.output_text, error: r.error }; } catch (e) { finalErr = describe(e); }
      return { events: types, threw: iterErr, final, finalErr, errorEvents };
    },
    async 'ai streamText'(url, id) { return aiStream(createOpenAI({ baseURL: `${url}/v1`, apiKey: 'k' })(id)); },
    async 'ai generateText'(url, id) { return aiGenerate(createOpenAI({ baseURL: `${url}/v1`, apiKey: 'k' })(id)); },
  },
  messages: {
    async 'anthropic create(stream)'(url, id) {
      const client = new Anthropic({ baseURL: url, apiKey: 'k' });
      const types = [];
      try {
        const s = await client.messages.create({ model: id, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], stream: true });
        for await (const ev of s) types.push(ev.type);
        return { events: types, threw: undefined };
      } catch (e) { return { events: types, threw: describe(e) }; }
    },
    async 'anthropic stream()'(url, id) {
      const client = new Anthropic({ baseURL: url, apiKey: 'k' });
      const types = [];
      let iterErr; let final; let finalErr; let text = ''; let errorEvents = 0;
      const ms = client.messages.stream({ model: id, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
      ms.on('text', (t) => { text += t; });
      ms.on('error', () => { errorEvents++; });
      try { for await (const ev of ms) types.push(ev.type); } catch (e) { iterErr = describe(e); }
      try { const r = await ms.finalMessage(); final = { stop_reason: r.stop_reason, text: r.content.map((b) => b.text).join('') }; } catch (e) { finalErr = describe(e); }
      return { events: types, threw: iterErr, final, finalErr, text, errorEvents };
    },
    async 'ai streamText'(url, id) { return aiStream(createAnthropic({ baseURL: `${url}/v1`, apiKey: 'k' })(id)); },
    async 'ai generateText'(url, id) { return aiGenerate(createAnthropic({ baseURL: `${url}/v1`, apiKey: 'k' })(id)); },
  },
};

async function aiStream(model) {
  const onError = [];
  const parts = [];
  let threw; let text; let textErr; let finishReason; let finishErr;
  const result = streamText({ model, prompt: 'hi', onError: ({ error }) => onError.push(describe(error)) });
  try {
    for await (const p of result.fullStream) {
      if (p.type === 'error') parts.push({ type: 'error', error: describe(p.error) });
      else if (p.type === 'text-delta') parts.push({ type: 'text-delta', text: p.text ?? p.delta ?? p.textDelta });
      else parts.push({ type: p.type });
    }
  } catch (e) { threw = describe(e); }
  try { text = await result.text; } catch (e) { textErr = describe(e); }
  try { finishReason = await result.finishReason; } catch (e) { finishErr = describe(e); }
  return { parts, onError, threw, text, textErr, finishReason, finishErr };
}
async function aiGenerate(model) {
  try {
    const r = await generateText({ model, prompt: 'hi' });
    return { text: r.text, finishReason: r.finishReason };
  } catch (e) { return { threw: describe(e) }; }
}

function summarize(driver, r) {
  const out = [];
  if (r.events) out.push(`events: ${r.events.length ? r.events.map((t) => t.replace(/^response\./, '')).join(',') : '(none)'}`);
  if (r.parts) {
    const kinds = r.parts.map((p) => (p.type === 'error' ? `error[${short(p.error)}]` : p.type === 'text-delta' ? `"${p.text}"` : p.type));
    out.push(`fullStream: ${kinds.join(' ')}`);
    out.push(`onError: ${r.onError.length ? r.onError.map(short).join(' | ') : 'not called'}`);
    out.push(`text: ${r.textErr ? 'rejects ' + short(r.textErr) : JSON.stringify(r.text)}; finishReason: ${r.finishErr ? 'rejects ' + short(r.finishErr) : JSON.stringify(r.finishReason)}`);
  }
  if ('threw' in r) out.push(`throws: ${short(r.threw)}`);
  if ('final' in r || 'finalErr' in r) out.push(`final: ${r.finalErr ? 'rejects ' + short(r.finalErr) : JSON.stringify(r.final)}`);
  if (r.errorEvents !== undefined) out.push(`'error' listener calls: ${r.errorEvents}`);
  if (r.text !== undefined && !r.parts) out.push(`text: ${JSON.stringify(r.text)}`);
  if (r.finishReason !== undefined && !r.parts) out.push(`finishReason: ${JSON.stringify(r.finishReason)}`);
  return out.join('\n      ');
}

const unhandled = [];
process.on('unhandledRejection', (e) => unhandled.push(describe(e)));

const server = await startServer();
console.log(`node ${process.version}; openai ${version('openai')}; @anthropic-ai/sdk ${version('@anthropic-ai/sdk')}; ai ${version('ai')}; @ai-sdk/openai ${version('@ai-sdk/openai')}; @ai-sdk/anthropic ${version('@ai-sdk/anthropic')}`);
const all = [];
for (const protocol of Object.keys(CASES)) {
  if (onlyProtocol && protocol !== onlyProtocol) continue;
  for (const id of CASES[protocol]) {
    if (onlyCase && id !== onlyCase) continue;
    console.log(`\n## ${protocol} / ${id}`);
    for (const [name, fn] of Object.entries(drivers[protocol])) {
      if (name === 'ai generateText' && !/^[eh]-/.test(id)) continue; // non-streaming: only the JSON cases
      server.hits.clear();
      const t0 = Date.now();
      const r = await fn(server.url, id);
      const ms = Date.now() - t0;
      const hits = [...server.hits.values()].reduce((a, b) => a + b, 0);
      all.push({ protocol, id, driver: name, hits, ms, ...r });
      console.log(`  - ${name} [${hits} request${hits === 1 ? '' : 's'}, ${ms} ms]\n      ${summarize(name, r)}`);
      if (unhandled.length) console.log(`      UNHANDLED REJECTION(S): ${unhandled.splice(0).map(short).join(' | ')}`);
    }
  }
}
await server.close();
if (asJson) console.log(JSON.stringify(all, null, 1));
