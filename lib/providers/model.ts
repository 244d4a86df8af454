import { BadRequestError } from '../errors.js';
import type { ChatCompletionRequest } from '../types.js';
import type { Deployment } from './types.js';

/**
 * The model name sent upstream: the deployment's, or the client's own when the deployment says `'*'`
 * (a wildcard group forwarding whatever model the client asked for). Adapters that put it into a URL path
 * encode it as one segment; `.` and `..` are refused here too (the request validation already does), since
 * no encoding stops a URL from resolving them.
 */
export function upstreamModel(deployment: Deployment, body: ChatCompletionRequest): string {
  if (deployment.model !== '*') return deployment.model;
  if (body.model === '.' || body.model === '..' || body.model === '') {
    throw new BadRequestError(`Invalid request: 'model' must be a model name, not '${body.model}'.`, { param: 'model' });
  }
  return body.model;
}
