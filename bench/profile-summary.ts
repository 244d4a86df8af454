/**
 * Where a server process spends its CPU: `tsx bench/profile-summary.ts <file.cpuprofile> [top]`.
 * Profiles come from the bench's profile pass (`bench/results/profile-router-*.cpuprofile`, the router
 * setup profiled during its cells only) or from `BENCH_PROFILE=<dir> npm run bench` (every server process
 * runs with `--cpu-prof`, start-up included). Prints self time by function and by module (a package under
 * node_modules, a file of lib/, or Node internals), idle separated; percentages are of busy time (all
 * samples but idle, GC and `(program)` included).
 *
 * `summarizeProfile()` is what the bench uses for its "no gateway function above 2 % self time" target: a
 * gateway function is one whose script is a file under the repository's `dist/` (the built package, what
 * the bench's gateway setups run) or `lib/` (the sources, for profiles of code run through tsx); not
 * node_modules, not Node internals, not bench/.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  /** Set by the bench's profile pass when lib/ positions were mapped back to source lines. */
  sourceMapped?: boolean;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  /** Self time, µs, and its share of busy time (0–1). */
  us: number;
  share: number;
}

export interface ProfileSummary {
  /** Sampled and busy (not idle) time, µs. */
  totalUs: number;
  busyUs: number;
  byModule: SelfTime[];
  byFunction: SelfTime[];
  /** Functions whose script is under `<repo>/dist/` or `<repo>/lib/`, by self time, largest first. */
  gateway: SelfTime[];
}

/**
 * The gateway's code as file URL prefixes: the built package (dist/cjs/x.js, what the bench runs) and the
 * sources (tsx reports scripts as `file:///…/lib/x.ts`).
 */
export const GATEWAY_URL_PREFIXES: readonly string[] = ['dist', 'lib'].map((dir) => `${pathToFileURL(resolve(__dirname, '..', dir)).href}/`);

export function summarizeProfile(profile: CpuProfile, gatewayPrefixes: readonly string[] = GATEWAY_URL_PREFIXES): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  const gateway = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    total += us;
    const module = moduleOf(frame.url, frame.functionName);
    // Files of lib/ and bench/ run through tsx, compiled to a line or two: unless the bench mapped the
    // profile back to sources (`sourceMapped`), their line numbers mean nothing and are left out
    // (same-named functions of one file then add up); packages and dist/ (tsc's readable output) keep theirs.
    const local = /\/(lib|bench)\//.test(frame.url) && !frame.url.includes('node_modules');
    const name = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}${local && !profile.sourceMapped ? '' : `:${frame.lineNumber + 1}`}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byModule.set(module, (byModule.get(module) ?? 0) + us);
    if (gatewayPrefixes.some((prefix) => frame.url.startsWith(prefix))) gateway.set(name, (gateway.get(name) ?? 0) + us);
  }
  const idle = byModule.get('(idle)') ?? 0;
  const busy = Math.max(1, total - idle);
  const rows = (table: Map<string, number>): SelfTime[] =>
    [...table].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, us, share: us / busy }));
  return { totalUs: total, busyUs: busy, byModule: rows(byModule), byFunction: rows(byFunction), gateway: rows(gateway) };
}

function moduleOf(url: string, fn: string): string {
  if (url === '') return fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)' ? fn : '(native)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const local = /\/(lib|bench|dist)\/(.+)$/.exec(url);
  return local ? `${local[1]}/${local[2]}` : url;
}

function shortUrl(url: string): string {
  const pkg = /node_modules\/(.+)$/.exec(url);
  if (pkg) return pkg[1]!;
  const local = /\/(lib|bench|dist)\/(.+)$/.exec(url);
  return local ? `${local[1]}/${local[2]}` : url.replace(/^file:\/\//, '');
}

if (require.main === module) {
  const [file, topArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]');
  const top = Number(topArg ?? 25);
  const summary = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
  console.log(`${file}: ${(summary.totalUs / 1e6).toFixed(1)} s sampled, ${(summary.busyUs / 1e6).toFixed(1)} s busy (idle excluded below)\n`);
  const print = (title: string, rows: SelfTime[]): void => {
    console.log(`## ${title}`);
    for (const row of rows.slice(0, top)) console.log(`${(row.share * 100).toFixed(1).padStart(5)}%  ${(row.us / 1000).toFixed(0).padStart(6)} ms  ${row.name}`);
    console.log('');
  };
  print('self time by module', summary.byModule);
  print('self time by function', summary.byFunction);
  print('gateway functions (script under dist/ or lib/)', summary.gateway);
}
