// Pack-and-import test: builds the package, packs the tarball, installs it into a fresh CommonJS project
// and a fresh ESM project, then (1) imports the public API and serves one real request through it, and
// (2) type-checks a TypeScript consumer against the published .d.ts files, for each module system.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
// Outside the repository: module resolution must not find the repo's own node_modules.
const work = mkdtempSync(join(tmpdir(), 'llm-gateway-pack-'));
const npm = (args, cwd) => execFileSync('npm', args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
const node = (file, cwd) => execFileSync(process.execPath, [file], { cwd, stdio: 'inherit' });
const tsc = (cwd) => execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', cwd], { stdio: 'inherit' });

npm(['run', 'build', '--silent'], root);
npm(['pack', '--silent', '--pack-destination', work], root);
const tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz')));

// One request through context → route → error writer, over real loopback HTTP.
const smoke = (importLines) => `${importLines}
const app = express();
app.post('/v1/chat/completions', gatewayContext(), (req, res, next) => {
  if (getContext(req).body.model !== 'm') return next(new Error('context missing'));
  next(new GuardrailViolationError());
});
app.use(sseErrorWriter());
if (typeof startBedrockEmulator !== 'function' || typeof startMockOpenAI !== 'function') throw new Error('testing entry point incomplete');
const server = app.listen(0, '127.0.0.1', async () => {
  const res = await fetch('http://127.0.0.1:' + server.address().port + '/v1/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await res.text();
  server.close();
  const expected = '{"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}';
  if (res.status !== 400 || text !== expected) { console.error('unexpected answer', res.status, text); process.exit(1); }
  console.log('pack test (' + KIND + '): ok');
});
`;

const consumerTs = `import express from 'express';
import { gatewayContext, getContext, sseErrorWriter, GuardrailViolationError, type GatewayContext, type ErrorBodyForm } from 'express-llm-gateway';
import { startBedrockEmulator, startMockOpenAI } from 'express-llm-gateway/testing';
const form: ErrorBodyForm = 'openai';
const app = express();
app.post('/x', gatewayContext({ bodyLimit: '1mb' }), (req, _res, next) => {
  const ctx: GatewayContext = getContext(req);
  const viaRequest: GatewayContext | undefined = req.llmGateway;
  next(new GuardrailViolationError(ctx.id + String(viaRequest?.stream)));
});
app.use(sseErrorWriter({ errorBodyForm: form }));
void startBedrockEmulator;
void startMockOpenAI;
`;

for (const kind of ['cjs', 'esm']) {
  const dir = join(work, kind);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${kind}`, private: true, type: kind === 'esm' ? 'module' : 'commonjs' }));
  npm(['install', '--silent', '--no-audit', '--no-fund', '--prefer-offline', tarball, 'express@^5', '@types/express@^5', '@types/node@^20'], dir);
  const imports =
    kind === 'esm'
      ? `import express from 'express';\nimport { gatewayContext, getContext, sseErrorWriter, GuardrailViolationError } from 'express-llm-gateway';\nimport { startBedrockEmulator, startMockOpenAI } from 'express-llm-gateway/testing';\nconst KIND = 'esm';`
      : `const express = require('express');\nconst { gatewayContext, getContext, sseErrorWriter, GuardrailViolationError } = require('express-llm-gateway');\nconst { startBedrockEmulator, startMockOpenAI } = require('express-llm-gateway/testing');\nconst KIND = 'cjs';`;
  const file = kind === 'esm' ? 'smoke.mjs' : 'smoke.cjs';
  writeFileSync(join(dir, file), smoke(imports));
  node(file, dir);
  writeFileSync(join(dir, kind === 'esm' ? 'consumer.mts' : 'consumer.cts'), consumerTs);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'Node16', moduleResolution: 'Node16', strict: true, noEmit: true, esModuleInterop: true, skipLibCheck: false, types: ['node'] }, files: [kind === 'esm' ? 'consumer.mts' : 'consumer.cts'] }),
  );
  tsc(dir);
  console.log(`pack test (${kind}): types ok`);
}

rmSync(work, { recursive: true, force: true });
