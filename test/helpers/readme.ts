/**
 * Code blocks of the README that tests run as written (a block between `<!-- NAME:start -->` and
 * `<!-- NAME:end -->`), so an example in the docs cannot drift from what works.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The one fenced `lang` block between the `name` markers of README.md. */
export function readmeBlock(name: string, lang: string): string {
  const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
  const startMarker = `<!-- ${name}:start -->`;
  const endMarker = `<!-- ${name}:end -->`;
  const start = readme.indexOf(startMarker);
  const end = readme.indexOf(endMarker);
  if (start === -1 || end < start) throw new Error(`README.md needs the ${startMarker} … ${endMarker} markers`);
  const block = new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\`$`, 'm').exec(readme.slice(start + startMarker.length, end));
  if (!block) throw new Error(`README.md: no \`\`\`${lang} block between the ${name} markers`);
  return block[1]!;
}
