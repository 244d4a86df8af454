/**
 * Mock OpenAI-compatible server on real HTTP: OpenAI, Azure OpenAI and DashScope/vLLM-style bases.
 *
 * Routes: `POST …/chat/completions` (any prefix, e.g. `/v1` or `/compatible-mode/v1`),
 * `POST /openai/deployments/{deployment}/chat/completions?api-version=…` (Azure: the deployment is
 * the model, the key comes in `api-key`), `POST …/embeddings`, `GET …/models`.
 * Scenarios (chosen by model name): see `mock-scenarios.ts`.
 */
import {
  startMockServer,
  type IncomingRequest,
  type MockEndpoint,
  type MockExchange,
  type MockProviderOptions,
  type MockServer,
  type RequestFacts,
} from './mock-core.js';
import {
  completionTokens,
  play,
  sendFailure,
  sseData,
  type Answer,
  type AnswerChoice,
  type Dialect,
  type Frame,
  type HttpFailure,
} from './mock-playback.js';
import {
  MOCK_FAILURE_NAMES,
  MOCK_PATHOLOGIES,
  estimateTokens,
  isRecord,
  positiveInteger,
  promptText,
  stringList,
  type Failure,
} from './mock-scenarios.js';

/** Starts a mock OpenAI-compatible server (default name `mock-openai`) on `http://127.0.0.1:<free port>`. */
export function startMockOpenAI(options?: MockProviderOptions): Promise<MockServer> {
  return startMockServer(
    { defaultName: 'mock-openai', midstreamFailure: 'error-500', describe: describeRequest, respond },
    options,
  );
}

const AZURE_ROUTE = /^\/openai\/deployments\/([^/]+)(\/chat\/completions|\/embeddings)$/;
const DONE = 'data: [DONE]\n\n';

function describeRequest(request: IncomingRequest): RequestFacts {
  const body = isRecord(request.body) ? request.body : {};
  const azure = AZURE_ROUTE.exec(request.path);
  const endpoint = endpointOf(request.method, azure?.[2] ?? request.path);
  const model = azure?.[1] === undefined ? stringOrUndefined(body.model) : decodePathSegment(azure[1]);
  const bearer = bearerToken(request.headers.authorization);
  return {
    api: azure === null ? 'openai' : 'azure',
    endpoint,
    model,
    stream: endpoint === 'chat' && body.stream === true,
    apiKey: azure === null ? bearer : (stringOrUndefined(request.headers['api-key']) ?? bearer),
    apiVersion: request.query.get('api-version') ?? undefined,
  };
}

function endpointOf(method: string, path: string): MockEndpoint {
  if (method === 'POST' && path.endsWith('/chat/completions')) return 'chat';
  if (method === 'POST' && path.endsWith('/embeddings')) return 'embeddings';
  if (method === 'GET' && path.endsWith('/models')) return 'models';
  return 'unknown';
}

function respond(x: MockExchange): void {
  const { call, settings } = x;
  if (call.endpoint === 'unknown') {
    return x.sendJson(404, openAIError(`Invalid URL (${call.method} ${call.path})`, 'invalid_request_error', null, null));
  }
  if (settings.requireAuth !== undefined && call.apiKey !== settings.requireAuth) {
    return sendFailure(x, openAIDialect, { name: 'auth', retryAfterSeconds: 0 });
  }
  if (x.request.bodyInvalid) {
    return x.sendJson(400, openAIError(JSON_PARSE_ERROR, 'invalid_request_error', null, null));
  }
  if (call.endpoint === 'models') return x.sendJson(200, modelList(x));
  if (call.endpoint === 'embeddings') return respondEmbeddings(x);
  const problem = chatRequestProblem(x);
  if (problem !== undefined) return x.sendJson(400, problem);
  play(x, openAIDialect);
}

const JSON_PARSE_ERROR =
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";

/** The two checks a real upstream would fail on first, so a gateway that drops a field is caught. */
function chatRequestProblem(x: MockExchange): object | undefined {
  const body = isRecord(x.request.body) ? x.request.body : {};
  if (x.call.api === 'openai' && x.call.model === undefined) {
    return openAIError('you must provide a model parameter', 'invalid_request_error', null, null);
  }
  if (!Array.isArray(body.messages)) {
    return openAIError("Missing required parameter: 'messages'.", 'invalid_request_error', 'messages', 'missing_required_parameter');
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Chat completions

const openAIDialect: Dialect = {
  readRequest(body) {
    const request = isRecord(body) ? body : {};
    const firstTool: unknown = Array.isArray(request.tools) ? request.tools[0] : undefined;
    const toolFunction = isRecord(firstTool) && isRecord(firstTool.function) ? firstTool.function : {};
    return {
      choices: positiveInteger(request.n) ?? 1,
      maxTokens: positiveInteger(request.max_completion_tokens) ?? positiveInteger(request.max_tokens),
      stopSequences: stringList(request.stop),
      toolName: stringOrUndefined(toolFunction.name),
      messages: request.messages,
      system: undefined,
    };
  },

  answerJson(x, answer) {
    return {
      id: completionId(x),
      object: 'chat.completion',
      created: createdAt(x),
      model: x.call.model ?? '',
      ...(azureStyle(x) ? { prompt_filter_results: PROMPT_FILTER_RESULTS } : {}),
      choices: answer.choices.map((choice, index) => ({
        index,
        message: answerMessage(x, answer, choice),
        logprobs: null,
        finish_reason: finishReason(choice),
      })),
      usage: usageOf(answer),
    };
  },

  answerFrames(x, answer) {
    const chunk = chunkWriter(x);
    const frames: Frame[] = [];
    if (azureStyle(x)) frames.push({ text: sseData(AZURE_PROMPT_FILTER_CHUNK), content: false });
    const roleChunks = answer.choices.map((_, index) => chunk(index, roleDelta(x, answer), null));
    frames.push({ text: roleChunks.join(''), content: false });
    for (let step = 0; step < answer.steps; step++) {
      const deltas = answer.choices.map((choice, index) => contentDelta(answer, choice, step, index, chunk));
      const text = deltas.join('');
      if (text !== '') frames.push({ text, content: true });
    }
    const finish = answer.choices.map((choice, index) => chunk(index, {}, finishReason(choice)));
    frames.push({ text: finish.join('') + usageChunk(x, answer) + DONE, content: false });
    return frames;
  },

  failure: openAIFailure,

  inBandError(x, failure) {
    return sseData(openAIFailure(x, failure).body) + DONE;
  },

  contentFilterJson(x, azure) {
    const filtered = azure || x.call.api === 'azure';
    return {
      id: completionId(x),
      object: 'chat.completion',
      created: createdAt(x),
      model: x.call.model ?? '',
      ...(filtered ? { prompt_filter_results: PROMPT_FILTER_RESULTS } : {}),
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: null, refusal: null },
          logprobs: null,
          finish_reason: 'content_filter',
          ...(filtered ? { content_filter_results: OUTPUT_FILTER_RESULTS } : {}),
        },
      ],
      usage: { prompt_tokens: promptTokensOf(x), completion_tokens: 0, total_tokens: promptTokensOf(x) },
    };
  },

  contentFilterStream(x, azure) {
    const filtered = azure || x.call.api === 'azure';
    const chunk = chunkWriter(x);
    const promptFilter = filtered ? sseData(AZURE_PROMPT_FILTER_CHUNK) : '';
    const extra = filtered ? { content_filter_results: OUTPUT_FILTER_RESULTS } : {};
    const usage = { prompt_tokens: promptTokensOf(x), completion_tokens: 0, total_tokens: promptTokensOf(x) };
    return promptFilter + chunk(0, {}, 'content_filter', extra) + usageChunkOf(x, usage) + DONE;
  },

  malformedFrame: 'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel\n\n',

  harmlessFrames(x) {
    // Azure's asynchronous content filter annotates the answer with choices that have no `delta`.
    const annotation = azureStyle(x) ? sseData({ ...AZURE_ANNOTATION_CHUNK, id: completionId(x) }) : '';
    return HARMLESS_FRAMES + annotation;
  },

  emptyStream: DONE,
};

/** What servers and proxies put between chunks: nothing in it is for the client. */
const HARMLESS_FRAMES =
  ': keep-alive\n\n' +
  'data:\n\n' +
  'data: {}\n\n' +
  'event: ping\ndata: {}\n\n' +
  sseData({ type: 'metadata', server: 'mock-openai', queue_ms: 0 });

type ChunkWriter = (index: number, delta: object, finishReason: string | null, extra?: object) => string;

/** Writes `chat.completion.chunk` frames; with `include_usage`, every chunk carries `usage: null` as OpenAI's do. */
function chunkWriter(x: MockExchange): ChunkWriter {
  // The members every chunk of the answer shares, serialized once: the same text `sseData` would write for
  // the whole object (same members, same order), at a fraction of the cost (the benchmark's mock shares two
  // cores with the server it measures).
  const base = JSON.stringify({ id: completionId(x), object: 'chat.completion.chunk', created: createdAt(x), model: x.call.model ?? '' });
  const head = `data: ${base.slice(0, -1)},"choices":[`;
  const tail = includeUsage(x) ? '],"usage":null}\n\n' : ']}\n\n';
  return (index, delta, finishReason, extra = {}) =>
    `${head}${JSON.stringify({ index, delta, logprobs: null, finish_reason: finishReason, ...extra })}${tail}`;
}

/** The first delta of a choice: the role, and for a tool call its id and name (arguments follow). */
function roleDelta(x: MockExchange, answer: Answer): object {
  if (answer.tool === undefined) return { role: 'assistant', content: '', refusal: null };
  const call = { index: 0, id: toolCallId(x), type: 'function', function: { name: answer.tool.name, arguments: '' } };
  return { role: 'assistant', content: null, tool_calls: [call], refusal: null };
}

function contentDelta(answer: Answer, choice: AnswerChoice, step: number, index: number, chunk: ChunkWriter): string {
  const argumentsPiece = answer.tool?.pieces[step];
  if (argumentsPiece !== undefined) return chunk(index, { tool_calls: [{ index: 0, function: { arguments: argumentsPiece } }] }, null);
  const piece = choice.pieces[step];
  return piece === undefined ? '' : chunk(index, { content: piece }, null);
}

function answerMessage(x: MockExchange, answer: Answer, choice: AnswerChoice): object {
  if (answer.tool === undefined) return { role: 'assistant', content: choice.text, refusal: null };
  const call = { id: toolCallId(x), type: 'function', function: { name: answer.tool.name, arguments: answer.tool.arguments } };
  return { role: 'assistant', content: null, tool_calls: [call], refusal: null };
}

function finishReason(choice: AnswerChoice): string {
  switch (choice.stop) {
    case 'max_tokens':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    default:
      return 'stop';
  }
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

function usageOf(answer: Answer): Usage {
  const completion = answer.choices.reduce((sum, choice) => sum + completionTokens(answer, choice), 0);
  return { prompt_tokens: answer.promptTokens, completion_tokens: completion, total_tokens: answer.promptTokens + completion };
}

function usageChunk(x: MockExchange, answer: Answer): string {
  return usageChunkOf(x, usageOf(answer));
}

/** The extra last chunk (`choices: []`) that `stream_options.include_usage` asks for. */
function usageChunkOf(x: MockExchange, usage: Usage): string {
  if (!includeUsage(x)) return '';
  return sseData({ id: completionId(x), object: 'chat.completion.chunk', created: createdAt(x), model: x.call.model ?? '', choices: [], usage });
}

function includeUsage(x: MockExchange): boolean {
  const body = x.request.body;
  return isRecord(body) && isRecord(body.stream_options) && body.stream_options.include_usage === true;
}

function promptTokensOf(x: MockExchange): number {
  return estimateTokens(promptText(isRecord(x.request.body) ? x.request.body.messages : undefined));
}

function azureStyle(x: MockExchange): boolean {
  return x.call.api === 'azure';
}

function completionId(x: MockExchange): string {
  return `chatcmpl-mock-${x.call.seq}`;
}

function toolCallId(x: MockExchange): string {
  return `call_mock_${x.call.seq}`;
}

function createdAt(x: MockExchange): number {
  return Math.floor(x.call.receivedAt / 1000);
}

// ---------------------------------------------------------------------------------------------
// Azure content filtering (what Azure adds to answers, chunks and content_filter errors)

const SAFE = { filtered: false, severity: 'safe' };
const PROMPT_FILTER_RESULTS = [
  { prompt_index: 0, content_filter_results: { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE, jailbreak: { filtered: false, detected: false } } },
];
const OUTPUT_FILTER_RESULTS = { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: { filtered: true, severity: 'medium' } };
/** Azure's asynchronous-filter annotation: a choice without `delta`, only `content_filter_results`. */
const AZURE_ANNOTATION_CHUNK = {
  choices: [{ index: 0, finish_reason: null, content_filter_results: { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE } }],
  created: 0,
  model: '',
  object: '',
};
/** Azure streams start with this chunk: empty `choices`, empty id and model. */
const AZURE_PROMPT_FILTER_CHUNK = { choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: PROMPT_FILTER_RESULTS };

// ---------------------------------------------------------------------------------------------
// Failures

function openAIError(message: string, type: string | null, param: string | null, code: string | null): object {
  return { error: { message, type, param, code } };
}

/** Azure's own errors (auth, quota, deployments) carry only `code` and `message`. */
function azureError(code: string, message: string): object {
  return { error: { code, message } };
}

function openAIFailure(x: MockExchange, failure: Failure): HttpFailure {
  const azure = x.call.api === 'azure';
  const model = x.call.model ?? '';
  const seconds = failure.retryAfterSeconds;
  switch (failure.name) {
    case 'error-500':
      return failed(500, openAIError('The server had an error while processing your request. Sorry about that!', 'server_error', null, null));
    case 'error-503':
    case 'overloaded':
      return failed(503, openAIError('The engine is currently overloaded, please try again later.', 'server_error', null, null));
    case 'rate-limit':
      return failed(429, azure ? azureRateLimit(x, seconds) : openAIRateLimit(model, seconds), { 'retry-after': String(seconds) });
    case 'bad-request':
      return failed(
        400,
        openAIError(
          "Invalid value for 'temperature': expected a decimal between 0 and 2, but got 3 instead.",
          'invalid_request_error',
          'temperature',
          'decimal_above_max_value',
        ),
      );
    case 'auth':
      return failed(401, azure ? azureError('401', AZURE_AUTH_MESSAGE) : openAIError(OPENAI_AUTH_MESSAGE, 'invalid_request_error', null, 'invalid_api_key'));
    case 'not-found':
      return failed(
        404,
        azure
          ? azureError('DeploymentNotFound', AZURE_DEPLOYMENT_NOT_FOUND_MESSAGE)
          : openAIError(`The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', null, 'model_not_found'),
      );
    case 'context-window':
      return failed(400, openAIError(CONTEXT_WINDOW_MESSAGE, 'invalid_request_error', 'messages', 'context_length_exceeded'));
    case 'content-policy':
      return azure ? azureContentFilter() : failed(400, openAIError(CONTENT_POLICY_MESSAGE, 'invalid_request_error', null, 'content_policy_violation'));
    case 'content-policy-azure':
      return azureContentFilter();
    case 'content-policy-dashscope':
      return failed(400, {
        error: { code: 'data_inspection_failed', param: null, message: 'Input data may contain inappropriate content.', type: 'data_inspection_failed' },
        id: completionId(x),
        request_id: `mock-request-${x.call.seq}`,
      });
  }
}

function failed(status: number, body: object, headers: Record<string, string> = {}): HttpFailure {
  return { status, body, headers };
}

const OPENAI_AUTH_MESSAGE =
  'Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.';
const AZURE_AUTH_MESSAGE =
  'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.';
const AZURE_DEPLOYMENT_NOT_FOUND_MESSAGE =
  'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.';
const CONTEXT_WINDOW_MESSAGE =
  "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.";
const CONTENT_POLICY_MESSAGE =
  'Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.';
const AZURE_CONTENT_FILTER_MESSAGE =
  "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766";

function openAIRateLimit(model: string, seconds: number): object {
  return openAIError(
    `Rate limit reached for ${model} in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${seconds}s. Visit https://platform.openai.com/account/rate-limits to learn more.`,
    'requests',
    null,
    'rate_limit_exceeded',
  );
}

function azureRateLimit(x: MockExchange, seconds: number): object {
  return azureError(
    '429',
    `Requests to the ChatCompletions_Create Operation under Azure OpenAI API version ${x.call.apiVersion ?? ''} have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after ${seconds} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.`,
  );
}

function azureContentFilter(): HttpFailure {
  return failed(400, {
    error: {
      message: AZURE_CONTENT_FILTER_MESSAGE,
      type: null,
      param: 'prompt',
      code: 'content_filter',
      status: 400,
      innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { ...OUTPUT_FILTER_RESULTS, jailbreak: { filtered: false, detected: false } } },
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Models and embeddings (for pass-through tests)

/** The scenario names that need no argument, so `GET /v1/models` doubles as the list of demos. */
const LISTED_MODELS = ['normal', 'echo', 'long', 'tools', 'slow', ...MOCK_FAILURE_NAMES, ...MOCK_PATHOLOGIES];

function modelList(x: MockExchange): object {
  return { object: 'list', data: LISTED_MODELS.map((id) => ({ id, object: 'model', created: 1700000000, owned_by: x.settings.name })) };
}

function respondEmbeddings(x: MockExchange): void {
  const { scenario } = x.resolved;
  if (scenario.kind === 'failure') return sendFailure(x, openAIDialect, scenario.failure);
  if (scenario.kind === 'pathology' && scenario.pathology === 'hang') return;
  x.later(scenario.kind === 'answer' ? scenario.headersDelayMs : 0, () => x.sendJson(200, embeddingsBody(x)));
}

function embeddingsBody(x: MockExchange): object {
  const body = isRecord(x.request.body) ? x.request.body : {};
  const inputs = stringList(body.input);
  const dimensions = positiveInteger(body.dimensions) ?? 8;
  const tokens = inputs.reduce((sum, input) => sum + estimateTokens(input), 0);
  return {
    object: 'list',
    data: inputs.map((input, index) => ({ object: 'embedding', index, embedding: embeddingOf(input, dimensions) })),
    model: x.call.model ?? '',
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

/** A vector seeded by the text's FNV-1a hash: the same input always embeds the same way. */
function embeddingOf(text: string, dimensions: number): number[] {
  let state = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) state = Math.imul(state ^ text.charCodeAt(i), 0x01000193) >>> 0;
  const vector: number[] = [];
  for (let i = 0; i < dimensions; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    vector.push(Math.round((state / 0xffffffff) * 2e6 - 1e6) / 1e6);
  }
  return vector;
}

// ---------------------------------------------------------------------------------------------
// Small readers

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function bearerToken(authorization: string | undefined): string | undefined {
  return authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : undefined;
}

/** A malformed %-escape names no deployment we know; it must not throw inside the request handler. */
function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
