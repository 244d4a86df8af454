/**
 * What the router does when an adapter reports a malformed upstream event (`router.malformedChunks`):
 * count it on the attempt (the metrics read it from the request summary) and, when it was skipped, warn
 * once per request. The adapters decide what is malformed; this stays protocol-neutral.
 */
import type { Attempt } from './attempts.js';
import type { GatewayContext } from './context.js';
import type { Logger } from './logger.js';

/** Requests already warned about: a broken upstream can send thousands of bad frames in one answer. */
const warned = new WeakSet<GatewayContext>();

/** The `onMalformedChunk` of one attempt's upstream request. */
export function malformedChunkReporter(ctx: GatewayContext, attempt: Attempt, logger: Logger): (reason: string, skipped: boolean) => void {
  return (reason, skipped) => {
    attempt.malformedChunks = (attempt.malformedChunks ?? 0) + 1;
    // Under `error` the attempt fails with this reason, and that failure is logged where failures are.
    if (!skipped || warned.has(ctx)) return;
    warned.add(ctx);
    try {
      logger.warn(
        { requestId: ctx.id, group: attempt.group, deployment: attempt.deployment, reason },
        'skipped a malformed chunk from the upstream (router.malformedChunks: skip); later ones in this request are only counted',
      );
    } catch {
      // A throwing logger must not end a stream the policy says to keep.
    }
  };
}
