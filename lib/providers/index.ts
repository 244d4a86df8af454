/**
 * The built-in provider adapters, chosen by a deployment's `provider`.
 */
import { createAnthropicAdapter } from './anthropic.js';
import { createBedrockAdapter } from './bedrock.js';
import { createOpenAIAdapter } from './openai.js';
import type { Deployment, ProviderAdapter } from './types.js';

export function createAdapter(deployment: Deployment): ProviderAdapter {
  switch (deployment.provider) {
    case 'openai':
    case 'azure':
      return createOpenAIAdapter(deployment);
    case 'anthropic':
      return createAnthropicAdapter(deployment);
    case 'bedrock':
      return createBedrockAdapter(deployment);
  }
}

export { createAnthropicAdapter, createBedrockAdapter, createOpenAIAdapter };
