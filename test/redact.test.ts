/** The one redactor: by value, by shape, and readable afterwards. */
import { MIN_SECRET_LENGTH, redact, redactFields, registerSecret, registerUrlCredentials } from '../lib/redact.js';
import { silentLogger, withRedaction, type Logger } from '../lib/logger.js';

registerSecret('plainSecretToken42xyz');
registerSecret('0123456789abcdef0123456789abcdef');
registerSecret('short'); // below MIN_SECRET_LENGTH: not a secret, never replaced
registerUrlCredentials('redis://default:s3cretRedisPw@127.0.0.1:6379/0');

describe('redact', () => {
  it.each([
    ['a registered key', 'invalid token plainSecretToken42xyz for deployment', 'invalid token [redacted] for deployment'],
    ['a 32-hex Azure key', 'key 0123456789abcdef0123456789abcdef rejected', 'key [redacted] rejected'],
    ['a Redis URL password, alone', 'NOAUTH s3cretRedisPw wrong', 'NOAUTH [redacted] wrong'],
    ['a DSN with a password', 'db postgres://admin:hunter2@db.internal:5432/app failed', 'db [url] failed'],
    ['an IPv4 address with a port', 'connect ECONNREFUSED 127.0.0.1:1', 'connect ECONNREFUSED [address]'],
    ['a private address', 'upstream 10.0.3.4:8000 timed out', 'upstream [address] timed out'],
    ['host:port pairs and IPv6', 'see db.internal:5432, localhost:8080, [::1]:9000', 'see [address], [address], [address]'],
    ['stack frames', 'Error: boom\n    at Object.<anonymous> (/srv/upstream/app.js:12:34)\n    at node:internal/main:1:2', 'Error: boom'],
    ['a bearer token', 'got Authorization: Bearer abcdefgh12345678', 'got Authorization: Bearer [redacted]'],
    ['key=value pairs', 'api_key=zzzzzzzz1 and password: hunter22', 'api_key=[redacted] and password: [redacted]'],
    ['sk- keys it never held', 'sk-proj-abcdefghijk is wrong', '[redacted] is wrong'],
  ])('%s', (_name, input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it('leaves ordinary text alone (times, versions, short values, numbers)', () => {
    const text = 'The model gpt-4o-mini is at capacity; retry at 10:30:00 in 3.5 seconds (short, v1.2.3).';
    expect(redact(text)).toBe(text);
    expect(MIN_SECRET_LENGTH).toBeGreaterThan('short'.length);
  });

  it('redacts log fields deeply, errors included, keeping only the frames of a stack', () => {
    const err = new Error('failed with plainSecretToken42xyz at 10.0.3.4:80');
    const fields = redactFields({ a: { b: ['x plainSecretToken42xyz'] }, err }) as { a: { b: string[] }; err: { message: string; stack: string } };
    expect(fields.a.b[0]).toBe('x [redacted]');
    expect(fields.err.message).toBe('failed with [redacted] at [address]');
    expect(fields.err.stack).toMatch(/\n\s+at /);
    expect(fields.err.stack).not.toContain('plainSecretToken42xyz');
  });

  it('withRedaction wraps a logger once, and costs nothing on levels that log nothing', () => {
    const seen: unknown[] = [];
    const noop = silentLogger.debug; // the library's own no-op levels (consoleLogger's debug and info)
    const base: Logger = { debug: noop, info: noop, warn: (obj, msg) => seen.push([obj, msg]), error: noop };
    const logger = withRedaction(base);
    expect(withRedaction(logger)).toBe(logger);
    expect(logger.debug).toBe(noop);
    logger.warn({ detail: 'plainSecretToken42xyz' }, 'upstream 10.0.3.4:8000 said plainSecretToken42xyz');
    expect(seen).toEqual([[{ detail: '[redacted]' }, 'upstream [address] said [redacted]']]);
  });
});
