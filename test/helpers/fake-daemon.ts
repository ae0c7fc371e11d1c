// A stand-in for the cni-kit daemon: a Node HTTP server on a Unix socket in a temp dir that records
// every request and answers what the test scripts (a status and body, or raw bytes, or a broken
// connection). Used to test the native shim's side of the protocol without the real daemon.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The header lines as sent (names in their case, in order). */
  rawHeaders: string[];
  body: Buffer;
}

/** What the daemon does with one request. */
export type Answer =
  /** An HTTP reply (Content-Length and Connection: close, as the daemon sends). */
  | { status: number; body: string | Buffer; readBody?: boolean }
  /** These bytes on the connection, then close it (or keep it open). */
  | { raw: string | Buffer; keepOpen?: boolean }
  /** Close the connection without a reply (after reading the request). */
  | { destroy: true }
  /** Never answer. */
  | { hang: true };

export interface FakeDaemon {
  socket: string;
  requests: RecordedRequest[];
  /** Sets the answer to the following requests. */
  answer(a: Answer | ((req: RecordedRequest) => Answer)): void;
  close(): Promise<void>;
}

export async function startFakeDaemon(): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'cnikit-faked-'));
  const socket = join(dir, 'daemon.sock');
  const requests: RecordedRequest[] = [];
  let script: Answer | ((req: RecordedRequest) => Answer) = { status: 200, body: '' };
  const open = new Set<import('node:net').Socket>();

  const reply = (res: ServerResponse, a: Answer) => {
    if ('hang' in a) return;
    const sock = res.socket;
    if (!sock) return;
    if ('destroy' in a) {
      sock.destroy();
    } else if ('raw' in a) {
      if (a.keepOpen) sock.write(a.raw);
      else sock.end(a.raw);
    } else {
      const body = Buffer.from(a.body);
      res.writeHead(a.status, {
        'Content-Type': 'application/json',
        'Content-Length': body.length,
        Connection: 'close',
      });
      res.end(body, () => sock.destroy());
    }
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const rec: RecordedRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: Buffer.alloc(0),
    };
    const pick = () => (typeof script === 'function' ? script(rec) : script);
    const first = pick();
    // An early answer (a size limit) goes out before the body is read, as a daemon may do it.
    if ('status' in first && first.readBody === false) {
      requests.push(rec);
      reply(res, first);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      rec.body = Buffer.concat(chunks);
      requests.push(rec);
      reply(res, pick());
    });
  });
  server.on('connection', (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(socket, () => ok());
  });
  return {
    socket,
    requests,
    answer(a) {
      script = a;
    },
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((ok) => server.close(() => ok()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A socket file nobody listens on: a process binds and listens, then is killed, so the file stays
 * (what a daemon that crashed leaves behind).
 */
export async function staleSocket(dir: string): Promise<string> {
  const path = join(dir, 'stale.sock');
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((ok, fail) => {
    child.stdout.once('data', () => ok());
    child.once('exit', (code) => fail(new Error(`listener exited (${code}) before listening`)));
  });
  const gone = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGKILL');
  await gone;
  return path;
}
