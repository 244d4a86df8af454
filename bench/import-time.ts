/**
 * How long loading the package takes, as a user's app pays it: a fresh `node` process (no tsx) that
 * `require()`s or `import()`s `express-llm-gateway` from the built package (dist/cjs, dist/esm, through
 * the package's own `exports`), nothing configured (so no Bedrock). The time is taken inside that process
 * around the require/import only (Node's own start-up is not in it); the median of `runs` processes each
 * way. `npm run build` runs first when dist/ is missing or older than a file of lib/ or package.json.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { percentile } from './load.js';

const ROOT = resolve(__dirname, '..');

export interface ImportTiming {
  /** Milliseconds per run, and their median. */
  requireMs: number[];
  importMs: number[];
  requireMedianMs: number;
  importMedianMs: number;
  /** Why the package was built first, if it was. */
  built: string | undefined;
}

export function measureImport(runs: number, log: (line: string) => void): ImportTiming {
  const built = ensureBuilt(log);
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

/** Builds the package when dist/ is missing or older than lib/ or package.json; says why, or undefined. */
function ensureBuilt(log: (line: string) => void): string | undefined {
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
    else if (entry.name.endsWith('.ts') || entry.name.endsWith('.json')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}
