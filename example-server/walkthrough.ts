/**
 * The walkthrough: one list of requests against the example server with the default config
 * (`gateway.yaml`), what each shows and what it answers. The server prints it as ready-to-paste `curl`
 * commands, `test/example-server.test.ts` runs every step (in both streaming modes where it applies) and
 * asserts the answer described here, and the README can be generated from it.
 */

export interface WalkthroughRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly body?: Readonly<Record<string, unknown>>;
  /** The response headers are the point of the step (`curl -i`). */
  readonly showHeaders?: boolean;
  /** Sent without the API key, even when the server requires one. */
  readonly anonymous?: boolean;
}

/** What to do after a step's request, when the step is more than one request. */
export interface WalkthroughFollowUp {
  /** What to do, in words. */
  readonly text: string;
  /** Shell lines to run before the request (e.g. `export GATEWAY_API_KEY=key-1`). */
  readonly shell?: readonly string[];
  /** One more request, sent with the API key from the shell variable. */
  readonly request?: Omit<WalkthroughRequest, 'anonymous'>;
  readonly expected?: string;
}

export interface WalkthroughStep extends WalkthroughRequest {
  /** Stable key; the test's assertions are keyed by it. */
  readonly id: string;
  readonly title: string;
  /** Server settings the step needs: it starts the server anew with them (after Ctrl-C in its terminal). */
  readonly serverEnv?: Readonly<Record<string, string>>;
  readonly then?: WalkthroughFollowUp;
  /** The answer's text (both modes, for chat steps); the test checks it and that `expected` quotes it. */
  readonly answer?: string;
  /** Response headers the step shows; the test checks them and that `expected` quotes them. */
  readonly headers?: Readonly<Record<string, string>>;
  /** What the server answers, as observed with the default config. */
  readonly expected: string;
}

/** A user message that ends with a word the default guardrail blocks, long enough for several 64-character windows. */
export const BLOCKED_AT_THE_END =
  'This answer streams through an output guardrail that checks it in windows of 64 characters. ' +
  'The first windows pass and reach you while the model is still writing; the last one does not: BLOCKME';

/** The guardrail error frame the seed issue asks for, exactly as it goes out on the wire. */
export const GUARDRAIL_FRAME = 'data: {"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}\n\n';

/**
 * The guardrail error as a Messages stream's terminal event (`POST /v1/messages`): Anthropic's `event: error`,
 * with nothing after it; the JSON body of the same error without streaming.
 */
export const MESSAGES_GUARDRAIL_EVENT = 'event: error\ndata: {"type":"error","error":{"type":"guardrail_violation","message":"Violated guardrail policy"}}\n\n';

/**
 * The guardrail error as a Responses stream's `error` event (`POST /v1/responses`), less its `sequence_number`;
 * `response.failed` follows it and ends the stream.
 */
export const RESPONSES_GUARDRAIL_ERROR = {
  type: 'error',
  code: '400',
  message: 'Violated guardrail policy',
  param: null,
  error: { message: 'Violated guardrail policy', type: 'guardrail_violation', param: null, code: '400' },
} as const;

/** What the server sends when `drain()` ends a stream still open at the shutdown deadline. */
export const SHUTDOWN_FRAME = 'data: {"error":{"message":"The server is shutting down.","code":503,"type":"service_unavailable"}}\n\n';

/** The shell variable the printed commands read the key from when the server requires one. */
export const API_KEY_VARIABLE = 'GATEWAY_API_KEY';

const OPENAI_ANSWER = 'Hello! This is a mock answer from mock-openai.';
const ANTHROPIC_ANSWER = 'Hello! This is a mock answer from mock-anthropic.';

const chat = (model: string, content: string, stream = false) => ({ model, messages: [{ role: 'user', content }], ...(stream ? { stream } : {}) });
/** A request in OpenAI's Responses API (`POST /v1/responses`). */
const responses = (model: string, input: string, stream = false) => ({ model, input, ...(stream ? { stream } : {}) });
/** A request in Anthropic's Messages API (`POST /v1/messages`; `max_tokens` is required, as Anthropic has it). */
const messages = (model: string, content: string, stream = false) => ({ model, max_tokens: 256, messages: [{ role: 'user', content }], ...(stream ? { stream } : {}) });

const RELEASED_BEFORE_BLOCK = 'This answer streams through an output guardrail that checks it in windows of 64 characters. The first ';
const MODERATED_HEADERS = {
  'x-gateway-model-group': 'claude',
  'x-gateway-fallbacks': '1',
  'x-gateway-attempt-log': 'moderated/openai/content-policy-dashscope:400:content_policy_violation, claude/anthropic/claude-sonnet-4-5:200',
} as const;
const MODERATED_HEADERS_TEXT =
  'x-gateway-model-group: claude, x-gateway-fallbacks: 1, ' +
  'x-gateway-attempt-log: moderated/openai/content-policy-dashscope:400:content_policy_violation, claude/anthropic/claude-sonnet-4-5:200';
const MASKED_ANSWER = 'Please write to {EMAIL} about the invoice.';
const MASKED_HEADERS = { 'x-gateway-guardrail': 'pii-mask=INPUT:MASKED;pii-mask=OUTPUT:NONE' } as const;

export const WALKTHROUGH = [
  {
    id: 'health',
    title: 'Health check (an ordinary route of the app, outside the gateway and the auth)',
    method: 'GET',
    path: '/health',
    expected: '{"status":"ok"}',
  },
  {
    id: 'models',
    title: 'The model groups clients can ask for',
    method: 'GET',
    path: '/v1/models',
    expected: 'an OpenAI model list with every group and alias: gpt-4o-mini, claude, claude-sonnet, slow, flaky, rate-limited, moderated, long-context, guarded, guarded-stream',
  },
  {
    id: 'chat',
    title: 'A normal answer (OpenAI-compatible mock)',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('gpt-4o-mini', 'Hello!'),
    answer: OPENAI_ANSWER,
    expected: `a chat.completion whose message is "${OPENAI_ANSWER}"`,
  },
  {
    id: 'stream',
    title: 'A streamed answer, translated from the Anthropic mock into OpenAI chunks',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('claude', 'Hello!', true),
    answer: ANTHROPIC_ANSWER,
    expected: `chat.completion.chunk events spelling "${ANTHROPIC_ANSWER}", then data: [DONE]`,
  },
  {
    id: 'slow',
    title: 'A slow stream, and a graceful shutdown that ends it (the server runs with a 300 ms shutdown deadline)',
    serverEnv: { SHUTDOWN_DEADLINE_MS: '300' },
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('slow', 'Hello!', true),
    answer: OPENAI_ANSWER,
    expected: `"${OPENAI_ANSWER}" in 4 chunks, 500 ms apart, then data: [DONE]`,
    then: {
      text: 'run the command again and, within a second, press Ctrl-C in the server\'s terminal',
      expected: `the server stops accepting; 300 ms later the open stream ends with ${SHUTDOWN_FRAME.trim()} and data: [DONE], and the server prints "stopped" and exits (start it again with npm start for the next steps)`,
    },
  },
  {
    id: 'flaky',
    title: 'Fallback on a 500: "flaky" fails, the general fallback answers',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('flaky', 'Hello!'),
    showHeaders: true,
    answer: OPENAI_ANSWER,
    headers: {
      'x-gateway-model-group': 'gpt-4o-mini',
      'x-gateway-attempts': '3',
      'x-gateway-retries': '1',
      'x-gateway-fallbacks': '1',
      'x-gateway-attempt-log': 'flaky/openai/error-500:502:upstream_error, flaky/openai/error-500:502:upstream_error, gpt-4o-mini/openai/gpt-4o-mini:200',
    },
    expected:
      `HTTP 200 "${OPENAI_ANSWER}" with x-gateway-model-group: gpt-4o-mini, x-gateway-attempts: 3, x-gateway-retries: 1, x-gateway-fallbacks: 1, ` +
      'x-gateway-attempt-log: flaky/openai/error-500:502:upstream_error, flaky/openai/error-500:502:upstream_error, gpt-4o-mini/openai/gpt-4o-mini:200 ' +
      '(an upstream 5xx is a 502 upstream_error to the gateway\'s clients)',
  },
  {
    id: 'rate-limited',
    title: 'Fallback on a 429',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('rate-limited', 'Hello!'),
    showHeaders: true,
    answer: ANTHROPIC_ANSWER,
    headers: {
      'x-gateway-model-group': 'claude',
      'x-gateway-fallbacks': '1',
      'x-gateway-attempt-log': 'rate-limited/openai/rate-limit:0:429:rate_limit_exceeded, rate-limited/openai/rate-limit:0:429:rate_limit_exceeded, claude/anthropic/claude-sonnet-4-5:200',
    },
    expected:
      `HTTP 200 (the 429 says Retry-After: 0, so the one retry goes at once; a 429 with a wait would cool the deployment and go to claude at once) "${ANTHROPIC_ANSWER}" with x-gateway-model-group: claude, x-gateway-fallbacks: 1, ` +
      'x-gateway-attempt-log: rate-limited/openai/rate-limit:0:429:rate_limit_exceeded, rate-limited/openai/rate-limit:0:429:rate_limit_exceeded, claude/anthropic/claude-sonnet-4-5:200',
  },
  {
    id: 'moderated',
    title: 'Content-policy fallback while streaming (the seed bug): DashScope moderation refuses, claude answers',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('moderated', 'Hello!', true),
    showHeaders: true,
    answer: ANTHROPIC_ANSWER,
    headers: {
      'x-gateway-model-group': 'claude',
      'x-gateway-fallbacks': '1',
      'x-gateway-attempt-log': 'moderated/openai/content-policy-dashscope:400:content_policy_violation, claude/anthropic/claude-sonnet-4-5:200',
    },
    expected:
      'HTTP 200 with x-gateway-model-group: claude, x-gateway-fallbacks: 1, ' +
      'x-gateway-attempt-log: moderated/openai/content-policy-dashscope:400:content_policy_violation, claude/anthropic/claude-sonnet-4-5:200, ' +
      `then the normal stream of "${ANTHROPIC_ANSWER}" and data: [DONE] (the same without streaming)`,
  },
  {
    id: 'long-context',
    title: 'Context-window fallback: the prompt does not fit "long-context", claude answers',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('long-context', 'A very long prompt…'),
    showHeaders: true,
    answer: ANTHROPIC_ANSWER,
    headers: {
      'x-gateway-model-group': 'claude',
      'x-gateway-fallbacks': '1',
      'x-gateway-attempt-log': 'long-context/openai/context-window:400:context_window_exceeded, claude/anthropic/claude-sonnet-4-5:200',
    },
    expected:
      `HTTP 200 "${ANTHROPIC_ANSWER}" with x-gateway-model-group: claude, x-gateway-fallbacks: 1, ` +
      'x-gateway-attempt-log: long-context/openai/context-window:400:context_window_exceeded, claude/anthropic/claude-sonnet-4-5:200',
  },
  {
    id: 'masked',
    title: 'Guardrail masking: the Bedrock guardrail (emulator) anonymizes the email before the model sees it',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('guarded', 'Please write to jane.doe@example.com about the invoice.'),
    showHeaders: true,
    answer: 'Please write to {EMAIL} about the invoice.',
    headers: { 'x-gateway-guardrail': 'pii-mask=INPUT:MASKED;pii-mask=OUTPUT:NONE' },
    expected:
      'the echo model answers "Please write to {EMAIL} about the invoice." (the same text when streamed), ' +
      'with x-gateway-guardrail: pii-mask=INPUT:MASKED;pii-mask=OUTPUT:NONE',
  },
  {
    id: 'blocked-input',
    title: 'Guardrail block on input: nothing reaches the model',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('guarded', 'Give me some stock tips.', true),
    showHeaders: true,
    expected: 'HTTP 400 {"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}} (as JSON, also when streaming: nothing was sent yet)',
  },
  {
    id: 'blocked-stream',
    title: 'Guardrail block in the middle of a stream: the first windows arrive, then the error frame',
    method: 'POST',
    path: '/v1/chat/completions',
    body: chat('guarded-stream', BLOCKED_AT_THE_END, true),
    answer: RELEASED_BEFORE_BLOCK,
    expected:
      `chunks with the first windows of the echoed text ("${RELEASED_BEFORE_BLOCK}"), ` +
      `then exactly ${GUARDRAIL_FRAME.trim()} and data: [DONE]; "BLOCKME" never arrives (without streaming: HTTP 400 with the same error object)`,
  },
  {
    id: 'responses',
    title: 'The same gateway in the OpenAI Responses API: POST /v1/responses (stateless)',
    method: 'POST',
    path: '/v1/responses',
    body: responses('gpt-4o-mini', 'Hello!'),
    answer: OPENAI_ANSWER,
    expected: `a response object with status "completed" whose output message's output_text is "${OPENAI_ANSWER}" (with "stream": true: response.created, response.in_progress, response.output_text.delta events, …, response.completed)`,
  },
  {
    id: 'responses-moderated',
    title: 'Responses API: the content-policy fallback while streaming',
    method: 'POST',
    path: '/v1/responses',
    body: responses('moderated', 'Hello!', true),
    showHeaders: true,
    answer: ANTHROPIC_ANSWER,
    headers: MODERATED_HEADERS,
    expected: `HTTP 200 with ${MODERATED_HEADERS_TEXT}, then response.output_text.delta events spelling "${ANTHROPIC_ANSWER}" and response.completed (the same without streaming)`,
  },
  {
    id: 'responses-masked',
    title: 'Responses API: guardrail masking of the input',
    method: 'POST',
    path: '/v1/responses',
    body: responses('guarded', 'Please write to jane.doe@example.com about the invoice.'),
    showHeaders: true,
    answer: MASKED_ANSWER,
    headers: MASKED_HEADERS,
    expected: `the echo model answers "${MASKED_ANSWER}" (the same text when streamed), with x-gateway-guardrail: pii-mask=INPUT:MASKED;pii-mask=OUTPUT:NONE`,
  },
  {
    id: 'responses-blocked-stream',
    title: 'Responses API: a guardrail block in the middle of a stream',
    method: 'POST',
    path: '/v1/responses',
    body: responses('guarded-stream', BLOCKED_AT_THE_END, true),
    answer: RELEASED_BEFORE_BLOCK,
    expected:
      `response.output_text.delta events with the first windows of the echoed text ("${RELEASED_BEFORE_BLOCK}"), ` +
      'then exactly event: error {"type":"error","code":"400","message":"Violated guardrail policy",…,"error":{…,"type":"guardrail_violation",…}} ' +
      'and event: response.failed (status "failed"), and the stream ends; "BLOCKME" never arrives ' +
      '(without streaming: HTTP 400 {"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}})',
  },
  {
    id: 'messages',
    title: 'The same gateway in the Anthropic Messages API: POST /v1/messages, streamed, answered by the OpenAI mock',
    method: 'POST',
    path: '/v1/messages',
    body: messages('gpt-4o-mini', 'Hello!', true),
    answer: OPENAI_ANSWER,
    expected: `event: message_start, content_block_start, content_block_delta events spelling "${OPENAI_ANSWER}", content_block_stop, message_delta (stop_reason "end_turn"), message_stop (without streaming: one message)`,
  },
  {
    id: 'messages-moderated',
    title: 'Messages API: the content-policy fallback while streaming',
    method: 'POST',
    path: '/v1/messages',
    body: messages('moderated', 'Hello!', true),
    showHeaders: true,
    answer: ANTHROPIC_ANSWER,
    headers: MODERATED_HEADERS,
    expected: `HTTP 200 with ${MODERATED_HEADERS_TEXT}, then the Messages events spelling "${ANTHROPIC_ANSWER}" and message_stop (the same without streaming)`,
  },
  {
    id: 'messages-masked',
    title: 'Messages API: guardrail masking of the input',
    method: 'POST',
    path: '/v1/messages',
    body: messages('guarded', 'Please write to jane.doe@example.com about the invoice.'),
    showHeaders: true,
    answer: MASKED_ANSWER,
    headers: MASKED_HEADERS,
    expected: `a message whose text block is "${MASKED_ANSWER}" (the same text when streamed), with x-gateway-guardrail: pii-mask=INPUT:MASKED;pii-mask=OUTPUT:NONE`,
  },
  {
    id: 'messages-blocked-stream',
    title: 'Messages API: a guardrail block in the middle of a stream',
    method: 'POST',
    path: '/v1/messages',
    body: messages('guarded-stream', BLOCKED_AT_THE_END, true),
    answer: RELEASED_BEFORE_BLOCK,
    expected:
      `content_block_delta events with the first windows of the echoed text ("${RELEASED_BEFORE_BLOCK}"), ` +
      `then exactly ${MESSAGES_GUARDRAIL_EVENT.trim().replace('\n', ' ')} and the end of the stream (no message_delta, no message_stop); "BLOCKME" never arrives ` +
      '(without streaming: HTTP 400 with the same {"type":"error","error":{…}} body)',
  },
  {
    id: 'passthrough',
    title: 'Pass-through: endpoints the gateway does not interpret go to the upstream with its key',
    method: 'POST',
    path: '/v1/embeddings',
    body: { model: 'text-embedding-3-small', input: 'Hello!' },
    expected: 'the OpenAI mock\'s answer: {"object":"list","data":[{"object":"embedding","index":0,"embedding":[8 numbers]}],"model":"text-embedding-3-small",…}',
  },
  {
    id: 'unauthorized',
    title: 'API keys: with GATEWAY_API_KEYS set, a request without a key',
    serverEnv: { GATEWAY_API_KEYS: 'key-1,key-2' },
    method: 'GET',
    path: '/v1/models',
    anonymous: true,
    showHeaders: true,
    expected: 'HTTP 401 {"error":{"message":"Missing API key: send Authorization: Bearer <key>.","code":401,"type":"authentication_error"}}',
    then: {
      text: 'with one of the keys',
      shell: [`export ${API_KEY_VARIABLE}=key-1`],
      request: { method: 'GET', path: '/v1/models' },
      expected: 'HTTP 200 and the model list of step 2; /health stays open without a key',
    },
  },
] as const satisfies readonly WalkthroughStep[];

export type WalkthroughId = (typeof WALKTHROUGH)[number]['id'];

/** The step as a `curl` command to paste into a POSIX shell. */
export function curlCommand(step: WalkthroughRequest, baseUrl: string, { withApiKey = false } = {}): string {
  const args = ['curl', '-sS'];
  if (step.body?.['stream'] === true) args.push('-N');
  if (step.showHeaders) args.push('-i');
  args.push(shellQuote(`${baseUrl}${step.path}`));
  if (withApiKey && !step.anonymous) args.push('-H', `"authorization: Bearer $${API_KEY_VARIABLE}"`);
  if (step.body !== undefined) args.push('-H', shellQuote('content-type: application/json'), '-d', shellQuote(JSON.stringify(step.body)));
  return args.join(' ');
}

/** The walkthrough as printed at start-up. */
export function walkthroughText(baseUrl: string, { withApiKey = false } = {}): string {
  const intro = withApiKey
    ? [`API keys are required (GATEWAY_API_KEYS): run  export ${API_KEY_VARIABLE}=<one of them>  first.`, '']
    : [];
  const steps = WALKTHROUGH.map((step: WalkthroughStep, i) => {
    const lines = [`# ${i + 1}. ${step.title}`];
    if (step.serverEnv) lines.push(`#    First restart the server (Ctrl-C in its terminal) with: ${serverCommand(step.serverEnv)}`);
    lines.push(`#    → ${step.expected}`, curlCommand(step, baseUrl, { withApiKey }));
    if (step.then) {
      lines.push(`#    Then: ${step.then.text}${step.then.expected ? ` → ${step.then.expected}` : ''}`);
      lines.push(...followUpCommands(step.then, baseUrl));
    }
    return [...lines, ''].join('\n');
  });
  return [...intro, ...steps].join('\n');
}

/** `npm start` with the step's settings, as typed in the server's terminal. */
export function serverCommand(env: Readonly<Record<string, string>>): string {
  return [...Object.entries(env).map(([name, value]) => `${name}=${value}`), 'npm start'].join(' ');
}

/** The shell lines and the request of a follow-up, as commands. */
export function followUpCommands(then: WalkthroughFollowUp, baseUrl: string): string[] {
  return [...(then.shell ?? []), ...(then.request ? [curlCommand(then.request, baseUrl, { withApiKey: true })] : [])];
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
