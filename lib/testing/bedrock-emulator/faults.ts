/**
 * Fault injection: which fault (if any) a call gets, from the `x-emulator-fault` header, the programmatic
 * schedule (`setFault`) or a magic guardrail id, in that order of precedence.
 */
import type { EmulatedErrorName, FaultKind, FaultSpec } from './types.js';

/** Status and default message real Bedrock uses for each error (reference §3.3). */
export const EMULATED_ERRORS: Readonly<Record<EmulatedErrorName, { status: number; message: string }>> = {
  ThrottlingException: { status: 429, message: 'Too many requests, please wait before trying again.' },
  InternalServerException: { status: 500, message: 'The server encountered an internal error while processing the request.' },
  ServiceUnavailableException: { status: 503, message: 'The service is temporarily unavailable. Try again later.' },
  AccessDeniedException: { status: 403, message: "You don't have access to the guardrail." },
  ValidationException: { status: 400, message: '1 validation error detected: injected by x-emulator-fault' },
  ResourceNotFoundException: { status: 404, message: 'The guardrail identifier or version provided does not exist.' },
  ServiceQuotaExceededException: { status: 400, message: 'Your request exceeds the service quota for your account.' },
};

export const DEFAULT_FAULT_DELAY_MS = 1000;

export function isErrorFault(kind: FaultKind): kind is EmulatedErrorName {
  return Object.hasOwn(EMULATED_ERRORS, kind);
}

function isFaultKind(kind: unknown): kind is FaultKind {
  return typeof kind === 'string' && (isErrorFault(kind as FaultKind) || kind === 'delay' || kind === 'non-json' || kind === 'hang');
}

function isNonNegativeNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/** Throws a `TypeError` naming the bad field; used by `setFault` so a typo fails the test at once. */
export function assertFaultSpec(spec: FaultSpec): void {
  if (!isFaultKind(spec.kind)) throw new TypeError(`Bedrock emulator: unknown fault kind ${JSON.stringify(spec.kind)}`);
  if (spec.delayMs !== undefined && !isNonNegativeNumber(spec.delayMs)) throw new TypeError('Bedrock emulator: fault delayMs must be a number >= 0');
  if (spec.retryAfterSeconds !== undefined && !isNonNegativeNumber(spec.retryAfterSeconds)) {
    throw new TypeError('Bedrock emulator: fault retryAfterSeconds must be a number >= 0');
  }
  if (spec.times !== undefined && !(Number.isInteger(spec.times) && spec.times > 0)) {
    throw new TypeError('Bedrock emulator: fault times must be a positive integer');
  }
}

/**
 * Parses `x-emulator-fault: <kind>[:<n>]`, where `n` is the delay in ms for `delay` and the `retry-after`
 * seconds for error kinds (e.g. `ThrottlingException:2`, `delay:1500`). Returns `undefined` when malformed.
 */
export function parseFaultHeader(value: string): FaultSpec | undefined {
  const [kind, arg, ...rest] = value.trim().split(':');
  if (!isFaultKind(kind) || rest.length > 0) return undefined;
  if (arg === undefined) return { kind };
  const n = Number(arg);
  if (arg.trim() === '' || !isNonNegativeNumber(n)) return undefined;
  if (kind === 'delay') return { kind, delayMs: n };
  return isErrorFault(kind) ? { kind, retryAfterSeconds: n } : undefined;
}

/** Magic guardrail ids: `throttle`, `unavailable`, `slow:<ms>`. */
export function faultForMagicId(guardrailId: string): FaultSpec | undefined {
  if (guardrailId === 'throttle') return { kind: 'ThrottlingException' };
  if (guardrailId === 'unavailable') return { kind: 'ServiceUnavailableException' };
  const slow = /^slow:(\d{1,7})$/.exec(guardrailId);
  return slow ? { kind: 'delay', delayMs: Number(slow[1]) } : undefined;
}

/** The programmatic fault: persistent, or for the next `times` calls. */
export class FaultSchedule {
  private spec: FaultSpec | undefined;
  private remaining = Infinity;

  set(spec: FaultSpec): void {
    assertFaultSpec(spec);
    this.spec = { ...spec };
    this.remaining = spec.times ?? Infinity;
  }

  clear(): void {
    this.spec = undefined;
  }

  /** The fault for the next call, counting it against `times`. */
  take(): FaultSpec | undefined {
    const spec = this.spec;
    if (!spec) return undefined;
    this.remaining -= 1;
    if (this.remaining <= 0) this.spec = undefined;
    return spec;
  }
}
