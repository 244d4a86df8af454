import type { ChatCompletionRequest } from '../types.js';
import type { Deployment } from './types.js';

/**
 * The model name sent upstream: the deployment's, or the client's own when the deployment says `'*'`
 * (a wildcard group forwarding whatever model the client asked for).
 */
export function upstreamModel(deployment: Deployment, body: ChatCompletionRequest): string {
  return deployment.model === '*' ? body.model : deployment.model;
}
