/**
 * Everything a soak talks to, in this one process and on 127.0.0.1 only: two OpenAI-compatible mocks,
 * an Anthropic mock, the Bedrock ApplyGuardrail emulator, and the gateway (`createGateway`) mounted in
 * an Express app. The configuration exercises retries, every kind of fallback and two guardrails (one
 * failing closed, one failing open), with timeouts short enough that a hung upstream costs ~300 ms.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createGateway, type Gateway, type GatewayOptions, type Logger } from '../lib/index.js';
import { startBedrockEmulator, startMockAnthropic, startMockOpenAI, type BedrockEmulator, type MockServer } from '../lib/testing/index.js';
import { guardedScenarios, modelScenarios } from './upstream.js';

/** Model groups the driver requests. */
export const GROUPS = ['chat', 'backup', 'claude', 'guarded', 'guarded-open'] as const;
export type Group = (typeof GROUPS)[number];
/** The group whose guardrail blocks and fails closed: the blocked word must never reach its clients. */
export const STRICT_GROUP: Group = 'guarded';

/**
 * A guardrail call's deadline. Short, yet far above the emulator's own time even when this process shares
 * two cores with other work: a timeout should come from an injected fault, not from a busy machine.
 */
export const GUARDRAIL_TIMEOUT_MS = 1000;

/**
 * Credentials configured on the gateway, which must never appear in a response body or a log line. The
 * keys and the AWS secret have shapes no redaction pattern recognises (no `sk-` prefix, no `key=`), so only
 * redaction by value hides them: a plain token, a 32-hex Azure-style key, an Anthropic key without its
 * prefix, an AWS access key id and a 40-character AWS secret access key.
 */
export const SECRETS = [
  'plainSoakAlphaToken42xyz',
  '9b1d4c7e2f5a8036b4d1e7c9a2f5086d',
  'soakClaudeKey-7Hq2Lw9Zp4Xv',
  'AKIASOAKEXAMPLE7Q2WX',
  'wJalrXUtnFEMI/K7MDENG/bPxRfiCYSOAKSECRET1',
];

export interface SoakServices {
  /** The gateway's origin, `http://127.0.0.1:<port>`. */
  url: string;
  /** The OpenAI-compatible mocks: they log the `x-request-id` the gateway forwards. */
  openai: MockServer[];
  anthropic: MockServer;
  emulator: BedrockEmulator;
  gateway: Gateway;
  /** Where the services listen, to look for in response bodies. */
  origins: string[];
  close(): Promise<void>;
}

/**
 * The mocks keep this many calls. The abort check only looks at calls in flight around an abort (at most a
 * few per request in flight), and a short log reaches its steady size during the warm-up.
 */
const CALL_LOG = 500;

export async function startServices(seed: number, logger: Logger): Promise<SoakServices> {
  const [alpha, beta, anthropic, emulator] = await Promise.all([
    startMockOpenAI({ name: 'mock-alpha', maxCallLog: CALL_LOG }),
    startMockOpenAI({ name: 'mock-beta', maxCallLog: CALL_LOG }),
    startMockAnthropic({ name: 'mock-claude', maxCallLog: CALL_LOG }),
    startBedrockEmulator({ maxCallLog: CALL_LOG }),
  ]);
  alpha.setScenario('soak-chat', modelScenarios(seed, 1));
  beta.setScenario('soak-chat', modelScenarios(seed, 2));
  beta.setScenario('soak-backup', modelScenarios(seed, 3));
  anthropic.setScenario('soak-claude', modelScenarios(seed, 4));
  alpha.setScenario('soak-guarded', guardedScenarios(seed, 5));
  beta.setScenario('soak-guarded', guardedScenarios(seed, 6));

  const gateway = createGateway({ ...gatewayConfig(alpha.url, beta.url, anthropic.url, emulator.url), logger });
  const app = express();
  app.set('env', 'production'); // Express's default handler would print stacks; the gateway must never reach it
  app.use(gateway);
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    openai: [alpha, beta],
    anthropic,
    emulator,
    gateway,
    origins: [url, alpha.url, beta.url, anthropic.url, emulator.url].map((origin) => origin.replace(/^http:\/\//, '')),
    close: async () => {
      await closeServer(server);
      await gateway.close();
      await Promise.all([alpha.close(), beta.close(), anthropic.close(), emulator.close()]);
    },
  };
}

function gatewayConfig(alphaUrl: string, betaUrl: string, anthropicUrl: string, emulatorUrl: string): GatewayOptions {
  const alpha = { provider: 'openai', baseUrl: `${alphaUrl}/v1`, apiKey: SECRETS[0] } as const;
  const beta = { provider: 'openai', baseUrl: `${betaUrl}/v1`, apiKey: SECRETS[1] } as const;
  const guardrail = {
    guardrailIdentifier: 'gr1default',
    guardrailVersion: '1',
    region: 'us-east-1',
    endpoint: emulatorUrl,
    credentials: { accessKeyId: SECRETS[3]!, secretAccessKey: SECRETS[4]! },
    timeoutMs: GUARDRAIL_TIMEOUT_MS,
    streaming: { mode: 'window', windowSize: 200, overlap: 40 },
  } as const;
  return {
    models: [
      { name: 'chat', deployments: [{ ...alpha, id: 'chat-alpha', model: 'soak-chat' }, { ...beta, id: 'chat-beta', model: 'soak-chat' }] },
      { name: 'backup', deployments: [{ ...beta, id: 'backup-beta', model: 'soak-backup' }] },
      { name: 'claude', deployments: [{ provider: 'anthropic', baseUrl: anthropicUrl, apiKey: SECRETS[2], id: 'claude', model: 'soak-claude' }] },
      { name: 'guarded', deployments: [{ ...alpha, id: 'guarded-alpha', model: 'soak-guarded' }] },
      { name: 'guarded-open', deployments: [{ ...beta, id: 'guarded-beta', model: 'soak-guarded' }] },
    ],
    router: {
      retries: { maxRetries: 1, backoff: { initialMs: 5, maxMs: 20 } },
      // Short cooldowns: the fault rate would otherwise keep every deployment out of rotation all run.
      cooldown: { failureThreshold: 5, windowMs: 1000, durationMs: 250 },
      timeouts: { connectMs: 1000, firstTokenMs: 400, idleMs: 400, totalMs: 3000 },
      deadlineMs: 6000,
    },
    fallbacks: {
      general: { chat: ['backup', 'claude'], backup: ['claude'], guarded: ['claude'] },
      contentPolicy: { chat: ['claude'], backup: ['claude'] },
      contextWindow: { chat: ['claude'], guarded: ['claude'] },
      // After the first byte, a chat answer cut mid-stream resumes on backup or claude: the mocks answer
      // the same text again, so every continuation meets a fallback that restarts its answer.
      continuation: { groups: ['backup', 'claude'] },
    },
    guardrails: [
      { ...guardrail, name: 'strict', maxAttempts: 1, hooks: ['pre_call', 'post_call'], onIntervention: 'block', groups: ['guarded'] },
      { ...guardrail, name: 'lenient', maxAttempts: 2, hooks: ['during_call', 'post_call'], failOpen: true, groups: ['guarded-open'] },
    ],
    context: { trustRequestId: true },
  };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
