/**
 * The three inbound protocols' wire basics, shared by the tests (test/helpers/protocols.ts) and the soak
 * (soak/): their paths, a chat-shaped body written in each protocol's own form, and the strict reader of
 * named server-sent events. Pure functions without dependencies, so the soak can import them as they are.
 */

export type WireProtocol = 'chat' | 'responses' | 'messages';

export const WIRE_PROTOCOLS: readonly WireProtocol[] = ['chat', 'responses', 'messages'];

export const PROTOCOL_PATHS: Readonly<Record<WireProtocol, string>> = {
  chat: '/v1/chat/completions',
  responses: '/v1/responses',
  messages: '/v1/messages',
};

export interface NamedEvent {
  event: string | undefined;
  data: Record<string, unknown>;
}

interface ChatishMessage {
  role: string;
  content: unknown;
}

/** A chat body in the protocol's form (only what the tests use: messages, stream, max_tokens, tools, temperature). */
export function protocolBody(protocol: WireProtocol, body: Record<string, unknown>): Record<string, unknown> {
  if (protocol === 'chat') return body;
  const { messages, max_tokens: maxTokens, tools, ...rest } = body as { messages: ChatishMessage[]; max_tokens?: number; tools?: { function: Record<string, unknown> }[] } & Record<string, unknown>;
  const system = messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => String(m.content));
  const turns = messages.filter((m) => m.role !== 'system' && m.role !== 'developer');
  if (protocol === 'responses') {
    return {
      ...rest,
      input: turns.map((m) => ({ role: m.role, content: m.content })),
      ...(system.length > 0 ? { instructions: system.join('\n') } : {}),
      ...(maxTokens !== undefined ? { max_output_tokens: maxTokens } : {}),
      ...(tools ? { tools: tools.map((t) => ({ type: 'function', ...t.function })) } : {}),
    };
  }
  return {
    ...rest,
    messages: turns.map((m) => ({ role: m.role, content: m.content })),
    ...(system.length > 0 ? { system: system.join('\n') } : {}),
    max_tokens: maxTokens ?? 1024,
    ...(tools ? { tools: tools.map((t) => ({ name: t.function['name'], description: t.function['description'], input_schema: t.function['parameters'] ?? { type: 'object' } })) } : {}),
  };
}

/** Splits an SSE body into its frames (the text between blank lines), asserting that it ends with one. */
export function sseFrames(text: string): string[] {
  if (text === '') return [];
  if (!text.endsWith('\n\n')) throw new Error(`SSE body does not end with a blank line: ${JSON.stringify(text.slice(-40))}`);
  return text.slice(0, -2).split('\n\n');
}

/** The SSE body as named events; every frame must be `event:` (optional for chat) and one `data:` line of JSON. */
export function namedEvents(text: string): NamedEvent[] {
  return sseFrames(text).map((frame) => {
    const lines = frame.split('\n');
    const event = lines.length === 2 && lines[0]!.startsWith('event: ') ? lines[0]!.slice('event: '.length) : undefined;
    const dataLine = lines.at(-1)!;
    if (event === undefined || !dataLine.startsWith('data: ')) throw new Error(`not an event: and a data: line: ${JSON.stringify(frame)}`);
    const data = JSON.parse(dataLine.slice('data: '.length)) as Record<string, unknown>;
    if (data['type'] !== event) throw new Error(`event ${event} carries data of type ${String(data['type'])}`);
    return { event, data };
  });
}
