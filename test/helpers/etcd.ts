// A throwaway etcd server for tests and benches: a real /usr/bin/etcd on free loopback ports with
// a temp data dir, so suites running side by side never share state.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Path of the etcd binary the harness runs. */
export const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';

/** True when an etcd binary is installed, so tests can `ctx.skip` otherwise. */
export function hasEtcd(): boolean {
  return existsSync(ETCD_BIN);
}

/** A running test etcd: its client URL and a stop function that kills it and removes its data. */
export interface TestEtcd {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts etcd on two free loopback ports and resolves once `/health` answers true. */
export async function startEtcd(tag = 'cnikit'): Promise<TestEtcd> {
  const dataDir = mkdtempSync(join(tmpdir(), `${tag}-etcd-${process.pid}-`));
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const name = `${tag}${process.pid}`;
  // A shell guardian holds etcd and kills it when our stdin pipe closes, so a test worker that dies
  // (even by SIGKILL) never leaves an etcd behind.
  const child: ChildProcess = spawn(
    '/bin/sh',
    [
      '-c',
      '"$0" "$@" & pid=$!; read _ignored; kill -9 $pid 2>/dev/null; wait $pid',
      ETCD_BIN,
      '--name',
      name,
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      url,
      '--advertise-client-urls',
      url,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `${name}=${peer}`,
      // Tests do not need durability across power loss; skipping fsync keeps 2 shared cores usable.
      '--unsafe-no-fsync',
      '--log-level',
      'error',
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  const stop = async (): Promise<void> => {
    if (!exited) {
      const done = new Promise((r) => child.once('exit', r));
      child.stdin?.end();
      await done;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      const res = await fetch(`${url}/health`);
      const body = (await res.json()) as { health?: string };
      if (body.health === 'true') return { url, dataDir, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`etcd did not become healthy on ${url}: ${stderr.trim()}`);
}
