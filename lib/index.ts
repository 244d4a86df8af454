export { gatewayContext, getContext } from './context.js';
export type {
  AttemptControl,
  ContextHooks,
  GatewayContext,
  GatewayContextOptions,
  GuardrailRecord,
  InputHook,
  OutputFilter,
  OutputHook,
} from './context.js';
export { sseErrorWriter } from './sse-error-writer.js';
export type { SseErrorWriterOptions } from './sse-error-writer.js';
export { ResponseWriter, SSE_HEADERS } from './response-writer.js';
export type { HeaderSource, WriterState } from './response-writer.js';
export {
  AuthenticationError,
  BadRequestError,
  ClientDisconnectedError,
  ConnectionError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  GatewayError,
  GuardrailUnavailableError,
  GuardrailViolationError,
  InternalError,
  MethodNotAllowedError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  RequestTimeoutError,
  RequestTooLargeError,
  ServiceUnavailableError,
  TimeoutError,
  UnsupportedMediaTypeError,
  UpstreamCredentialsError,
  UpstreamError,
  sanitizeMessage,
  toGatewayError,
} from './errors.js';
export type { ErrorBody, ErrorBodyForm, GatewayErrorObject, GatewayErrorOptions } from './errors.js';
export { GatewayConfigError } from './options.js';
export { consoleLogger, silentLogger } from './logger.js';
export type { Logger } from './logger.js';
export {
  HEADER_ATTEMPT_LOG,
  HEADER_ATTEMPTS,
  HEADER_DEPLOYMENT,
  HEADER_FALLBACKS,
  HEADER_GROUP,
  HEADER_REQUEST_ID,
  HEADER_RETRIES,
  attemptHeaders,
  attemptSummary,
} from './attempts.js';
export type { Attempt, AttemptKind, AttemptOutcome } from './attempts.js';
export { chatCompletionRequestSchema } from './request-schema.js';
export type * from './types.js';
export { createRouter } from './router.js';
export type { GatewayRouter } from './router.js';
export { routerOptionsSchema } from './router-config.js';
export type { CooldownOptions, ModelGroupOptions, RetryableType, RetryOptions, RouterOptions, RoutingStrategy } from './router-config.js';
export { fallbackHandler } from './fallback-handler.js';
export type { ContinuationOptions, FallbackHandlerOptions, FallbackMap } from './fallback-handler.js';
export { MemoryStore } from './store.js';
export type { MaybePromise, Store, UsageWindow } from './store.js';
export type { Credential, Deployment, DeploymentOptions, ProviderAdapter, ProviderName, TimeoutOptions, UpstreamRequest } from './providers/types.js';
export { createGateway } from './create-gateway.js';
export type { Gateway, GatewayOptions } from './create-gateway.js';
export { gatewayConfigSchema, loadGatewayConfig, parseGatewayConfig, validateGatewayConfig } from './gateway-config.js';
export type { GatewayFallbackConfig, GatewayFileConfig, GatewayGuardrailConfig, GatewayStoreConfig, LoadConfigOptions } from './gateway-config.js';
export { DEFAULT_PASSTHROUGH_PATHS, passThrough } from './passthrough.js';
export type { PassThroughOptions } from './passthrough.js';
export { bedrockGuardrail, guardrailHeaders, HEADER_GUARDRAIL, HEADER_GUARDRAIL_UNITS } from './bedrock-guardrail.js';
export type { BedrockGuardrailOptions, GuardrailHook, GuardrailStreamingOptions, StreamingMode } from './bedrock-guardrail.js';
export type { GatewayEvents, RequestSummary } from './events.js';
export { ATTEMPT_CHANNEL, GUARDRAIL_CHANNEL, REQUEST_CHANNEL, TracedFailure } from './diagnostics.js';
export type { AttemptMessage, GuardrailMessage, RequestMessage, TracedUsage } from './diagnostics.js';
export { combineEvents, prometheusMetrics } from './metrics.js';
export type { GatewayMetrics, PrometheusMetricsOptions } from './metrics.js';
