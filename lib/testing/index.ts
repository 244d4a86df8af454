/**
 * `express-llm-gateway/testing`: local stand-ins for the real services, for your own tests and demos.
 * Everything listens on 127.0.0.1 only.
 */
export * from './bedrock-emulator.js';
export * from './mock-providers.js';
export * from './mock-bedrock.js';
