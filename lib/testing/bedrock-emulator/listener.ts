/**
 * One loopback port serving HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge), told apart by the
 * connection preface (reference §6.3). The SDK's default client speaks h2c even to `http://` endpoints,
 * while NodeHttpHandler clients and curl speak HTTP/1.1, and both must work against the same URL.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export type EmulatorRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type EmulatorResponse = http.ServerResponse | http2.Http2ServerResponse;
export type RequestHandler = (req: EmulatorRequest, res: EmulatorResponse) => void;

export interface DualStackListener {
  readonly port: number;
  /** Destroys every open socket and HTTP/2 session, then stops listening. */
  close(): Promise<void>;
}

/** Every HTTP/2 connection starts with this preface (RFC 9113 §3.4); HTTP/1.1 never starts with "PRI". */
const H2_PREFACE_START = 'PRI';

export async function listenDualStack(handler: RequestHandler, port: number): Promise<DualStackListener> {
  const h1 = http.createServer(handler);
  const h2 = http2.createServer(handler);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();

  h2.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  // A client resetting the connection must not crash the test process.
  h2.on('sessionError', () => {});

  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.once('readable', () => dispatch(socket));
  });

  function dispatch(socket: net.Socket): void {
    // Loopback delivers the first segment whole, and 3 bytes are enough to tell the protocols apart.
    const head: Buffer | null = socket.read();
    if (head) socket.unshift(head);
    const isH2 = head?.subarray(0, 3).toString('latin1') === H2_PREFACE_START;
    (isH2 ? h2 : h1).emit('connection', socket);
  }

  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(port, '127.0.0.1', () => {
      front.off('error', reject);
      resolve();
    });
  });

  return {
    port: (front.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
        front.close(() => resolve());
      }),
  };
}
