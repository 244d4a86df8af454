/**
 * Issue 16, "every inbound protocol to every provider": a chat, a Responses and a Messages client, each on an
 * OpenAI-compatible, an Azure, an Anthropic and a Bedrock (Converse, through the real AWS SDK) deployment,
 * all through one gateway, with and without streaming: the same answer text, finish reason and tool call in
 * every cell, the two modes of a cell agreeing, and every stream ending with its protocol's normal ending.
 */
import { createGateway, silentLogger, type Gateway } from '../lib/index.js';
import { normalText } from '../lib/testing/mock-scenarios.js';
import { startMockAnthropic, startMockBedrock, startMockOpenAI, type MockBedrock, type MockServer } from '../lib/testing/index.js';
import { EXPRESS_MAJOR, serve } from './helpers/express.js';
import { rawRequest, type RunningServer } from './helpers/http.js';
import { ask, PROTOCOL_PATHS, protocolBody, WIRE_PROTOCOLS, type ProtocolOutcome, type WireProtocol } from './helpers/protocols.js';

const AWS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' };
const PROVIDERS = ['openai', 'azure', 'anthropic', 'bedrock'] as const;
type Provider = (typeof PROVIDERS)[number];

let openai: MockServer;
let anthropic: MockServer;
let bedrock: MockBedrock;
let server: RunningServer;
let gateway: Gateway;

beforeAll(async () => {
  [openai, anthropic, bedrock] = await Promise.all([startMockOpenAI({ name: 'openai' }), startMockAnthropic({ name: 'anthropic' }), startMockBedrock({ name: 'bedrock' })]);
  const deployment = (provider: Provider, model: string) => {
    switch (provider) {
      case 'openai':
        return { provider, baseUrl: `${openai.url}/v1`, model, apiKey: 'k' };
      case 'azure':
        return { provider, baseUrl: openai.url, model, apiKey: 'k' };
      case 'anthropic':
        return { provider, baseUrl: anthropic.url, model, apiKey: 'k' };
      case 'bedrock':
        return { provider, baseUrl: bedrock.url, model, awsCredentials: AWS };
    }
  };
  gateway = createGateway({
    models: PROVIDERS.flatMap((p) => [
      { name: `${p}-normal`, deployments: [deployment(p, 'normal')] },
      { name: `${p}-tools`, deployments: [deployment(p, 'tools')] },
    ]),
    router: { retries: { maxRetries: 0 } },
    logger: silentLogger,
  });
  server = await serve(gateway);
});

afterAll(async () => {
  await server.close();
  await gateway.close();
  await Promise.all([openai.close(), anthropic.close(), bedrock.close()]);
});

const WEATHER = {
  type: 'function',
  function: { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } },
};

/** The tool calls of an answer, whatever its protocol: `[name, arguments parsed]`. */
function toolCalls(protocol: WireProtocol, outcome: ProtocolOutcome, json: Record<string, unknown> | undefined): [string, unknown][] {
  if (json !== undefined) {
    if (protocol === 'chat') {
      const message = (json['choices'] as { message: { tool_calls?: { function: { name: string; arguments: string } }[] } }[])[0]!.message;
      return (message.tool_calls ?? []).map((c) => [c.function.name, JSON.parse(c.function.arguments)]);
    }
    if (protocol === 'responses') {
      return (json['output'] as { type: string; name?: string; arguments?: string }[]).filter((o) => o.type === 'function_call').map((o) => [o.name!, JSON.parse(o.arguments!)]);
    }
    return (json['content'] as { type: string; name?: string; input?: unknown }[]).filter((b) => b.type === 'tool_use').map((b) => [b.name!, b.input]);
  }
  const events = outcome.events;
  if (protocol === 'chat') {
    const calls = new Map<number, { name: string; args: string }>();
    for (const { data } of events) {
      for (const choice of (data['choices'] as { delta: { tool_calls?: { index: number; function?: { name?: string; arguments?: string } }[] } }[]) ?? []) {
        for (const d of choice.delta.tool_calls ?? []) {
          const call = calls.get(d.index) ?? { name: '', args: '' };
          call.name += d.function?.name ?? '';
          call.args += d.function?.arguments ?? '';
          calls.set(d.index, call);
        }
      }
    }
    return [...calls.values()].map((c) => [c.name, JSON.parse(c.args)]);
  }
  if (protocol === 'responses') {
    return events
      .filter((e) => e.event === 'response.output_item.done' && (e.data['item'] as { type: string }).type === 'function_call')
      .map((e) => {
        const item = e.data['item'] as { name: string; arguments: string };
        return [item.name, JSON.parse(item.arguments)];
      });
  }
  const blocks = new Map<number, { name: string; json: string }>();
  for (const { event, data } of events) {
    const block = data['content_block'] as { type: string; name?: string } | undefined;
    if (event === 'content_block_start' && block?.type === 'tool_use') blocks.set(data['index'] as number, { name: block.name!, json: '' });
    const delta = data['delta'] as { type?: string; partial_json?: string } | undefined;
    if (event === 'content_block_delta' && delta?.type === 'input_json_delta') blocks.get(data['index'] as number)!.json += delta.partial_json;
  }
  return [...blocks.values()].map((b) => [b.name, b.json === '' ? {} : JSON.parse(b.json)]);
}

async function both(protocol: WireProtocol, body: Record<string, unknown>): Promise<{ text: string; finish: unknown; calls: [string, unknown][] }[]> {
  const out = [];
  for (const stream of [false, true]) {
    const outcome = await ask(protocol, server.url, { ...body, stream });
    expect({ protocol, stream, status: outcome.status, error: outcome.error }).toEqual({ protocol, stream, status: 200, error: undefined });
    expect({ protocol, stream, ending: outcome.ending }).toEqual({ protocol, stream, ending: stream ? 'completed' : 'json' });
    // The whole answer's JSON, for its tool calls (the outcome keeps the text and the finish reason).
    const json = stream ? undefined : await wholeAnswer(protocol, { ...body, stream });
    out.push({ text: outcome.text, finish: outcome.finishReason, calls: toolCalls(protocol, outcome, json) });
  }
  return out;
}

async function wholeAnswer(protocol: WireProtocol, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const res = await rawRequest(server.url, { path: PROTOCOL_PATHS[protocol], body: protocolBody(protocol, body) });
  return JSON.parse(res.text) as Record<string, unknown>;
}

describe(`every protocol on every provider (Express ${EXPRESS_MAJOR})`, () => {
  describe.each(PROVIDERS)('%s deployment', (provider) => {
    it.each(WIRE_PROTOCOLS)('%s: a normal answer, the same in both modes', async (protocol) => {
      const [plain, streamed] = await both(protocol, { model: `${provider}-normal`, messages: [{ role: 'user', content: 'Hi there' }] });
      expect(plain).toEqual({ text: normalText(provider === 'azure' ? 'openai' : provider), finish: 'stop', calls: [] });
      expect(streamed).toEqual(plain);
    });

    it.each(WIRE_PROTOCOLS)('%s: a tool call, the same in both modes', async (protocol) => {
      const [plain, streamed] = await both(protocol, { model: `${provider}-tools`, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [WEATHER] });
      expect(plain!.finish).toBe('tool_calls');
      expect(plain!.calls.map(([name]) => name)).toEqual(['get_weather']);
      expect(plain!.calls[0]![1]).toEqual(expect.any(Object));
      expect(streamed).toEqual(plain);
    });
  });
});
