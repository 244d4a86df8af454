/**
 * The AWS SDK, loaded only when a Bedrock deployment or guardrail is created: it is most of the package's
 * import time, and most gateways never call Bedrock. The CommonJS build (and jest) load it synchronously
 * with `require`; the ES module build has no `require`, so it starts an `import()` when the adapter or
 * guardrail is created and its first call waits for it. The package imports only the SDK's types.
 */
import type * as BedrockRuntime from '@aws-sdk/client-bedrock-runtime';
import type * as NodeHttp from '@smithy/node-http-handler';

export interface BedrockSdk {
  BedrockRuntimeClient: typeof BedrockRuntime.BedrockRuntimeClient;
  ConverseCommand: typeof BedrockRuntime.ConverseCommand;
  ConverseStreamCommand: typeof BedrockRuntime.ConverseStreamCommand;
  ApplyGuardrailCommand: typeof BedrockRuntime.ApplyGuardrailCommand;
  NodeHttpHandler: typeof NodeHttp.NodeHttpHandler;
}

/** A value that is ready (CommonJS) or on its way (ES modules). */
export type Loading<T> = T | Promise<T>;

let loaded: Loading<BedrockSdk> | undefined;

/** The SDK, loaded on the first call; the same object (or promise of it) on every call. */
export function bedrockSdk(): Loading<BedrockSdk> {
  loaded ??= load();
  return loaded;
}

function load(): Loading<BedrockSdk> {
  if (typeof require === 'function') {
    return pick(require('@aws-sdk/client-bedrock-runtime') as typeof BedrockRuntime, require('@smithy/node-http-handler') as typeof NodeHttp);
  }
  const importing = Promise.all([import('@aws-sdk/client-bedrock-runtime'), import('@smithy/node-http-handler')]).then(([runtime, http]) => {
    const sdk = pick(runtime, http);
    loaded = sdk;
    return sdk;
  });
  // Started ahead of the first call, which sees a failure; until then nobody is waiting for it.
  importing.catch(() => {});
  return importing;
}

function pick(runtime: typeof BedrockRuntime, http: typeof NodeHttp): BedrockSdk {
  const { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, ApplyGuardrailCommand } = runtime;
  return { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, ApplyGuardrailCommand, NodeHttpHandler: http.NodeHttpHandler };
}

/**
 * Builds something from the SDK as soon as it is loaded: at once under CommonJS, else when the import
 * finishes. A build that fails (or a failed import) rejects the returned promise, for the first call to see.
 */
export function withBedrockSdk<T>(build: (sdk: BedrockSdk) => T): Loading<T> {
  const sdk = bedrockSdk();
  if (!(sdk instanceof Promise)) return build(sdk);
  const building = sdk.then(build);
  building.catch(() => {});
  return building;
}
