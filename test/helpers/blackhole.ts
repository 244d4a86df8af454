/**
 * A loopback port where TCP connects hang (the accept queue is full and nobody accepts), to test connect
 * timeouts without sending traffic anywhere but 127.0.0.1. Node always accepts, so a tiny python3 process
 * (on every machine this project runs on) holds the listening socket.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const SCRIPT = `
import socket, time
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(0)
held = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(('127.0.0.1', s.getsockname()[1]))
    except BlockingIOError: pass
    held.append(c)
print(s.getsockname()[1], flush=True)
time.sleep(600)
`;

export interface Blackhole {
  port: number;
  close(): void;
}

export function startBlackhole(): Promise<Blackhole> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn('python3', ['-c', SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', reject);
    child.stdout!.once('data', (data: Buffer) => resolve({ port: Number(data.toString().trim()), close: () => child.kill('SIGKILL') }));
  });
}
