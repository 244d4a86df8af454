import {
  AuthenticationError,
  BadRequestError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  GatewayError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  TimeoutError,
  UpstreamError,
} from '../lib/errors.js';
import {
  AUTHENTICATION_SIGNALS,
  BAD_REQUEST_SIGNALS,
  CONTENT_POLICY_SIGNALS,
  CONTEXT_WINDOW_SIGNALS,
  NOT_FOUND_SIGNALS,
  RATE_LIMIT_SIGNALS,
  SERVER_ERROR_SIGNALS,
  STATUS_OF_CODE,
  TIMEOUT_SIGNALS,
  UNAVAILABLE_SIGNALS,
  classifyUpstreamError,
  retryAfterMs,
  type ErrorSignals,
  type UpstreamFailure,
} from '../lib/providers/classify.js';

type ErrorClass = abstract new (...args: never[]) => GatewayError;

interface Expected {
  cls: ErrorClass;
  status: number;
}

function classify(failure: UpstreamFailure): GatewayError {
  return classifyUpstreamError(failure);
}

function expectClass(error: GatewayError, expected: Expected): void {
  expect(error).toBeInstanceOf(expected.cls);
  expect(error.status).toBe(expected.status);
}

/** An OpenAI-shaped body around a message (and optionally a code). */
function openAIBody(message: string, code: string | null = null, type: string | null = null): unknown {
  return { error: { message, type, param: null, code } };
}

const BAD_REQUEST: Expected = { cls: BadRequestError, status: 400 };
const CONTEXT_WINDOW: Expected = { cls: ContextWindowExceededError, status: 400 };
const CONTENT_POLICY: Expected = { cls: ContentPolicyViolationError, status: 400 };
const RATE_LIMIT: Expected = { cls: RateLimitError, status: 429 };
const NOT_FOUND: Expected = { cls: NotFoundError, status: 404 };
const AUTH: Expected = { cls: AuthenticationError, status: 401 };
const PERMISSION: Expected = { cls: PermissionDeniedError, status: 403 };
const TIMEOUT: Expected = { cls: TimeoutError, status: 504 };
const UPSTREAM_502: Expected = { cls: UpstreamError, status: 502 };
const UPSTREAM_503: Expected = { cls: UpstreamError, status: 503 };

/** Each table, the class it stands for, and the HTTP statuses it must win over (undefined = in band). */
const TABLES: [string, ErrorSignals, Expected, (number | undefined)[]][] = [
  ['TIMEOUT_SIGNALS', TIMEOUT_SIGNALS, TIMEOUT, [undefined, 400, 500]],
  ['CONTEXT_WINDOW_SIGNALS', CONTEXT_WINDOW_SIGNALS, CONTEXT_WINDOW, [undefined, 400, 413]],
  ['CONTENT_POLICY_SIGNALS', CONTENT_POLICY_SIGNALS, CONTENT_POLICY, [undefined, 400, 403]],
  ['RATE_LIMIT_SIGNALS', RATE_LIMIT_SIGNALS, RATE_LIMIT, [undefined, 400, 429]],
  ['NOT_FOUND_SIGNALS', NOT_FOUND_SIGNALS, NOT_FOUND, [undefined, 400, 404]],
  ['AUTHENTICATION_SIGNALS', AUTHENTICATION_SIGNALS, AUTH, [undefined, 400, 401]],
  ['BAD_REQUEST_SIGNALS', BAD_REQUEST_SIGNALS, BAD_REQUEST, [undefined, 403]],
  ['UNAVAILABLE_SIGNALS', UNAVAILABLE_SIGNALS, UPSTREAM_503, [undefined, 400, 500]],
  ['SERVER_ERROR_SIGNALS', SERVER_ERROR_SIGNALS, UPSTREAM_502, [undefined, 400]],
];

describe('signal tables', () => {
  for (const [name, signals, expected, statuses] of TABLES) {
    describe(name, () => {
      it('is not empty where the reference has rows', () => {
        expect(signals.texts.length + signals.codes.length).toBeGreaterThan(0);
      });

      for (const text of signals.texts) {
        for (const status of statuses) {
          it(`"${text}" (status ${String(status)}) → ${expected.cls.name}`, () => {
            const body = openAIBody(`Upstream says: ${text} (details follow)`);
            expectClass(classify({ status, body }), expected);
          });
        }
        it(`"${text}" matches case-insensitively and as a plain-text body`, () => {
          expectClass(classify({ status: statuses[1], body: `ERROR: ${text.toUpperCase()}` }), expected);
        });
      }

      for (const code of signals.codes) {
        for (const status of statuses) {
          it(`code ${code} (status ${String(status)}) → ${expected.cls.name}`, () => {
            expectClass(classify({ status, body: openAIBody('Something went wrong.', code) }), expected);
          });
        }
        it(`type ${code} → ${expected.cls.name}`, () => {
          expectClass(classify({ body: { error: { message: 'Something went wrong.', type: code } } }), expected);
        });
      }
    });
  }
});

describe('status without any signal', () => {
  const cases: [number | undefined, Expected][] = [
    [400, BAD_REQUEST],
    [401, AUTH],
    [403, PERMISSION],
    [404, NOT_FOUND],
    [408, TIMEOUT],
    [409, BAD_REQUEST],
    [413, BAD_REQUEST],
    [418, BAD_REQUEST],
    [422, BAD_REQUEST],
    [429, RATE_LIMIT],
    [500, UPSTREAM_502],
    [502, UPSTREAM_502],
    [503, UPSTREAM_503],
    [504, TIMEOUT],
    [520, UPSTREAM_502],
    [529, UPSTREAM_503],
    // In band, nothing identifying: the upstream failed this request.
    [undefined, UPSTREAM_502],
    [200, UPSTREAM_502],
  ];
  for (const [status, expected] of cases) {
    it(`${String(status)} → ${expected.cls.name} ${expected.status}`, () => {
      const error = classify({ status, body: openAIBody('Something went wrong.') });
      expectClass(error, expected);
      expect(error.upstreamStatus).toBe(status !== undefined && status >= 300 ? status : undefined);
    });
  }
});

describe('in-band slugs classify like their HTTP status (stream/HTTP parity)', () => {
  for (const [slug, status] of Object.entries(STATUS_OF_CODE)) {
    it(`${slug} ≡ HTTP ${status}`, () => {
      const inBand = classify({ body: { error: { message: 'Something went wrong.', type: slug } } });
      const http = classify({ status, body: openAIBody('Something went wrong.') });
      expect(inBand.constructor).toBe(http.constructor);
      expect(inBand.status).toBe(http.status);
      expect(inBand.type).toBe(http.type);
    });
  }

  it('takes a numeric code (vLLM/SGLang, Google) or a 3-digit string code (Azure) as the status', () => {
    expectClass(classify({ body: { error: { object: 'error', message: 'bad', type: 'BadRequestError', code: 400 } } }), BAD_REQUEST);
    expectClass(classify({ body: { error: { code: 503, message: 'try later', status: 'UNAVAILABLE' } } }), UPSTREAM_503);
    expectClass(classify({ body: { error: { code: '401', message: 'Access denied.' } } }), AUTH);
    expectClass(classify({ body: { error: { code: 'x', message: 'Something.', status: 404 } } }), NOT_FOUND);
  });
});

describe('provider bodies', () => {
  describe('OpenAI', () => {
    it('context window, keeping the param', () => {
      const error = classify({
        status: 400,
        body: openAIBody(
          "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.",
          'context_length_exceeded',
          'invalid_request_error',
        ),
      });
      expectClass(error, CONTEXT_WINDOW);
      expect(error.type).toBe('context_window_exceeded');
    });

    it('content policy by code, by the usage-policy text and by the safety-system text', () => {
      expectClass(classify({ status: 400, body: openAIBody('Nope.', 'content_policy_violation', 'invalid_request_error') }), CONTENT_POLICY);
      const usagePolicy = 'Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again with a different prompt.';
      expectClass(classify({ status: 400, body: openAIBody(usagePolicy, 'invalid_prompt', 'invalid_request_error') }), CONTENT_POLICY);
      const safety = 'Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed.';
      expectClass(classify({ status: 400, body: openAIBody(safety, null, 'invalid_request_error') }), CONTENT_POLICY);
    });

    it('authentication (invalid_api_key under invalid_request_error), without the URL in the message', () => {
      const message = 'Incorrect API key provided: sk-abc12345*********wxyz. You can find your API key at https://platform.openai.com/account/api-keys.';
      for (const status of [401, undefined]) {
        const error = classify({ status, body: openAIBody(message, 'invalid_api_key', 'invalid_request_error') });
        expectClass(error, AUTH);
        expect(error.message).not.toMatch(/https?:\/\//);
        expect(error.message).toContain('Incorrect API key provided');
      }
    });

    it('model_not_found, whatever status it comes with', () => {
      const body = openAIBody('The model `gpt-9` does not exist or you do not have access to it.', 'model_not_found', 'invalid_request_error');
      expectClass(classify({ status: 404, body }), NOT_FOUND);
      expectClass(classify({ status: 400, body }), NOT_FOUND);
      expectClass(classify({ body }), NOT_FOUND);
    });

    it('rate limits: status, text, quota code; Retry-After kept', () => {
      const rpm = openAIBody(
        'Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.',
        'rate_limit_exceeded',
        'requests',
      );
      const error = classify({ status: 429, body: rpm, headers: { 'retry-after': '7' } });
      expectClass(error, RATE_LIMIT);
      expect(error.retryAfterMs).toBe(7000);
      // In band there is no header: the message says how long.
      expect(classify({ body: rpm }).retryAfterMs).toBe(20_000);
      expectClass(classify({ status: 429, body: openAIBody('You exceeded your current quota.', 'insufficient_quota', 'insufficient_quota') }), RATE_LIMIT);
      expectClass(classify({ body: openAIBody('You exceeded your current quota.', 'insufficient_quota') }), RATE_LIMIT);
    });

    it('"Request too large" (TPM overflow) is a rate limit, as LiteLLM maps it', () => {
      const body = openAIBody('Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 50000.', null, 'tokens');
      expectClass(classify({ status: 429, body }), RATE_LIMIT);
      expectClass(classify({ body }), RATE_LIMIT);
    });

    it('server errors: 500 → 502, an overloaded engine → 503 in both forms', () => {
      const serverError = openAIBody('The server had an error while processing your request. Sorry about that!', null, 'server_error');
      expectClass(classify({ status: 500, body: serverError }), UPSTREAM_502);
      expectClass(classify({ body: serverError }), UPSTREAM_502);
      const overloaded = openAIBody('The engine is currently overloaded, please try again later.', null, 'server_error');
      expectClass(classify({ status: 503, body: overloaded }), UPSTREAM_503);
      expectClass(classify({ body: overloaded }), UPSTREAM_503);
    });

    it('"The server had an error processing your request." under a 4xx is still a server error', () => {
      expectClass(classify({ status: 400, body: openAIBody('The server had an error processing your request.') }), UPSTREAM_502);
    });

    it('a "429" inside a message is not a rate limit', () => {
      expectClass(classify({ status: 400, body: openAIBody("Invalid 'seed': 429 is out of range.", null, 'invalid_request_error') }), BAD_REQUEST);
    });

    it('bad request keeps the upstream param', () => {
      const body = {
        error: { message: "Invalid value for 'temperature'.", type: 'invalid_request_error', param: 'temperature', code: 'decimal_above_max_value' },
      };
      const error = classify({ status: 400, body });
      expectClass(error, BAD_REQUEST);
      expect(error.param).toBe('temperature');
    });
  });

  describe('Azure', () => {
    const contentFilter = {
      error: {
        message:
          "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        type: null,
        param: 'prompt',
        code: 'content_filter',
        status: 400,
        innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { violence: { filtered: true, severity: 'medium' } } },
      },
    };

    it('content filter: HTTP and in band, without the docs URL', () => {
      for (const status of [400, undefined]) {
        const error = classify({ status, body: contentFilter });
        expectClass(error, CONTENT_POLICY);
        expect(error.message).not.toMatch(/https?:\/\//);
      }
    });

    it('ResponsibleAIPolicyViolation alone (innererror) and content_filter_policy are content policy', () => {
      expectClass(classify({ status: 400, body: { error: { code: 'BadRequest', message: 'Filtered.', innererror: { code: 'ResponsibleAIPolicyViolation' } } } }), CONTENT_POLICY);
      expectClass(classify({ status: 400, body: { error: { code: 'content_filter_policy', message: 'Filtered.' } } }), CONTENT_POLICY);
      expectClass(classify({ status: 400, body: openAIBody('Your task failed as a result of our safety system.') }), CONTENT_POLICY);
    });

    it('DeploymentNotFound → 404; Azure 401 and 429 carry only code and message', () => {
      const notFound = { error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist.' } };
      expectClass(classify({ status: 404, body: notFound }), NOT_FOUND);
      expectClass(classify({ body: notFound }), NOT_FOUND);
      const auth = { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint.' } };
      expectClass(classify({ status: 401, body: auth }), AUTH);
      expectClass(classify({ body: auth }), AUTH);
      const rate = {
        error: { code: '429', message: 'Requests to the ChatCompletions_Create Operation have exceeded call rate limit. Please retry after 7 seconds.' },
      };
      expect(classify({ status: 429, body: rate }).retryAfterMs).toBe(7000);
      const inBand = classify({ body: rate });
      expectClass(inBand, RATE_LIMIT);
      expect(inBand.retryAfterMs).toBe(7000);
    });

    it('"Internal server error" → 502', () => {
      expectClass(classify({ body: { error: { code: 'InternalServerError', message: 'Internal server error' } } }), UPSTREAM_502);
    });
  });

  describe('DashScope (LiteLLM maps these to a plain 400; we must not)', () => {
    it('compatible mode data_inspection_failed, over HTTP and in band', () => {
      const body = {
        error: { code: 'data_inspection_failed', param: null, message: 'Input data may contain inappropriate content.', type: 'data_inspection_failed' },
        id: 'chatcmpl-1',
        request_id: 'r-1',
      };
      expectClass(classify({ status: 400, body }), CONTENT_POLICY);
      expectClass(classify({ body }), CONTENT_POLICY);
    });

    it('native DataInspectionFailed, and each documented message on its own', () => {
      expectClass(classify({ status: 400, body: { code: 'DataInspectionFailed', message: 'Output data may contain inappropriate content.', request_id: 'r' } }), CONTENT_POLICY);
      for (const message of [
        'Input data may contain inappropriate content.',
        'Output data may contain inappropriate content.',
        'Input or output data may contain inappropriate content.',
      ]) {
        expectClass(classify({ status: 400, body: openAIBody(message, 'invalid_parameter_error', 'invalid_request_error') }), CONTENT_POLICY);
      }
    });

    it('the input-length error is a context-window error', () => {
      const body = openAIBody('<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 30720]', 'invalid_parameter_error', 'invalid_request_error');
      expectClass(classify({ status: 400, body }), CONTEXT_WINDOW);
    });
  });

  describe('vLLM / SGLang / Mistral / openai-like', () => {
    it('vLLM bare error object with numeric code', () => {
      const body = {
        object: 'error',
        message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).",
        type: 'BadRequestError',
        param: null,
        code: 400,
      };
      expectClass(classify({ status: 400, body }), CONTEXT_WINDOW);
      expectClass(classify({ body: { error: body } }), CONTEXT_WINDOW);
      expectClass(classify({ body: { error: { ...body, message: 'temperature must be non-negative' } } }), BAD_REQUEST);
    });

    it("SGLang: longer than the model's context length", () => {
      const body = { object: 'error', message: "Input length (5000 tokens) is longer than the model's context length (4096 tokens).", type: 'BadRequestError', code: 400 };
      expectClass(classify({ status: 400, body }), CONTEXT_WINDOW);
    });

    it('Mistral: capacity is a rate limit, "too large for model" a context window', () => {
      expectClass(classify({ status: 429, body: { object: 'error', message: 'Service tier capacity exceeded for this model.', type: 'service_tier_capacity_exceeded' } }), RATE_LIMIT);
      expectClass(classify({ body: { object: 'error', message: 'Service tier capacity exceeded for this model.' } }), RATE_LIMIT);
      const tooLarge = { object: 'error', message: 'Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length', type: 'invalid_request_invalid_args', code: null };
      expectClass(classify({ status: 400, body: tooLarge }), CONTEXT_WINDOW);
    });

    it("token_quota_reached and model's maximum context limit", () => {
      expectClass(classify({ status: 400, body: openAIBody('Quota used up.', 'token_quota_reached') }), RATE_LIMIT);
      expectClass(classify({ status: 400, body: openAIBody("This exceeds the model's maximum context limit of 8k.") }), CONTEXT_WINDOW);
    });

    it('TGI-style string error with error_type', () => {
      const body = { error: 'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 500 `max_new_tokens`', error_type: 'validation' };
      expectClass(classify({ status: 422, body }), CONTEXT_WINDOW);
    });
  });

  describe('Anthropic', () => {
    const anthropic = (type: string, message: string): unknown => ({ type: 'error', error: { type, message } });
    const cases: [string, number, unknown, Expected][] = [
      ['invalid_request_error', 400, anthropic('invalid_request_error', 'messages: roles must alternate'), BAD_REQUEST],
      ['authentication_error', 401, anthropic('authentication_error', 'invalid x-api-key'), AUTH],
      ['permission_error', 403, anthropic('permission_error', 'Your API key does not have permission to use the specified resource.'), PERMISSION],
      ['not_found_error', 404, anthropic('not_found_error', 'model: claude-9'), NOT_FOUND],
      ['request_too_large', 413, anthropic('request_too_large', 'Request exceeds the maximum allowed number of bytes.'), BAD_REQUEST],
      ['rate_limit_error', 429, anthropic('rate_limit_error', 'This request would exceed the rate limit for your organization.'), RATE_LIMIT],
      ['api_error', 500, anthropic('api_error', 'Internal server error'), UPSTREAM_502],
      ['api_error 503', 503, anthropic('api_error', 'Service unavailable'), UPSTREAM_503],
      ['overloaded_error', 529, anthropic('overloaded_error', 'Overloaded'), UPSTREAM_503],
      ['prompt is too long', 400, anthropic('invalid_request_error', 'prompt is too long: 208310 tokens > 200000 maximum'), CONTEXT_WINDOW],
      ['content filtering', 400, anthropic('invalid_request_error', 'Output blocked by content filtering policy'), CONTENT_POLICY],
      ['Invalid API Key', 400, anthropic('invalid_request_error', 'Invalid API Key'), AUTH],
    ];
    for (const [name, status, body, expected] of cases) {
      it(`${name}: HTTP ${status} and in band agree → ${expected.cls.name} ${expected.status}`, () => {
        const http = classify({ status, body });
        const inBand = classify({ body });
        expectClass(http, expected);
        expectClass(inBand, expected);
        expect(inBand.type).toBe(http.type);
      });
    }

    it('529 keeps the upstream status', () => {
      expect(classify({ status: 529, body: anthropic('overloaded_error', 'Overloaded') }).upstreamStatus).toBe(529);
    });
  });

  describe('Vertex / Gemini text forms', () => {
    it('Google JSON errors (also inside an array)', () => {
      const quota = [{ error: { code: 429, message: 'Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute.', status: 'RESOURCE_EXHAUSTED' } }];
      expectClass(classify({ status: 429, body: quota }), RATE_LIMIT);
      expectClass(classify({ body: quota }), RATE_LIMIT);
      const badKey = { error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT' } };
      expectClass(classify({ status: 400, body: badKey }), AUTH);
      const denied = { error: { code: 403, message: 'Permission denied on resource project x.', status: 'PERMISSION_DENIED' } };
      expectClass(classify({ status: 403, body: denied }), PERMISSION);
      expectClass(classify({ body: denied }), PERMISSION);
    });

    const texts: [string, Expected][] = [
      ['400 Request payload size exceeds the limit: 4194304 bytes.', CONTEXT_WINDOW],
      ['The response was blocked.', CONTENT_POLICY],
      ['Output blocked by content filtering policy', CONTENT_POLICY],
      ['429 Quota exceeded for quota metric', RATE_LIMIT],
      ['429 Unable to submit request because the service is temporarily out of capacity. Try again later.', RATE_LIMIT],
      ['504 Deadline expired before operation could complete.', TIMEOUT],
      ['504 Deadline Exceeded', TIMEOUT],
      ['The model is overloaded. Please try again later.', UPSTREAM_503],
      ['500 Internal Server Error', UPSTREAM_502],
      ['None Unknown Error.', UPSTREAM_502],
      ['Content has no parts.', UPSTREAM_502],
      ['API key not valid. Please pass a valid API key.', AUTH],
    ];
    for (const [text, expected] of texts) {
      it(`"${text}" → ${expected.cls.name} ${expected.status}`, () => {
        expectClass(classify({ status: 400, body: text }), expected);
        expectClass(classify({ body: { error: { message: text } } }), expected);
      });
    }

    it('project set-up problems are final bad requests even as 403', () => {
      const text = 'Vertex AI API has not been used in project 1234 before or it is disabled.';
      expectClass(classify({ status: 403, body: { error: { code: 403, message: text, status: 'PERMISSION_DENIED' } } }), BAD_REQUEST);
      expectClass(classify({ status: 404, body: 'Unable to find your project.' }), BAD_REQUEST);
    });
  });

  describe('anything else', () => {
    it('timeout texts win over the status', () => {
      expectClass(classify({ status: 500, body: 'Request timed out.' }), TIMEOUT);
      expectClass(classify({ status: 400, body: openAIBody('A timeout occurred while waiting for the model.') }), TIMEOUT);
    });

    it('"too many tokens" is not a context-window text (it is Bedrock throttling)', () => {
      const body = openAIBody('Too many tokens, please wait before trying again.');
      expect(classify({ body })).not.toBeInstanceOf(ContextWindowExceededError);
      expectClass(classify({ status: 429, body }), RATE_LIMIT);
    });

    it('HTML and empty bodies keep the status, with a default message', () => {
      expectClass(classify({ status: 502, body: '<html><body>Bad Gateway</body></html>' }), UPSTREAM_502);
      const empty = classify({ status: 500, body: '' });
      expectClass(empty, UPSTREAM_502);
      expect(empty.message).toBe('The upstream answered with HTTP 500.');
      expect(classify({ body: {} }).message).toBe('The upstream reported an error.');
    });

    it('never leaks keys or URLs in the message', () => {
      const error = classify({
        status: 401,
        body: openAIBody('Key sk-live-abcdefghijklmnop rejected by https://internal.example.com/v1/chat?api-key=secret123'),
      });
      expect(error.message).not.toContain('sk-live-abcdefghijklmnop');
      expect(error.message).not.toContain('internal.example.com');
      expect(error.message).not.toContain('secret123');
    });

    it('cuts very long messages (an HTML error page) to 1,000 characters', () => {
      const error = classify({ status: 502, body: `<html>${'x'.repeat(5000)}</html>` });
      expect(error.message).toHaveLength(1001);
      expect(error.message.endsWith('…')).toBe(true);
    });

    it('FastAPI-style {detail}', () => {
      expectClass(classify({ status: 400, body: { detail: 'prompt is too long for this model' } }), CONTEXT_WINDOW);
    });
  });
});

describe('retryAfterMs', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');

  it('prefers retry-after-ms, then Retry-After seconds, then an HTTP date, then the message', () => {
    expect(retryAfterMs({ 'retry-after-ms': '1500', 'retry-after': '9' }, 'try again in 3s', now)).toBe(1500);
    expect(retryAfterMs({ 'retry-after': '9' }, 'try again in 3s', now)).toBe(9000);
    expect(retryAfterMs({ 'retry-after': '0.5' }, '', now)).toBe(500);
    expect(retryAfterMs({ 'retry-after': 'Wed, 01 Jan 2025 00:00:30 GMT' }, '', now)).toBe(30_000);
    expect(retryAfterMs({ 'retry-after': 'Tue, 31 Dec 2024 00:00:00 GMT' }, '', now)).toBe(0);
    expect(retryAfterMs({ 'retry-after': ['4', '5'] }, '', now)).toBe(4000);
  });

  it('reads OpenAI and Azure messages', () => {
    expect(retryAfterMs(undefined, 'Please try again in 1.898s. Visit …', now)).toBe(1898);
    expect(retryAfterMs(undefined, 'Please try again in 20ms.', now)).toBe(20);
    expect(retryAfterMs(undefined, 'Please try again in 6m0s.', now)).toBe(360_000);
    expect(retryAfterMs(undefined, 'Please retry after 3 seconds.', now)).toBe(3000);
  });

  it('is undefined when nothing says', () => {
    expect(retryAfterMs({ 'retry-after': 'soon' }, 'try again later', now)).toBeUndefined();
    expect(retryAfterMs({}, '', now)).toBeUndefined();
  });
});
