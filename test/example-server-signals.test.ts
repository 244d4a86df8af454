/**
 * `npm start` as an orchestrator stops it: Docker, systemd and Kubernetes send SIGTERM (and a terminal or a
 * supervisor SIGINT) to the process they started, which is npm, not the server. The server must stop too,
 * never stay behind orphaned.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { rawRequest } from './helpers/http.js';

const ROOT = join(__dirname, '..');
const SERVER_VARIABLES = ['PORT', 'HOST', 'GATEWAY_CONFIG', 'GATEWAY_API_KEYS', 'SHUTDOWN_DEADLINE_MS', 'OTEL'];

function startWithNpm(): { url: Promise<string>; exited: Promise<number | string | null>; output: () => string; kill: (signal: NodeJS.Signals) => void } {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !SERVER_VARIABLES.includes(name) && !name.startsWith('npm_')));
  const child = spawn('npm', ['start', '--silent'], { cwd: ROOT, env: { ...env, PORT: '0', SHUTDOWN_DEADLINE_MS: '500' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm start printed no URL in time:\n${output}`)), 30_000);
    const onData = (text: string): void => {
      output += text;
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (output += text));
  });
  const exited = new Promise<number | string | null>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal)));
  return { url, exited, output: () => output, kill: (signal) => child.kill(signal) };
}

/** Resolves true once nothing answers at `url` any more, false if something still does after `withinMs`. */
async function stopsAnswering(url: string, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const res = await rawRequest(url, { method: 'GET', path: '/health' });
    if (res.status === 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

describe('npm start', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('stops the server when %s is sent to the npm process', async (signal) => {
    const npm = startWithNpm();
    const url = await npm.url;
    expect((await rawRequest(url, { method: 'GET', path: '/health' })).status).toBe(200);
    npm.kill(signal);
    expect(await stopsAnswering(url, 8_000)).toBe(true);
    await npm.exited;
    expect(npm.output()).toContain(`${signal}: finishing`);
    expect(npm.output()).toContain('stopped');
  }, 45_000);
});
