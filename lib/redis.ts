/**
 * `express-llm-gateway/redis`: the Redis store, on its own entry point so that only apps using it need
 * the (optional) `ioredis` package and its types.
 */
export { RedisStore } from './redis-store.js';
export type { RedisStoreOptions } from './redis-store.js';
