import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withWalkthrough } from '../scripts/readme-walkthrough.js';
import { WALKTHROUGH, type WalkthroughStep } from '../example-server/walkthrough.js';
import {
  DEFAULT_GUARDRAIL,
  MOCK_BEDROCK_FAILURES,
  MOCK_BEDROCK_STREAM_FAILURES,
  MOCK_FAILURE_NAMES,
  MOCK_PATHOLOGIES,
} from '../lib/testing/index.js';
import { parseScenario } from '../lib/testing/mock-scenarios.js';

const ROOT = join(__dirname, '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const source = (path: string) => readFileSync(join(ROOT, path), 'utf8');

/** The rows under a table's header line: each row's cells, without the separator line. */
function tableRows(header: string): string[][] {
  const lines = readme.split('\n');
  const at = lines.indexOf(header);
  if (at === -1) throw new Error(`README.md: no table with the header ${header}`);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(1, -1).split(' | ').map((cell) => cell.trim()));
  }
  return rows;
}

/** The first code span of each row's first cell: `slow[:<ms>]`. */
function firstColumn(header: string): string[] {
  return tableRows(header).map(([cell]) => /`([^`]+)`/.exec(cell!)![1]!);
}

/** `slow[:<ms>]` → `slow`; `<failure>` stays. */
function head(name: string): string {
  return name.startsWith('<') ? name : name.split(/[:[]/)[0]!;
}

/** The `case` labels of a `parseScenario` switch: the scenario names that take an argument or are answers. */
function caseLabels(path: string): string[] {
  const text = source(path);
  const body = text.slice(text.indexOf('function parseScenario('));
  const switchBody = body.slice(0, body.indexOf('\n}\n'));
  return [...switchBody.matchAll(/case '([^']+)':/g)].map((m) => m[1]!);
}

const sorted = (names: Iterable<string>) => [...new Set(names)].sort();

describe('README', () => {
  it('documents the walkthrough exactly as the example server runs it (npx tsx scripts/readme-walkthrough.ts --write)', () => {
    expect(readme).toBe(withWalkthrough(readme));
  });

  it('gives the two commands', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toContain('npm test');
  });

  it("lists exactly the example server's settings, and the walkthrough uses no other", () => {
    const server = source('example-server/server.ts');
    const read = [...server.matchAll(/env\['([A-Z_]+)'\]|integerSetting\(env, '([A-Z_]+)'/g)].map((m) => m[1] ?? m[2]!);
    const documented = firstColumn('| Setting | Default | Remarks |');
    expect(sorted(documented)).toEqual(sorted(read));
    expect(server).toContain("'--config'");
    expect(readme).toContain('npm start -- --config <file>');
    for (const step of WALKTHROUGH as readonly WalkthroughStep[]) {
      for (const name of Object.keys(step.serverEnv ?? {})) expect(documented).toContain(name);
    }
  });
});

describe('README: Testing your app', () => {
  const defaults = { slowChunkDelayMs: 200, retryAfterSeconds: 1, midstreamFailure: 'error-500' as const };

  it('lists every scenario of the OpenAI and Anthropic mocks, and only those', () => {
    const names = firstColumn('| Model name | `stream: true` | `stream: false` |');
    const expected = [...caseLabels('lib/testing/mock-scenarios.ts'), ...MOCK_PATHOLOGIES, '<failure>'];
    expect(sorted(names.map(head))).toEqual(sorted(expected));
    expect(sorted(firstColumn('| `<failure>` | OpenAI-compatible | Anthropic |').map(head))).toEqual(sorted(MOCK_FAILURE_NAMES));
  });

  it('spells every OpenAI/Anthropic scenario so that the mocks know it', () => {
    const spellings = [
      ...firstColumn('| Model name | `stream: true` | `stream: false` |'),
      ...firstColumn('| `<failure>` | OpenAI-compatible | Anthropic |'),
    ].flatMap((name) => {
      const concrete = name.replaceAll('<failure>', 'rate-limit:2').replace(/<(N|ms|s)>/g, '5');
      const optional = /^(.*)\[(.*)\]$/.exec(concrete);
      return optional ? [optional[1]!, optional[1]! + optional[2]!] : [concrete];
    });
    for (const name of spellings) expect([name, parseScenario(name, defaults)]).toEqual([name, expect.anything()]);
  });

  it('lists every scenario and failure of the Bedrock mock, and which failures exist in a stream', () => {
    const bedrock = source('lib/testing/mock-bedrock.ts');
    const pathologies = /const PATHOLOGIES = \[([^\]]*)\]/.exec(bedrock)![1]!.match(/'[^']+'/g)!.map((quoted) => quoted.slice(1, -1));
    const names = firstColumn('| Model id | ConverseStream | Converse |');
    expect(sorted(names.map(head))).toEqual(sorted([...caseLabels('lib/testing/mock-bedrock.ts'), ...pathologies, '<failure>']));
    const failures = tableRows('| `<failure>` | Status | Exception | Also in a stream |');
    expect(sorted(failures.map(([cell]) => head(/`([^`]+)`/.exec(cell!)![1]!)))).toEqual(sorted(MOCK_BEDROCK_FAILURES));
    const inStream = failures.filter((row) => row[3] === 'yes').map(([cell]) => head(/`([^`]+)`/.exec(cell!)![1]!));
    expect(sorted(inStream)).toEqual(sorted(MOCK_BEDROCK_STREAM_FAILURES));
  });

  it("describes DEFAULT_GUARDRAIL: its id, version, every trigger and what it masks", () => {
    const section = readme.slice(readme.indexOf('### The Bedrock guardrail emulator'), readme.indexOf('### A host app test'));
    const guardrail = DEFAULT_GUARDRAIL;
    expect(section).toContain(`\`${guardrail.id}\`, version \`${guardrail.version}\``);
    const phrases = [
      ...(guardrail.topics ?? []).flatMap((topic) => [topic.name, ...topic.phrases]),
      ...(guardrail.words ?? []),
      ...(guardrail.input?.contentFilters ?? []).flatMap((filter) => filter.triggers),
      guardrail.blockedInputMessaging,
      guardrail.blockedOutputsMessaging,
    ];
    for (const phrase of phrases) expect(section).toContain(`"${phrase}`);
    for (const [type, action] of Object.entries(guardrail.pii ?? {})) {
      expect(section).toContain(`\`${type}\``);
      if (action === 'ANONYMIZE') expect(section).toContain(`\`{${type}}\``);
    }
    for (const regex of guardrail.output?.regexes ?? []) expect(section).toContain(`Regex \`${regex.name}\``);
    expect(guardrail.regexes ?? []).toEqual([]);
    expect(guardrail.contentFilters ?? []).toEqual([]);
    expect(guardrail.output?.contentFilters ?? []).toEqual([]);
  });
});
