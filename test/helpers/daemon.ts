// Starts the real `cni-kit daemon` (dist/cli.cjs over the dist/bin bundles) as a process, in a
// network namespace of the test's choosing: the daemon's netns is "the host" of every call it
// serves, as on a node where it runs with hostNetwork. Its socket lives in a private temp folder;
// the env it returns points shims at it. stop() drains it with SIGTERM, kill() is SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli.cjs', import.meta.url));
export const BUNDLES = fileURLToPath(new URL('../../dist/bin/', import.meta.url));
export const SHIMS = fileURLToPath(new URL('../../dist/shim/', import.meta.url));

const TRAILER = '\n--cni-kit-shim--\n';

/** Writes a copy of a shim with its trailer's `socket=` and `fallback=` replaced. */
export function rebindShim(from: string, to: string, socket: string, fallback: string): void {
  const bytes = readFileSync(from);
  const at = bytes.lastIndexOf(TRAILER);
  if (at < 0) throw new Error(`${from} has no cni-kit shim trailer`);
  const fields = bytes
    .subarray(at + TRAILER.length)
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '' && l !== '--end--' && !l.startsWith('socket=') && !l.startsWith('fallback='));
  const trailer = `${TRAILER}${fields.join('\n')}\nfallback=${fallback}\nsocket=${socket}\n--end--\n`;
  writeFileSync(to, Buffer.concat([bytes.subarray(0, at), Buffer.from(trailer)]), { mode: 0o755 });
}

/** A running daemon process. */
export interface TestDaemon {
  socket: string;
  /** What a shim's environment needs to reach this daemon. */
  env: { CNI_KIT_DAEMON_SOCKET: string };
  pid: number;
  proc: ChildProcess;
  /** The daemon's stderr so far (JSON log lines). */
  log(): string;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

export interface StartDaemonOptions {
  /** Run inside this network namespace (a path such as /run/netns/x); default the caller's. */
  netns?: string | undefined;
  /** Bundle folder; default dist/bin. */
  plugins?: string | undefined;
  /** The socket; default a fresh private temp folder's daemon.sock. */
  socket?: string | undefined;
  extraArgs?: string[] | undefined;
  env?: Record<string, string> | undefined;
}

/** GET /<path> over a Unix socket; the HTTP status, or 0 when nothing answers. */
export function getStatus(socket: string, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path, method: 'GET', timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

const live = new Set<TestDaemon>();
process.once('exit', () => {
  for (const d of live) d.proc.kill('SIGKILL');
});

/** Starts a daemon and waits until /readyz answers 200 (at most 20 s). */
export async function startDaemon(opts: StartDaemonOptions = {}): Promise<TestDaemon> {
  let dir: string | undefined;
  let socket = opts.socket;
  if (!socket) {
    dir = mkdtempSync(join(tmpdir(), 'cni-kit-daemon-'));
    socket = join(dir, 'daemon.sock');
  }
  const args = [
    CLI,
    'daemon',
    '--plugins',
    opts.plugins ?? BUNDLES,
    '--socket',
    socket,
    ...(opts.extraArgs ?? []),
  ];
  const [cmd, argv] = opts.netns
    ? ['nsenter', [`--net=${opts.netns}`, process.execPath, ...args]]
    : [process.execPath, args];
  const proc = spawn(cmd as string, argv as string[], {
    env: { ...process.env, ...(opts.env ?? {}) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const cleanup = () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  const path = socket;
  const d: TestDaemon = {
    socket: path,
    env: { CNI_KIT_DAEMON_SOCKET: path },
    pid: proc.pid ?? 0,
    proc,
    log: () => err,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const code = await exited;
      live.delete(d);
      cleanup();
      return code;
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      live.delete(d);
      cleanup();
    },
  };
  live.add(d);
  const deadline = Date.now() + 20_000;
  while ((await getStatus(path, '/readyz')) !== 200) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      await d.kill();
      throw new Error(`cni-kit daemon did not become ready:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return d;
}
