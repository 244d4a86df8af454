/**
 * The AWS SDK is loaded only when a Bedrock deployment or guardrail is created (issue 14): importing the
 * package, creating a gateway without Bedrock and serving requests through it leave the SDK unloaded; a
 * Bedrock deployment or guardrail loads it, and its requests work. Each case runs in a fresh node, as
 * CommonJS (lib/ through tsx) and as ES modules (lib/ compiled as scripts/build.mjs does for dist/esm, into
 * a temporary folder). Both builds load the SDK with
 * `require` (lib/require.cts), so it must appear in `require.cache`; a resolve hook reports any ES module
 * resolution of it (a static import), which must never happen.
 * A structural test: the import time itself is the benchmark's.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startBedrockEmulator, startMockBedrock, startMockOpenAI, type BedrockEmulator, type MockBedrock, type MockServer } from '../lib/testing/index.js';

const run = promisify(execFile);
const root = resolve(__dirname, '..');

// Under the repository's node_modules, so the copies resolve the repository's dependencies.
const work = mkdtempSync(join(root, 'node_modules', '.cache-lazy-aws-sdk-'));
const esmBuild = join(work, 'esm');
const driver = join(work, 'driver.mjs');

const HOOK = `
let port;
export function initialize(data) { port = data.port; }
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('@aws-sdk/client-bedrock-runtime')) port.postMessage(specifier);
  return next(specifier, context);
}`;

// argv: mode (cjs | esm), package entry, case (plain | guardrail | deployment), the servers' URLs.
const DRIVER = `
import { createRequire, register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
import { createServer } from 'node:http';
const [mode, entry, kind, openaiUrl, bedrockUrl, emulatorUrl] = process.argv.slice(2);
const hooked = new Set();
const { port1, port2 } = new MessageChannel();
port1.on('message', (specifier) => hooked.add(specifier));
port1.unref();
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}), { data: { port: port2 }, transferList: [port2] });
const require = createRequire(import.meta.url);
const tick = () => new Promise((r) => setTimeout(r, 20));
const loaded = async () => {
  await tick(); // the hook's messages arrive on the event loop
  return { cache: Object.keys(require.cache).some((f) => f.includes('@aws-sdk/client-bedrock-runtime')), hook: hooked.size > 0 };
};
const lib = mode === 'cjs' ? require(entry) : await import(entry);
const out = { afterImport: await loaded() };
const aws = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' };
const openai = { provider: 'openai', baseUrl: openaiUrl + '/v1', model: 'echo', apiKey: 'sk-test' };
const bedrock = { provider: 'bedrock', baseUrl: bedrockUrl, region: 'us-east-1', model: 'normal', awsCredentials: aws };
const guardrail = { guardrailIdentifier: 'gr1default', guardrailVersion: '1', region: 'us-east-1', endpoint: emulatorUrl, credentials: aws, maxAttempts: 1 };
const gateway = lib.createGateway({
  models: [{ name: 'chat', deployments: [kind === 'deployment' ? bedrock : openai] }],
  ...(kind === 'guardrail' ? { guardrails: [guardrail] } : {}),
  logger: lib.silentLogger,
});
out.afterCreate = await loaded();
const express = require('express');
const app = express();
app.use(express.json());
app.use(gateway);
const server = createServer(app).listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const url = 'http://127.0.0.1:' + server.address().port + '/v1/chat/completions';
out.answers = [];
for (const stream of [false, true]) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'chat', stream, messages: [{ role: 'user', content: 'hello there' }] }) });
  const text = await res.text();
  out.answers.push({ stream, status: res.status, complete: stream ? text.includes('data: [DONE]') : JSON.parse(text).choices?.length === 1 });
}
out.afterRequests = await loaded();
server.close();
await gateway.close();
console.log(JSON.stringify(out));
`;

interface Probe {
  cache: boolean;
  hook: boolean;
}
interface Outcome {
  afterImport: Probe;
  afterCreate: Probe;
  afterRequests: Probe;
  answers: { stream: boolean; status: number; complete: boolean }[];
}

let openai: MockServer;
let bedrock: MockBedrock;
let emulator: BedrockEmulator;

beforeAll(async () => {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', esmBuild, '--module', 'ES2022', '--moduleResolution', 'Bundler', '--declaration', 'false'], { cwd: root });
  writeFileSync(join(esmBuild, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(driver, DRIVER);
  [openai, bedrock, emulator] = await Promise.all([startMockOpenAI({ name: 'mock' }), startMockBedrock(), startBedrockEmulator()]);
}, 120_000);
afterAll(async () => {
  rmSync(work, { recursive: true, force: true });
  await Promise.all([openai?.close(), bedrock?.close(), emulator?.close()]);
});

async function outcome(mode: 'cjs' | 'esm', kind: 'plain' | 'guardrail' | 'deployment'): Promise<Outcome> {
  const entry = mode === 'cjs' ? join(root, 'lib', 'index.ts') : join(esmBuild, 'index.js');
  const { stdout } = await run(process.execPath, ['--import', 'tsx', driver, mode, entry, kind, openai.url, bedrock.url, emulator.url], {
    cwd: root,
    timeout: 30_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Outcome;
}

const allAnswered = [
  { stream: false, status: 200, complete: true },
  { stream: true, status: 200, complete: true },
];
const NONE: Probe = { cache: false, hook: false };
const LOADED: Probe = { cache: true, hook: false };

describe.each(['cjs', 'esm'] as const)('%s build', (mode) => {

  it('a gateway without Bedrock never loads the AWS SDK, through import, creation and requests in both modes', async () => {
    const result = await outcome(mode, 'plain');
    expect(result.answers).toEqual(allAnswered);
    expect(result.afterImport).toEqual(NONE);
    expect(result.afterCreate).toEqual(NONE);
    expect(result.afterRequests).toEqual(NONE);
  }, 40_000);

  it.each(['deployment', 'guardrail'] as const)('a Bedrock %s loads the SDK when the gateway is created, and its requests work', async (kind) => {
    const result = await outcome(mode, kind);
    expect(result.afterImport).toEqual(NONE);
    expect(result.afterCreate).toEqual(LOADED);
    expect(result.afterRequests).toEqual(LOADED);
    expect(result.answers).toEqual(allAnswered);
  }, 40_000);
});
