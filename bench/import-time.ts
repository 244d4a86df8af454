/**
 * How long loading the package takes, as a user's app pays it: a fresh `node` process (no tsx) that
 * `require()`s or `import()`s `express-llm-gateway` from the built package (dist/cjs, dist/esm, through
 * the package's own `exports`), nothing configured (so no Bedrock). The time is taken inside that process
 * around the require/import only (Node's own start-up is not in it); the median of `runs` processes each
 * way. dist/ is built (when stale) at the start of the run, by `ensureBuilt()` of bench/package.ts.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { percentile } from './load.js';

const ROOT = resolve(__dirname, '..');

export interface ImportTiming {
  /** Milliseconds per run, and their median. */
  requireMs: number[];
  importMs: number[];
  requireMedianMs: number;
  importMedianMs: number;
  /** Why the package was built at the start of the run, if it was. */
  built: string | undefined;
}

export function measureImport(runs: number, built: string | undefined): ImportTiming {
  const requireMs: number[] = [];
  const importMs: number[] = [];
  const cjs = `const t = performance.now(); require('express-llm-gateway'); process.stdout.write(String(performance.now() - t));`;
  const esm = `const t = performance.now(); await import('express-llm-gateway'); process.stdout.write(String(performance.now() - t));`;
  for (let i = 0; i < runs; i++) {
    requireMs.push(timeIn(['-e', cjs]));
    importMs.push(timeIn(['--input-type=module', '-e', esm]));
  }
  return { requireMs, importMs, requireMedianMs: percentile(requireMs, 50), importMedianMs: percentile(importMs, 50), built };
}

function timeIn(args: string[]): number {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('NODE_OPTIONS') || name.startsWith('AWS_')) delete env[name];
  const out = execFileSync(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
  const ms = Number(out);
  if (!Number.isFinite(ms)) throw new Error(`import timing: unexpected output '${out}'`);
  return ms;
}
