/**
 * Mock LLM provider servers for tests, the example server and benchmarks (the `express-llm-gateway/testing`
 * entry point re-exports these). Scenario names and the exact error bodies: `mock-scenarios.ts`.
 */
export { startMockAnthropic } from './mock-anthropic.js';
export { startMockOpenAI } from './mock-openai.js';
export type {
  MockApi,
  MockCall,
  MockEndpoint,
  MockProviderOptions,
  MockScenario,
  MockScenarioFn,
  MockScenarioRequest,
  MockScenarioSpec,
  MockServer,
} from './mock-core.js';
export { MOCK_FAILURE_NAMES, MOCK_PATHOLOGIES, type MockFailureName, type MockPathology } from './mock-scenarios.js';
