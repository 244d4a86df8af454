/**
 * A real `redis-server` for tests: started on a free loopback port without persistence, killed and
 * restarted on the same port to test outages. The suites that need it use `describeWithRedis`: it skips them
 * (saying why) when redis-server is not installed locally, and fails them on CI, where it must be.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';

export interface RedisServer {
  port: number;
  /** SIGKILLs the server (an outage: connections drop, nothing answers on the port). */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty, and waits until it answers PING. */
  restart(): Promise<void>;
  /**
   * SIGSTOPs the server (a hung Redis: connections stay open and the kernel still accepts and buffers,
   * but nothing answers) until `resume()`.
   */
  pause(): void;
  /** SIGCONTs a paused server; it answers everything buffered meanwhile. */
  resume(): void;
  /** Kills it for good (afterAll). */
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 5000;

/** The redis-server executable on PATH, if any. */
export function findRedisServer(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

const redisServerBinary = findRedisServer();

function chooseDescribe(): jest.Describe {
  if (redisServerBinary) return describe;
  if (process.env['CI']) {
    throw new Error('redis-server is not on PATH, and CI must run the Redis store tests: install it (.ci/redis.sh).');
  }
  console.warn('redis-server is not on PATH: skipping the Redis store tests (install it: apt-get install redis-server).');
  return describe.skip;
}

/** `describe` when redis-server is installed; `describe.skip` locally when not; an error on CI when not. */
export const describeWithRedis: jest.Describe = chooseDescribe();

export async function startRedisServer(): Promise<RedisServer> {
  if (!redisServerBinary) throw new Error('redis-server is not on PATH');
  const binary = redisServerBinary;
  const port = await freePort();
  let child: ChildProcess | undefined = await launch(binary, port);

  const signal = (name: 'SIGSTOP' | 'SIGCONT'): void => {
    if (!child?.pid) throw new Error('redis-server is not running');
    process.kill(child.pid, name);
  };
  const kill = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (running) await killProcess(running);
  };
  return {
    port,
    kill,
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    restart: async () => {
      await kill();
      child = await launch(binary, port);
    },
    stop: kill,
  };
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function launch(binary: string, port: number): Promise<ChildProcess> {
  // No RDB snapshots or AOF: a restart must come back empty, like a lost cache, and write nothing to disk.
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  try {
    await waitForPong(port, child);
  } catch (err) {
    await killProcess(child);
    throw new Error(`redis-server did not start on port ${port}: ${(err as Error).message}\n${output}`);
  }
  // Drain but drop its log from here on: the pipes must not fill up.
  child.stdout?.off('data', collect).resume();
  child.stderr?.off('data', collect).resume();
  return child;
}

async function waitForPong(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode})`);
    if (await answersPing(port)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no PONG within ${STARTUP_TIMEOUT_MS} ms`);
}

/** One inline PING over a raw socket: no client library, no reconnection to clean up. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL'); // also ends a SIGSTOPped server
  });
}
