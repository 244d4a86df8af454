/**
 * The gateway as its users run it: the built package (dist/cjs, compiled by `tsc`), not lib/*.ts through
 * tsx. tsx compiles with esbuild's keepNames, which wraps every function expression in `__name(...)` (a
 * `defineProperty`, ~0.3 µs and ~350 B per closure made): the per-request and per-chunk numbers of the
 * gateway setups would include that, and a user's app never pays it. tsx leaves dist/'s `.js` files alone.
 *
 * `ensureBuilt()` runs once at the start of a bench run, before any server starts (the gateway children
 * and the package-loading measurement both use dist/). The loaders below run inside a gateway child.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..');

/** What the run header says about the code under test. */
export const GATEWAY_CODE = 'dist/cjs (the built package, `npm run build`; not lib/*.ts through tsx)';

/** `express-llm-gateway` (dist/cjs/index.js), typed as its source. */
export function gatewayPackage(): typeof import('../lib/index.js') {
  return require('../dist/cjs/index.js') as typeof import('../lib/index.js');
}

/** `express-llm-gateway/otel` (dist/cjs/otel.js). */
export function otelPackage(): typeof import('../lib/otel.js') {
  return require('../dist/cjs/otel.js') as typeof import('../lib/otel.js');
}

/** The Bedrock emulator's defaults (`express-llm-gateway/testing`'s module), for the guardrail setups. */
export function emulatorDefaults(): typeof import('../lib/testing/bedrock-emulator.js') {
  return require('../dist/cjs/testing/bedrock-emulator.js') as typeof import('../lib/testing/bedrock-emulator.js');
}

/**
 * Builds the package when dist/ is missing or older than a file of lib/ or package.json (`npm run build`
 * deletes and rewrites dist/); says why it built, or undefined when dist/ was up to date.
 */
export function ensureBuilt(log: (line: string) => void): string | undefined {
  const outputs = ['dist/cjs/index.js', 'dist/esm/index.js'].map((p) => join(ROOT, p));
  let reason: string | undefined;
  if (outputs.some((p) => !existsSync(p))) reason = 'dist/ is missing';
  else {
    const builtAt = Math.min(...outputs.map((p) => statSync(p).mtimeMs));
    const newest = Math.max(newestMtime(join(ROOT, 'lib')), statSync(join(ROOT, 'package.json')).mtimeMs);
    if (newest > builtAt) reason = 'dist/ is older than lib/';
  }
  if (reason === undefined) return undefined;
  log(`  ${reason}: npm run build`);
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  return reason;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else if (/\.(c|m)?ts$|\.json$/.test(entry.name)) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}
