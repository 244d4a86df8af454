/**
 * A local Bedrock Runtime `ApplyGuardrail` emulator that speaks the real wire contract
 * (`shared/reference/bedrock-applyguardrail.md`), for tests and the example server. It listens on
 * 127.0.0.1 with HTTP/1.1 and h2c on one port, so the SDK's default (HTTP/2) client, a NodeHttpHandler
 * client and curl all work against `emulator.url`.
 *
 * ```ts
 * const emulator = await startBedrockEmulator();
 * const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: emulator.url, credentials });
 * await client.send(new ApplyGuardrailCommand({ guardrailIdentifier: DEFAULT_GUARDRAIL.id, … }));
 * await emulator.close();
 * ```
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { compileGuardrail, evaluateCompiled, textUnitsOf, type CompiledGuardrail } from './bedrock-emulator/evaluate.js';
import { EMULATED_ERRORS, DEFAULT_FAULT_DELAY_MS, FaultSchedule, faultForMagicId, isErrorFault, parseFaultHeader } from './bedrock-emulator/faults.js';
import { listenDualStack, type EmulatorRequest, type EmulatorResponse } from './bedrock-emulator/listener.js';
import { validateBody, validateLabels, validationMessage } from './bedrock-emulator/validate.js';
import { DEFAULT_GUARDRAIL } from './bedrock-emulator/default-guardrail.js';
import type { EmulatedErrorName, EmulatorCall, FaultSpec, GuardrailConfig } from './bedrock-emulator/types.js';

export { DEFAULT_GUARDRAIL } from './bedrock-emulator/default-guardrail.js';
export { evaluateGuardrail, GuardrailConfigError, type EvaluateOptions } from './bedrock-emulator/evaluate.js';
export { BUILT_IN_NAMES, SUPPORTED_PII_TYPES } from './bedrock-emulator/detectors.js';
export { EMULATED_ERRORS } from './bedrock-emulator/faults.js';
export type * from './bedrock-emulator/types.js';

export interface BedrockEmulatorOptions {
  /** Port on 127.0.0.1. Default `0` (a free port; read it from `emulator.port`). */
  port?: number;
  /** Path prefix before `/guardrail/…`, e.g. `'/bedrock'`; included in `emulator.url`. Default `''`. */
  basePath?: string;
  /** Guardrails served. Default `[DEFAULT_GUARDRAIL]`. */
  guardrails?: GuardrailConfig[];
  /** Reject requests without an `AWS4-HMAC-SHA256 …` or `Bearer …` Authorization with 403 AccessDeniedException. Default `true`. */
  requireAuth?: boolean;
  /** Added before every ApplyGuardrail response, to simulate a network + service round trip. Default `0`. */
  latencyMs?: number;
  /** Larger request bodies get 400 ValidationException. Default `10 * 1024 * 1024`. */
  maxBodyBytes?: number;
  /** The call log keeps the most recent N calls. Default `1000`. */
  maxCallLog?: number;
}

export interface BedrockEmulator {
  /** `http://127.0.0.1:<port><basePath>`: pass it as the SDK client's `endpoint`. */
  readonly url: string;
  readonly port: number;
  /** ApplyGuardrail calls, oldest first (live objects: `respondedAt` / `abortedAt` are filled in later). */
  readonly calls: readonly EmulatorCall[];
  /** Calls received since start or the last `reset()` (not capped by `maxCallLog`). */
  readonly callCount: number;
  /** Calls received but neither answered nor aborted yet. */
  readonly inFlight: number;
  /**
   * Per-call abort controllers held for `close()` to abort: one per call still being handled, 0 when idle
   * (calls attach nothing to a long-lived signal, so nothing else grows with the number of calls).
   */
  readonly trackedCalls: number;
  /** Injects a fault into the next `times` calls (default: all calls until `clearFault()`); replaces any previous fault. */
  setFault(fault: FaultSpec): void;
  clearFault(): void;
  /** Adds or replaces (same id and version) a guardrail. Throws a `GuardrailConfigError` on a bad config. */
  setGuardrail(config: GuardrailConfig): void;
  /** Clears the call log, the counters and the fault. Guardrails are kept. */
  reset(): void;
  /** Resolves once `predicate(calls)` holds, checked on every call event; rejects after `timeoutMs` (default 2000). */
  waitFor(predicate: (calls: readonly EmulatorCall[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Stops listening and destroys every connection; pending delays and hangs end without a response. */
  close(): Promise<void>;
}

interface ResolvedOptions {
  port: number;
  basePath: string;
  guardrails: GuardrailConfig[];
  requireAuth: boolean;
  latencyMs: number;
  maxBodyBytes: number;
  maxCallLog: number;
}

function parseOptions(options: BedrockEmulatorOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    port: options.port ?? 0,
    basePath: (options.basePath ?? '').replace(/\/+$/, ''),
    guardrails: options.guardrails ?? [DEFAULT_GUARDRAIL],
    requireAuth: options.requireAuth ?? true,
    latencyMs: options.latencyMs ?? 0,
    maxBodyBytes: options.maxBodyBytes ?? 10 * 1024 * 1024,
    maxCallLog: options.maxCallLog ?? 1000,
  };
  const invalid = (field: string, rule: string) => new TypeError(`Bedrock emulator: options.${field} ${rule}`);
  if (!Number.isInteger(resolved.port) || resolved.port < 0 || resolved.port > 65535) throw invalid('port', 'must be an integer from 0 to 65535');
  if (resolved.basePath !== '' && !resolved.basePath.startsWith('/')) throw invalid('basePath', "must start with '/'");
  if (!(resolved.latencyMs >= 0 && Number.isFinite(resolved.latencyMs))) throw invalid('latencyMs', 'must be a number >= 0');
  if (!(Number.isInteger(resolved.maxBodyBytes) && resolved.maxBodyBytes > 0)) throw invalid('maxBodyBytes', 'must be a positive integer');
  if (!(Number.isInteger(resolved.maxCallLog) && resolved.maxCallLog > 0)) throw invalid('maxCallLog', 'must be a positive integer');
  return resolved;
}

const CORAL_NAMESPACE = 'http://internal.amazon.com/coral/com.amazon.bedrock/';

/** Answers for the magic ids (`slow:<ms>`) once their delay is over: no policies, so always `NONE`. */
const PASS_THROUGH = compileGuardrail({
  id: 'passthrough',
  version: 'DRAFT',
  blockedInputMessaging: 'Blocked.',
  blockedOutputsMessaging: 'Blocked.',
});

/** The subset of the HTTP/1.1 and HTTP/2 compat response APIs the emulator uses (both implement it). */
interface WritableResponse {
  readonly headersSent: boolean;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body: string): unknown;
}

/** Writes a complete response; `false` when the client is already gone. */
function send(res: EmulatorResponse, requestId: string, status: number, body: string, headers: Record<string, string> = {}): boolean {
  const out = res as WritableResponse;
  if (out.headersSent || res.destroyed) return false;
  out.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': requestId,
    date: new Date().toUTCString(),
    ...headers,
  });
  out.end(body);
  return true;
}

/** A service error as Bedrock sends it: the name in `x-amzn-errortype` (which the SDK maps to a class) and a JSON message. */
function sendError(res: EmulatorResponse, requestId: string, status: number, name: string, message: string, headers: Record<string, string> = {}): boolean {
  return send(res, requestId, status, JSON.stringify({ message }), { 'x-amzn-errortype': `${name}:${CORAL_NAMESPACE}`, ...headers });
}

/** Resolves `true` after `ms`, or `false` as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Resolves when `signal` aborts; a `hang` fault waits on this rather than an (overflowing) infinite timer. */
function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

type BodyResult = { kind: 'ok'; body: Buffer } | { kind: 'too-large' } | { kind: 'aborted' };

/** Reads at most `limit` bytes; past it, stops buffering and discards the rest so the response can still go out. */
function readBody(req: EmulatorRequest, limit: number): Promise<BodyResult> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) {
    req.resume();
    return Promise.resolve({ kind: 'too-large' });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: BodyResult) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else {
        finish({ kind: 'too-large' });
        req.resume();
      }
    };
    const onEnd = () => finish({ kind: 'ok', body: Buffer.concat(chunks) });
    const onClose = () => finish({ kind: 'aborted' });
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onClose);
  });
}

/** Parses the body leniently for the call log; validation reports what is wrong with it. */
function parseJson(body: Buffer): { ok: true; value: unknown } | { ok: false } {
  const text = body.toString('utf8');
  if (text.trim() === '') return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

function textsOf(value: unknown): string[] {
  const content = (value as { content?: unknown } | null)?.content;
  if (!Array.isArray(content)) return [];
  return content.flatMap((block: unknown) => {
    const text = (block as { text?: { text?: unknown } } | null)?.text?.text;
    return typeof text === 'string' ? [text] : [];
  });
}

function headerValue(req: EmulatorRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function hasAcceptedAuthorization(req: EmulatorRequest): boolean {
  const auth = headerValue(req, 'authorization') ?? '';
  return auth.startsWith('AWS4-HMAC-SHA256 ') || auth.startsWith('Bearer ');
}

interface Route {
  identifier: string;
  version: string;
}

/** `undefined` for other routes; `null` when a segment is not valid percent-encoding. */
function matchRoute(url: string, basePath: string): Route | null | undefined {
  const path = url.split('?')[0] ?? '';
  if (!path.startsWith(`${basePath}/`)) return undefined;
  const m = /^\/guardrail\/([^/]*)\/version\/([^/]*)\/apply$/.exec(path.slice(basePath.length));
  if (!m) return undefined;
  try {
    return { identifier: decodeURIComponent(m[1] ?? ''), version: decodeURIComponent(m[2] ?? '') };
  } catch {
    return null;
  }
}

/** `arn:…:guardrail/<id>` → `<id>`; a plain id is returned as is. */
function idFromIdentifier(identifier: string): string {
  const slash = identifier.lastIndexOf('guardrail/');
  return identifier.startsWith('arn:') && slash >= 0 ? identifier.slice(slash + 'guardrail/'.length) : identifier;
}

/** The registry: guardrails by id and version. An ARN matches its exact configured ARN, or else the id it names. */
class GuardrailRegistry {
  private readonly byKey = new Map<string, CompiledGuardrail>();

  has(config: GuardrailConfig): boolean {
    return this.byKey.has(`${config.id}@${config.version}`);
  }

  set(config: GuardrailConfig): void {
    const compiled = compileGuardrail(config);
    this.byKey.set(`${config.id}@${config.version}`, compiled);
  }

  find(identifier: string, version: string): CompiledGuardrail | undefined {
    for (const g of this.byKey.values()) {
      if (g.config.version === version && g.arn === identifier) return g;
    }
    return this.byKey.get(`${idFromIdentifier(identifier)}@${version}`);
  }
}

/** Starts an emulator on 127.0.0.1. Throws on bad options or guardrail configs before listening. */
export async function startBedrockEmulator(options: BedrockEmulatorOptions = {}): Promise<BedrockEmulator> {
  const opts = parseOptions(options);
  const registry = new GuardrailRegistry();
  for (const config of opts.guardrails) {
    if (registry.has(config)) throw new TypeError(`Bedrock emulator: options.guardrails lists ${config.id}@${config.version} twice`);
    registry.set(config);
  }
  const faults = new FaultSchedule();
  /**
   * One controller per call in flight, aborted by the client leaving or by `close()`, and removed when the
   * call ends. Nothing per call is attached to a long-lived signal: `AbortSignal.any([call, shutdown])`
   * left a WeakRef per call in the shutdown signal's dependants on Node 20, growing the heap of a soak.
   */
  const inFlightCalls = new Set<AbortController>();
  let closing = false;
  const events = new EventEmitter();
  let calls: EmulatorCall[] = [];
  let callCount = 0;

  const changed = () => events.emit('change');

  function logCall(call: EmulatorCall): void {
    calls.push(call);
    if (calls.length > opts.maxCallLog) calls.shift();
    callCount += 1;
    changed();
  }

  /**
   * Records an abort when the response closes before the emulator answered, and gives a controller whose
   * signal fires then (or on shutdown); the caller passes it to `untrack` when the call ends. Not based on
   * 'finish': HTTP/2's compat response emits it even for a reset stream.
   */
  function trackAbort(call: EmulatorCall, res: EmulatorResponse): AbortController {
    const controller = new AbortController();
    if (closing) controller.abort();
    else inFlightCalls.add(controller);
    res.once('close', () => {
      inFlightCalls.delete(controller);
      if (call.respondedAt !== undefined) return;
      call.abortedAt = Date.now();
      controller.abort();
      changed();
    });
    return controller;
  }

  function markResponded(call: EmulatorCall, status: number, written: boolean): void {
    if (!written) return;
    call.status = status;
    call.respondedAt = Date.now();
    changed();
  }

  function respondError(res: EmulatorResponse, call: EmulatorCall, name: EmulatedErrorName, message: string, headers?: Record<string, string>): void {
    const status = EMULATED_ERRORS[name].status;
    call.errorType = name;
    markResponded(call, status, sendError(res, call.requestId, status, name, message, headers));
  }

  /** The fault for this call: the header wins over `setFault`, which wins over a magic id. */
  function pickFault(req: EmulatorRequest, identifier: string): FaultSpec | 'malformed' | undefined {
    const header = headerValue(req, 'x-emulator-fault');
    if (header !== undefined) return parseFaultHeader(header) ?? 'malformed';
    return faults.take() ?? faultForMagicId(identifier);
  }

  /** Applies a fault. Returns `true` when the request should then be answered normally (after a delay). */
  async function applyFault(fault: FaultSpec, res: EmulatorResponse, call: EmulatorCall, signal: AbortSignal): Promise<boolean> {
    call.fault = fault.kind;
    changed(); // waitFor predicates on the fault see a delayed or hung call
    if (isErrorFault(fault.kind)) {
      const retryAfter: Record<string, string> = fault.retryAfterSeconds === undefined ? {} : { 'retry-after': String(fault.retryAfterSeconds) };
      respondError(res, call, fault.kind, EMULATED_ERRORS[fault.kind].message, retryAfter);
      return false;
    }
    if (fault.kind === 'delay') return sleep(fault.delayMs ?? DEFAULT_FAULT_DELAY_MS, signal);
    if (fault.kind === 'non-json') {
      // A proxy's HTML page in place of JSON: the SDK must fail to deserialize it.
      markResponded(call, 200, send(res, call.requestId, 200, '<html><body><h1>502 Bad Gateway</h1></body></html>', { 'content-type': 'text/html' }));
      return false;
    }
    // hang: answer nothing; the client's abort (or close()) ends the wait.
    await untilAborted(signal);
    return false;
  }

  async function handleApply(req: EmulatorRequest, res: EmulatorResponse, route: Route, startedAt: number): Promise<void> {
    const sdkRequest = headerValue(req, 'amz-sdk-request');
    const attempt = /attempt=(\d+)/.exec(sdkRequest ?? '')?.[1];
    const call: EmulatorCall = {
      seq: callCount + 1,
      requestId: randomUUID(),
      httpVersion: req.httpVersion,
      guardrailId: route.identifier,
      version: route.version,
      source: undefined,
      texts: [],
      sdkRequest,
      attempt: attempt === undefined ? undefined : Number(attempt),
      invocationId: headerValue(req, 'amz-sdk-invocation-id'),
      fault: undefined,
      receivedAt: Date.now(),
    };
    const controller = trackAbort(call, res);
    try {
      await answerApply(req, res, route, startedAt, call, controller.signal);
    } finally {
      inFlightCalls.delete(controller);
    }
  }

  async function answerApply(req: EmulatorRequest, res: EmulatorResponse, route: Route, startedAt: number, call: EmulatorCall, signal: AbortSignal): Promise<void> {
    logCall(call);

    const body = await readBody(req, opts.maxBodyBytes);
    if (body.kind === 'aborted') return;
    if (body.kind === 'too-large') {
      respondError(res, call, 'ValidationException', `Request body exceeds the emulator limit of ${opts.maxBodyBytes} bytes`);
      return;
    }
    const parsed = parseJson(body.body);
    if (parsed.ok) {
      const source = (parsed.value as { source?: unknown } | null)?.source;
      call.source = typeof source === 'string' ? source : undefined;
      call.texts = textsOf(parsed.value);
      changed(); // waitFor predicates on source/texts see an in-flight (delayed, hung) call
    }

    if (!(await sleep(opts.latencyMs, signal))) return;
    if (opts.requireAuth && !hasAcceptedAuthorization(req)) {
      respondError(res, call, 'AccessDeniedException', 'Missing or unsupported Authorization header (expected AWS4-HMAC-SHA256 or Bearer).');
      return;
    }
    const fault = pickFault(req, route.identifier);
    if (fault === 'malformed') {
      respondError(res, call, 'ValidationException', `Unknown x-emulator-fault value: ${headerValue(req, 'x-emulator-fault')}`);
      return;
    }
    if (fault && !(await applyFault(fault, res, call, signal))) return;

    // Magic ids are not valid guardrail ids; they skip label validation and the registry.
    const magic = faultForMagicId(route.identifier) !== undefined;
    const labelProblems = magic ? [] : validateLabels(route.identifier, route.version);
    if (labelProblems.length > 0) {
      respondError(res, call, 'ValidationException', validationMessage(labelProblems));
      return;
    }
    const validation = parsed.ok ? validateBody(parsed.value) : ({ ok: false, message: 'Request body is not valid JSON' } as const);
    if (!validation.ok) {
      respondError(res, call, 'ValidationException', validation.message);
      return;
    }
    const guardrail = magic ? PASS_THROUGH : registry.find(route.identifier, route.version);
    if (!guardrail) {
      respondError(res, call, 'ResourceNotFoundException', EMULATED_ERRORS.ResourceNotFoundException.message);
      return;
    }

    const result = evaluateCompiled(guardrail, validation.body.source, validation.body.content, {
      ...(validation.body.outputScope ? { outputScope: validation.body.outputScope } : {}),
      processingLatencyMs: Math.round(performance.now() - startedAt),
    });
    call.action = result.action;
    call.units = textUnitsOf(validation.body.content);
    call.usage = result.usage;
    markResponded(call, 200, send(res, call.requestId, 200, JSON.stringify(result)));
  }

  async function handle(req: EmulatorRequest, res: EmulatorResponse): Promise<void> {
    const startedAt = performance.now();
    const route = req.method === 'POST' ? matchRoute(req.url ?? '/', opts.basePath) : undefined;
    if (route === undefined) {
      sendError(res, randomUUID(), 404, 'UnknownOperationException', `No ApplyGuardrail route matches ${req.method} ${req.url}`);
      return;
    }
    if (route === null) {
      sendError(res, randomUUID(), 400, 'ValidationException', 'Path labels are not valid percent-encoding');
      return;
    }
    await handleApply(req, res, route, startedAt);
  }

  const listener = await listenDualStack((req, res) => {
    handle(req, res).catch((err: unknown) => {
      sendError(res, randomUUID(), 500, 'InternalServerException', `Emulator error: ${(err as Error).message}`);
    });
  }, opts.port);

  const waiters = new Set<() => void>();

  return {
    url: `http://127.0.0.1:${listener.port}${opts.basePath}`,
    port: listener.port,
    get calls() {
      return calls;
    },
    get callCount() {
      return callCount;
    },
    get inFlight() {
      return calls.filter((c) => c.respondedAt === undefined && c.abortedAt === undefined).length;
    },
    setFault: (fault) => faults.set(fault),
    clearFault: () => faults.clear(),
    setGuardrail: (config) => registry.set(config),
    reset() {
      calls = [];
      callCount = 0;
      faults.clear();
      changed();
    },
    waitFor(predicate, timeoutMs = 2000) {
      return new Promise<void>((resolve, reject) => {
        const done = (error?: Error) => {
          clearTimeout(timer);
          events.off('change', check);
          waiters.delete(onClose);
          if (error) reject(error);
          else resolve();
        };
        const check = () => {
          if (predicate(calls)) done();
        };
        const onClose = () => done(new Error('Bedrock emulator: closed while waiting'));
        const timer = setTimeout(() => done(new Error(`Bedrock emulator: waitFor timed out after ${timeoutMs} ms`)), timeoutMs);
        events.on('change', check);
        waiters.add(onClose);
        check();
      });
    },
    get trackedCalls() {
      return inFlightCalls.size;
    },
    async close() {
      closing = true;
      for (const controller of [...inFlightCalls]) controller.abort();
      inFlightCalls.clear();
      for (const onClose of [...waiters]) onClose();
      await listener.close();
    },
  };
}
