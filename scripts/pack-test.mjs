// Pack-and-import test: builds the package, packs the tarball and checks what a user installs.
//  1. The tarball: LICENSE, README.md and every file package.json points at (main, module, types,
//     typesVersions, exports) are in it; no source map (or sourceMappingURL comment) points at a file that
//     is not shipped, and no map lacks the text of a source it names (lib/*.ts is not published).
//  2. Installed into a fresh CommonJS project (Express 4, @types/node 20: the oldest supported) and a fresh
//     ESM project (Express 5, @types/node 26): every entry point loads — `.`, `/testing`, `/redis`, `/otel`
//     and the JSON Schema — and one real request goes through context → route → error writer over loopback
//     HTTP.
//  3. A TypeScript consumer importing every entry point type-checks against the published .d.ts files
//     under moduleResolution `node10` (the default for `module: commonjs`), `node16` and `bundler`, in both
//     projects, and each setting picks the declaration flavour Node or a bundler would (dist/cjs for
//     require, dist/esm for import).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
// Outside the repository: module resolution must not find the repo's own node_modules.
const work = mkdtempSync(join(tmpdir(), 'llm-gateway-pack-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const npm = (args, cwd) => execFileSync('npm', args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
const node = (file, cwd) => execFileSync(process.execPath, [file], { cwd, stdio: 'inherit' });
const tscBin = join(root, 'node_modules/typescript/bin/tsc');
const tscVersion = execFileSync(process.execPath, [tscBin, '--version'], { encoding: 'utf8' }).trim().replace('Version', 'TypeScript');
const fail = (message) => {
  console.error(`pack test: ${message}`);
  process.exit(1);
};

npm(['run', 'build', '--silent'], root);
// Built just above: --ignore-scripts skips the prepack build (its output would mix with the JSON).
const [packed] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], root));
const tarball = join(work, packed.filename);

// ---- 1. What is in the tarball ----
const unpacked = join(work, 'unpacked');
mkdirSync(unpacked);
execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
const pkgDir = join(unpacked, 'package');
const shipped = new Set(packed.files.map((f) => f.path));
for (const required of ['LICENSE', 'README.md', 'package.json']) {
  if (!shipped.has(required)) fail(`${required} is not in the tarball`);
}
if (!/^MIT License\b/.test(readFileSync(join(pkgDir, 'LICENSE'), 'utf8'))) fail('LICENSE is not the MIT licence');

const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const targets = [pkg.main, pkg.module, pkg.types];
const collect = (value) => {
  if (typeof value === 'string') targets.push(value);
  else if (Array.isArray(value)) value.forEach(collect);
  else if (value && typeof value === 'object') Object.values(value).forEach(collect);
};
collect(pkg.exports);
collect(pkg.typesVersions);
for (const target of targets.filter(Boolean)) {
  if (!shipped.has(posix.normalize(target))) fail(`package.json points at ${target}, which is not in the tarball`);
}

// Source maps: every sourceMappingURL must name a shipped map (or be a data: URL), and every source a map
// names must be shipped or have its text inlined (sourcesContent).
let maps = 0;
const checkMap = (map, where) => {
  maps++;
  map.sources.forEach((source, i) => {
    const file = relative(pkgDir, resolve(dirname(where), map.sourceRoot ?? '', source));
    if (!shipped.has(file.split('\\').join('/')) && typeof map.sourcesContent?.[i] !== 'string') {
      fail(`${relative(pkgDir, where)} maps to ${source}, which is neither shipped nor inlined`);
    }
  });
};
for (const path of shipped) {
  const full = join(pkgDir, path);
  if (path.endsWith('.map')) {
    checkMap(JSON.parse(readFileSync(full, 'utf8')), full);
    continue;
  }
  if (!/\.(c|m)?js$|\.d\.(c|m)?ts$/.test(path)) continue;
  const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(full, 'utf8'))?.[1];
  if (!url) continue;
  if (url.startsWith('data:')) {
    checkMap(JSON.parse(Buffer.from(url.slice(url.indexOf(',') + 1), 'base64').toString('utf8')), full);
  } else if (!shipped.has(relative(pkgDir, resolve(dirname(full), url)).split('\\').join('/'))) {
    fail(`${path} has a sourceMappingURL to ${url}, which is not in the tarball`);
  }
}
console.log(
  `pack test: tarball ok (${packed.filename}, ${packed.entryCount} files, ${(packed.size / 1024).toFixed(0)} kB; ` +
    `LICENSE, README.md, ${targets.length} package.json targets present; ${maps} source maps, none dangling)`,
);

// ---- 2. Runtime: every entry point loads, one request goes through ----
const smoke = (kind, importLines) => `${importLines}
if (typeof startBedrockEmulator !== 'function' || typeof startMockOpenAI !== 'function') throw new Error('testing entry point incomplete');
if (typeof RedisStore !== 'function') throw new Error('redis entry point incomplete');
if (typeof instrumentGateway !== 'function') throw new Error('otel entry point incomplete');
instrumentGateway().stop();
if (schema.title !== 'express-llm-gateway configuration') throw new Error('JSON schema entry point wrong');
const app = express();
app.post('/v1/chat/completions', gatewayContext(), (req, res, next) => {
  if (getContext(req).body.model !== 'm') return next(new Error('context missing'));
  next(new GuardrailViolationError());
});
app.use(sseErrorWriter());
const server = app.listen(0, '127.0.0.1', async () => {
  const res = await fetch('http://127.0.0.1:' + server.address().port + '/v1/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await res.text();
  server.close();
  const expected = '{"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}';
  if (res.status !== 400 || text !== expected) { console.error('unexpected answer', res.status, text); process.exit(1); }
  console.log('pack test (${kind}): every entry point loads, request ok (Node ' + process.version + ', Express ' + require('express/package.json').version + ')');
});
`;
const runtimeImports = {
  cjs: `const express = require('express');
const { gatewayContext, getContext, sseErrorWriter, GuardrailViolationError } = require('express-llm-gateway');
const { startBedrockEmulator, startMockOpenAI } = require('express-llm-gateway/testing');
const { RedisStore } = require('express-llm-gateway/redis');
const { instrumentGateway } = require('express-llm-gateway/otel');
const schema = require('express-llm-gateway/gateway-config.schema.json');`,
  // The schema is resolved through the exports map and read, the way an editor or a validator uses it
  // (importing JSON is still experimental on Node 20).
  esm: `import express from 'express';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { gatewayContext, getContext, sseErrorWriter, GuardrailViolationError } from 'express-llm-gateway';
import { startBedrockEmulator, startMockOpenAI } from 'express-llm-gateway/testing';
import { RedisStore } from 'express-llm-gateway/redis';
import { instrumentGateway } from 'express-llm-gateway/otel';
const schema = JSON.parse(readFileSync(new URL(import.meta.resolve('express-llm-gateway/gateway-config.schema.json')), 'utf8'));
const require = createRequire(import.meta.url);`,
};

// ---- 3. Types: a consumer of every entry point, under three moduleResolution settings ----
const consumerTs = (imports) => `${imports}
const form: ErrorBodyForm = 'openai';
const app = express();
app.post('/x', gatewayContext({ bodyLimit: '1mb' }), (req, _res, next) => {
  const ctx: GatewayContext = getContext(req);
  const viaRequest: GatewayContext | undefined = req.llmGateway;
  next(new GuardrailViolationError(ctx.id + String(viaRequest?.stream)));
});
app.use(sseErrorWriter({ errorBodyForm: form }));
let store: RedisStore | undefined;
const storeOptions: Partial<RedisStoreOptions> = {};
const title: string = schema.title;
const telemetryOptions: GatewayTelemetryOptions = { propagateTraceContext: false };
void [store, storeOptions, title, startBedrockEmulator, startMockOpenAI, instrumentGateway(telemetryOptions)];
`;
const esImports = (jsonAttributes) => `import express from 'express';
import { gatewayContext, getContext, sseErrorWriter, GuardrailViolationError, type GatewayContext, type ErrorBodyForm } from 'express-llm-gateway';
import { startBedrockEmulator, startMockOpenAI } from 'express-llm-gateway/testing';
import { RedisStore, type RedisStoreOptions } from 'express-llm-gateway/redis';
import { instrumentGateway, type GatewayTelemetryOptions } from 'express-llm-gateway/otel';
import schema from 'express-llm-gateway/gateway-config.schema.json'${jsonAttributes ? ` with { type: 'json' }` : ''};`;
// CommonJS under a bundler (module: preserve): `import … = require()` takes the "require" condition.
const requireImports = `import express = require('express');
import gateway = require('express-llm-gateway');
import testing = require('express-llm-gateway/testing');
import redis = require('express-llm-gateway/redis');
import otel = require('express-llm-gateway/otel');
import schema = require('express-llm-gateway/gateway-config.schema.json');
const { gatewayContext, getContext, sseErrorWriter, GuardrailViolationError } = gateway;
const { startBedrockEmulator, startMockOpenAI } = testing;
type GatewayContext = gateway.GatewayContext;
type ErrorBodyForm = gateway.ErrorBodyForm;
type RedisStore = redis.RedisStore;
type RedisStoreOptions = redis.RedisStoreOptions;
const { instrumentGateway } = otel;
type GatewayTelemetryOptions = otel.GatewayTelemetryOptions;`;

// [name, compilerOptions, consumer source, declaration flavour expected]; `module` is set to what each
// setting needs (NodeNext for the import attribute an ESM JSON import needs at run time).
const settings = {
  cjs: [
    ['node10', { module: 'CommonJS', moduleResolution: 'Node10' }, consumerTs(esImports(false)), 'cjs'],
    ['node16', { module: 'NodeNext', moduleResolution: 'Node16' }, consumerTs(esImports(false)), 'cjs'],
    ['bundler', { module: 'Preserve', moduleResolution: 'Bundler' }, consumerTs(requireImports), 'cjs'],
  ],
  esm: [
    ['node10', { module: 'ES2022', moduleResolution: 'Node10' }, consumerTs(esImports(false)), 'cjs'],
    ['node16', { module: 'NodeNext', moduleResolution: 'Node16' }, consumerTs(esImports(true)), 'esm'],
    ['bundler', { module: 'ESNext', moduleResolution: 'Bundler' }, consumerTs(esImports(false)), 'esm'],
  ],
};

const projects = {
  cjs: { type: 'commonjs', deps: ['express@^4', '@types/express@^4', '@types/node@^20'] },
  esm: { type: 'module', deps: ['express@^5', '@types/express@^5', '@types/node@^26'] },
};
for (const [kind, project] of Object.entries(projects)) {
  const dir = join(work, kind);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${kind}`, private: true, type: project.type }));
  npm(['install', '--silent', '--no-audit', '--no-fund', '--prefer-offline', tarball, 'ioredis@^5', '@opentelemetry/api@^1.9', ...project.deps], dir);

  const file = kind === 'esm' ? 'smoke.mjs' : 'smoke.cjs';
  writeFileSync(join(dir, file), smoke(kind, runtimeImports[kind]));
  node(file, dir);

  const installed = join(dir, 'node_modules/express-llm-gateway/dist');
  for (const [name, options, source, flavour] of settings[kind]) {
    const sub = join(dir, name);
    mkdirSync(sub);
    writeFileSync(join(sub, 'consumer.ts'), source);
    writeFileSync(
      join(sub, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { ...options, strict: true, noEmit: true, esModuleInterop: true, resolveJsonModule: true, skipLibCheck: false, types: ['node'] },
        files: ['consumer.ts'],
      }),
    );
    let listed;
    try {
      listed = execFileSync(process.execPath, [tscBin, '-p', sub, '--listFiles'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    } catch (error) {
      // tsc prints its diagnostics among the --listFiles paths.
      process.stdout.write(String(error.stdout ?? '').split('\n').filter((line) => !/^\/\S+$/.test(line)).join('\n'));
      fail(`${kind}/${name}: the consumer does not type-check (${tscVersion}, ${JSON.stringify(options)})`);
    }
    const ours = listed.split('\n').filter((f) => f.startsWith(installed + '/'));
    const flavours = new Set(ours.filter((f) => f.endsWith('.d.ts')).map((f) => relative(installed, f).split(/[\\/]/)[0]));
    for (const entry of ['index.d.ts', 'testing/index.d.ts', 'redis.d.ts', 'otel.d.ts']) {
      if (!ours.includes(join(installed, flavour, entry))) fail(`${kind}/${name}: dist/${flavour}/${entry} was not loaded`);
    }
    if (!ours.includes(join(installed, 'gateway-config.schema.json'))) fail(`${kind}/${name}: the JSON schema was not loaded`);
    if (flavours.size !== 1 || !flavours.has(flavour)) {
      fail(`${kind}/${name}: expected only dist/${flavour} declarations, loaded ${[...flavours].join(', ')}`);
    }
    console.log(`pack test (${kind}): types ok with moduleResolution ${name} (module ${options.module}, dist/${flavour}/*.d.ts, ${tscVersion})`);
  }
}

