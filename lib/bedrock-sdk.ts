/**
 * The AWS SDK, loaded only when a Bedrock deployment or guardrail is created: it is most of the package's
 * import time, and most gateways never call Bedrock. The package imports only the SDK's types.
 */
import type * as BedrockRuntime from '@aws-sdk/client-bedrock-runtime';
import type * as NodeHttp from '@smithy/node-http-handler';
import { requireDependency } from './require.cjs';

export interface BedrockSdk {
  BedrockRuntimeClient: typeof BedrockRuntime.BedrockRuntimeClient;
  ConverseCommand: typeof BedrockRuntime.ConverseCommand;
  ConverseStreamCommand: typeof BedrockRuntime.ConverseStreamCommand;
  ApplyGuardrailCommand: typeof BedrockRuntime.ApplyGuardrailCommand;
  NodeHttpHandler: typeof NodeHttp.NodeHttpHandler;
}

let loaded: BedrockSdk | undefined;

/** The SDK, loaded on the first call (a factory's: adapter or guardrail creation). */
export function bedrockSdk(): BedrockSdk {
  if (loaded) return loaded;
  const { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, ApplyGuardrailCommand } = requireDependency(
    '@aws-sdk/client-bedrock-runtime',
  ) as typeof BedrockRuntime;
  const { NodeHttpHandler } = requireDependency('@smithy/node-http-handler') as typeof NodeHttp;
  loaded = { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, ApplyGuardrailCommand, NodeHttpHandler };
  return loaded;
}
