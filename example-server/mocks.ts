/**
 * The embedded stand-ins for the real services, so the example runs offline with no accounts: a mock
 * OpenAI-compatible provider, a mock Anthropic provider and the Bedrock ApplyGuardrail emulator, all on
 * 127.0.0.1 with free ports. The config file reaches them through the variables in `env`.
 */
import { startBedrockEmulator, startMockAnthropic, startMockOpenAI } from '../lib/testing/index.js';

export interface EmbeddedServices {
  /** `MOCK_OPENAI_URL`, `MOCK_ANTHROPIC_URL` and `BEDROCK_EMULATOR_URL` (origins, no trailing slash). */
  env: { MOCK_OPENAI_URL: string; MOCK_ANTHROPIC_URL: string; BEDROCK_EMULATOR_URL: string };
  close(): Promise<void>;
}

export async function startEmbeddedServices(): Promise<EmbeddedServices> {
  const [openai, anthropic, emulator] = await Promise.all([startMockOpenAI(), startMockAnthropic(), startBedrockEmulator()]);
  return {
    env: { MOCK_OPENAI_URL: openai.url, MOCK_ANTHROPIC_URL: anthropic.url, BEDROCK_EMULATOR_URL: emulator.url },
    close: async () => {
      await Promise.all([openai.close(), anthropic.close(), emulator.close()]);
    },
  };
}
