/** Options a user never set must not be what fails, and config errors say how to fix them. */
import { bedrockGuardrail, GatewayConfigError, parseGatewayConfig } from '../lib/index.js';

const guardrail = { guardrailIdentifier: 'gr1abc2def3', guardrailVersion: '1', region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' } };

describe('option traps', () => {
  it.each([20, 100, 150, 199, 200, 1000])('streaming.windowSize %i alone is accepted (the default overlap shrinks to half the window)', (windowSize) => {
    expect(() => bedrockGuardrail({ ...guardrail, streaming: { windowSize } })).not.toThrow();
  });

  it('an overlap the user set larger than half the window still fails, naming it', () => {
    expect(() => bedrockGuardrail({ ...guardrail, streaming: { windowSize: 150, overlap: 100 } })).toThrow(/'bedrockGuardrail.streaming.overlap'.*half of windowSize \(75\)/);
  });

  it('loadGatewayConfig without env says how to read the environment; with env it does not', () => {
    const yaml = 'models:\n  - name: m\n    deployments: [{ provider: openai, model: x, apiKey: "${OPENAI_API_KEY}" }]\n';
    const without = (): unknown => parseGatewayConfig(yaml, 'yaml');
    expect(without).toThrow(GatewayConfigError);
    expect(without).toThrow(/\$\{OPENAI_API_KEY\}, which is not set\. No `env` was passed: use loadGatewayConfig\(file, \{ env: process\.env \}\)/);
    expect(() => parseGatewayConfig(yaml, 'yaml', { env: {} })).toThrow(/which is not set\.$/);
  });
});
