import { readFileSync } from 'node:fs';
import { withWalkthrough } from '../scripts/readme-walkthrough.js';

describe('README', () => {
  const readme = readFileSync('README.md', 'utf8');

  it('documents the walkthrough exactly as the example server runs it (npx tsx scripts/readme-walkthrough.ts --write)', () => {
    expect(readme).toBe(withWalkthrough(readme));
  });

  it('gives the two commands', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toContain('npm test');
  });
});
