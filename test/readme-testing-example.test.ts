/**
 * Runs the README's "Testing your app" example as written. The code block between the
 * `testing-example` markers is copied to a file inside the repository (so that `express`, `supertest`
 * and the rest resolve from node_modules), required here, so that its `describe`/`it` blocks become this
 * file's tests (on Express 4 and 5 alike: jest.config.js maps `express-llm-gateway` and
 * `express-llm-gateway/testing` to `lib/`), and type-checked with the same mapping, the way a user's
 * compiler finds the published types.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { readmeBlock } from './helpers/readme.js';

const ROOT = join(__dirname, '..');
// One file per process: the Express 4 and 5 runs may overlap.
const file = join(ROOT, '.tmp', 'readme-examples', `testing-example-${process.pid}.ts`);
mkdirSync(join(file, '..'), { recursive: true });
writeFileSync(file, readmeBlock('testing-example', 'ts'));
afterAll(() => rmSync(file, { force: true }));

// Registers the example's hooks and tests now, while jest collects this file.
require(file);

it('type-checks', () => {
  const { config } = ts.readConfigFile(join(ROOT, 'tsconfig.json'), (path) => ts.sys.readFile(path));
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, ROOT);
  const program = ts.createProgram([file], {
    ...options,
    noEmit: true,
    paths: {
      'express-llm-gateway': [join(ROOT, 'lib', 'index.ts')],
      'express-llm-gateway/testing': [join(ROOT, 'lib', 'testing', 'index.ts')],
    },
  });
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  expect(problems).toEqual([]);
}, 120_000);
