import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  GatewayError,
  GuardrailUnavailableError,
  GuardrailViolationError,
  InternalError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  TimeoutError,
  UpstreamError,
  sanitizeMessage,
  toGatewayError,
} from '../lib/index.js';

describe('error taxonomy', () => {
  const table: [GatewayError, number, string, boolean][] = [
    [new BadRequestError('x'), 400, 'invalid_request_error', false],
    [new AuthenticationError('x'), 401, 'authentication_error', false],
    [new PermissionDeniedError('x'), 403, 'permission_error', false],
    [new NotFoundError('x'), 404, 'not_found_error', false],
    [new ContextWindowExceededError('x'), 400, 'context_window_exceeded', false],
    [new ContentPolicyViolationError('x'), 400, 'content_policy_violation', false],
    [new GuardrailViolationError(), 400, 'guardrail_violation', false],
    [new GuardrailUnavailableError('x'), 503, 'guardrail_unavailable', false],
    [new RateLimitError('x'), 429, 'rate_limit_exceeded', true],
    [new TimeoutError('x'), 504, 'timeout', true],
    [new UpstreamError('x'), 502, 'upstream_error', true],
    [new UpstreamError('x', { upstreamStatus: 503 }), 503, 'upstream_error', true],
    [new ConnectionError('x'), 502, 'connection_error', true],
    [new InternalError(), 500, 'internal_error', false],
  ];

  it.each(table)('%p has its status, type and retryability', (error, status, type, retryable) => {
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toBeInstanceOf(Error);
    expect([error.status, error.type, error.retryable]).toEqual([status, type, retryable]);
  });

  it('serializes the default form with exactly message, numeric code and type, in that order', () => {
    const body = new GuardrailViolationError().toBody();
    expect(JSON.stringify(body)).toBe(
      '{"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}',
    );
  });

  it("serializes OpenAI's typed form with a string code and param", () => {
    expect(new GuardrailViolationError().toBody('openai')).toEqual({
      error: { message: 'Violated guardrail policy', type: 'guardrail_violation', param: null, code: '400' },
    });
    expect(new BadRequestError('bad', { param: 'messages[0].role' }).toBody('openai').error.param).toBe('messages[0].role');
  });

  it('keeps extra fields inside error, never beside it', () => {
    const body = new RateLimitError('slow down').toBody('gateway', { attempts: [] }) as unknown as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['error']);
    expect(body['error']).toEqual({ message: 'slow down', code: 429, type: 'rate_limit_exceeded', attempts: [] });
  });

  it('never serializes the cause or the stack', () => {
    const cause = new Error('connect ECONNREFUSED 10.1.2.3:443 with key sk-abcdefghijklmnop');
    const text = JSON.stringify(new UpstreamError('upstream failed', { cause }).toBody());
    expect(text).not.toContain('ECONNREFUSED');
    expect(text).not.toContain('at ');
  });
});

describe('sanitizeMessage', () => {
  it.each([
    ['Incorrect API key provided: sk-proj-abcdefghijklmnop1234.', 'sk-proj'],
    ['Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def failed', 'eyJhbGci'],
    ['request to https://internal.example:8443/v1/chat failed', 'internal.example'],
    ['AccessDenied for AKIAIOSFODNN7EXAMPLE', 'AKIAIOSFODNN7EXAMPLE'],
    ['bad api_key=abc123secret in query', 'abc123secret'],
  ])('removes secrets and URLs from %p', (message, secret) => {
    const clean = sanitizeMessage(message);
    expect(clean).not.toContain(secret);
    expect(clean.length).toBeGreaterThan(0);
  });

  it('leaves ordinary messages alone', () => {
    expect(sanitizeMessage("Invalid request: 'messages[0].role' is required.")).toBe(
      "Invalid request: 'messages[0].role' is required.",
    );
  });
});

describe('toGatewayError', () => {
  it('passes classified errors through', () => {
    const error = new RateLimitError('x');
    expect(toGatewayError(error)).toBe(error);
  });

  it('hides unknown errors behind a generic internal error', () => {
    const error = toGatewayError(new TypeError("Cannot read properties of undefined (reading 'choices')"));
    expect(error).toBeInstanceOf(InternalError);
    expect(error.message).not.toContain('choices');
    expect(error.cause).toBeInstanceOf(TypeError);
    expect(toGatewayError('a string')).toBeInstanceOf(InternalError);
    expect(toGatewayError(null)).toBeInstanceOf(InternalError);
  });

  it("maps body-parser's errors to their real status (400, 413 too large), naming the body", () => {
    const tooLarge = toGatewayError({ type: 'entity.too.large', status: 413, limit: 102400 });
    expect([tooLarge.status, tooLarge.type, tooLarge.param, tooLarge.message]).toEqual([413, 'invalid_request_error', 'body', 'Request body: larger than the 100kb limit.']);
    const parse = toGatewayError(Object.assign(new SyntaxError('Unexpected token'), { type: 'entity.parse.failed', status: 400 }));
    expect([parse.status, parse.param]).toEqual([400, 'body']);
  });
});
