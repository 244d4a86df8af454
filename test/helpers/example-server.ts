/**
 * The example server as users run it: a child process on a free port, its output kept, and a streaming
 * client that can act in the middle of a response (to send a signal while a stream is open).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import type { RawResponse } from './http.js';

const ROOT = join(__dirname, '..', '..');
const READY = /listening on (http:\/\/\S+)/;
/** Variables the server reads; the test's own environment must not leak into them. */
const SERVER_VARIABLES = ['PORT', 'HOST', 'GATEWAY_CONFIG', 'GATEWAY_API_KEYS', 'SHUTDOWN_DEADLINE_MS', 'OTEL'];

export interface ExampleServerProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** The exit code (or the signal's name) once the process ended. */
  exited: Promise<number | string | null>;
  /** Kills the process if it still runs, and waits for it to end. */
  kill(): Promise<void>;
}

export interface ExampleServer extends ExampleServerProcess {
  /** The base URL the server printed. */
  url: string;
}

/**
 * Spawns `example-server/server.ts` through node with tsx's loader rather than the `tsx` binary, which runs
 * the script in a grandchild: signals and kills must reach the server process itself.
 */
export function spawnExampleServer(env: Record<string, string> = {}, args: string[] = []): ExampleServerProcess {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !SERVER_VARIABLES.includes(name)));
  const child = spawn(process.execPath, ['--import', 'tsx', 'example-server/server.ts', ...args], {
    cwd: ROOT,
    env: { ...inherited, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<number | string | null>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal)));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Spawns the server and resolves once it printed its URL; rejects (with its output) if it ends first. */
export async function startExampleServer(env: Record<string, string> = {}, args: string[] = [], timeoutMs = 20_000): Promise<ExampleServer> {
  const server = spawnExampleServer(env, args);
  try {
    const match = await waitForOutput(server, READY, timeoutMs);
    return { ...server, url: match[1]! };
  } catch (err) {
    await server.kill();
    throw err;
  }
}

/** Resolves with the match once the server's stdout matches `pattern`. */
export function waitForOutput(server: ExampleServerProcess, pattern: RegExp, timeoutMs = 5_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(server.stdout());
      if (!match) return;
      finish();
      resolve(match);
    };
    const fail = (why: string) => {
      finish();
      reject(new Error(`example server ${why} before printing ${pattern}.\nstdout: ${server.stdout()}\nstderr: ${server.stderr()}`));
    };
    const onExit = () => fail('exited');
    const timer = setTimeout(() => fail(`took over ${timeoutMs} ms`), timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      server.child.stdout!.off('data', check);
      server.child.off('close', onExit);
    };
    server.child.stdout!.on('data', check);
    server.child.once('close', onExit);
    check();
  });
}

export interface OpenStream {
  /** Resolves with the first bytes of the body, as soon as they arrive. */
  firstData: Promise<string>;
  /** The whole response once it ended. */
  response: Promise<RawResponse>;
}

/** POSTs a JSON body and reports the response's first bytes before the whole of it. */
export function openStream(baseUrl: string, path: string, body: object, headers: Record<string, string> = {}): OpenStream {
  let onFirst!: (text: string) => void;
  let onFirstError!: (err: Error) => void;
  const firstData = new Promise<string>((resolve, reject) => {
    onFirst = resolve;
    onFirstError = reject;
  });
  const response = new Promise<RawResponse>((resolve) => {
    const req = http.request(new URL(path, baseUrl), { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...headers } });
    req.on('error', (error) => {
      onFirstError(error);
      resolve({ status: 0, headers: {}, text: '', complete: false, error });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        if (chunks.length === 0) onFirst(chunk.toString('utf8'));
        chunks.push(chunk);
      });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), complete: res.complete }));
    });
    req.end(JSON.stringify(body));
  });
  return { firstData, response };
}
