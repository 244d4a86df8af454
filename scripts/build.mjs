// Builds dist/cjs (CommonJS) and dist/esm (ES modules), each with its own .d.ts files and a
// package.json that tells Node which module system the folder uses. No source maps or declaration maps
// (tsconfig.build.json): lib/*.ts is not published, so maps would point at missing files; the pack test
// checks that nothing in the tarball does.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const run = (...args) => execFileSync(process.execPath, [tsc, ...args], { stdio: 'inherit' });

rmSync('dist', { recursive: true, force: true });
run('-p', 'tsconfig.build.json', '--outDir', 'dist/cjs');
run('-p', 'tsconfig.build.json', '--outDir', 'dist/esm', '--module', 'ES2022', '--moduleResolution', 'Bundler');
for (const [dir, type] of [['dist/cjs', 'commonjs'], ['dist/esm', 'module']]) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/package.json`, JSON.stringify({ type }) + '\n');
}
// The config file's JSON Schema, for editors (`# yaml-language-server: $schema=…`).
const { gatewayConfigSchema } = require('../dist/cjs/gateway-config.js');
writeFileSync('dist/gateway-config.schema.json', JSON.stringify(gatewayConfigSchema, null, 2) + '\n');
