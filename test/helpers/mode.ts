// The plugin test matrix: the same integration tests run the plugins in exec mode (dist/bin, a Node
// process per call) and in daemon mode (CNI_KIT_PLUGIN_MODE=daemon: the native shim per call,
// forwarding to a cni-kit daemon). A test asks for the folder a runtime on a node would exec
// plugins from, `pluginDir(node)`; in daemon mode that folder holds shims bound to a daemon
// running in that node's network namespace (the daemon's netns is the host side of every call, as
// on a real node where it runs with hostNetwork), started on first use and stopped after the file.
// Their exec fallback points nowhere: a call that does not reach the daemon fails instead of
// passing quietly in exec mode.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { BUNDLES, CLI, rebindShim, SHIMS } from './daemon.js';

export { rebindShim };

import { BIN_DIR } from './plugin.js';

/** Which way plugins run in this test process. */
export const PLUGIN_MODE: 'exec' | 'daemon' =
  process.env.CNI_KIT_PLUGIN_MODE === 'daemon' ? 'daemon' : 'exec';
export const DAEMON_MODE = PLUGIN_MODE === 'daemon';

interface NodeDaemon {
  dir: string;
  proc: ChildProcess;
  logFile: string;
  mountNs: string | undefined;
}
const daemons = new Map<string, NodeDaemon>();

const netnsPath = (node: string) => (node.startsWith('/') ? node : `/run/netns/${node}`);

/**
 * The folder (with a trailing slash) a runtime on `node` execs plugins from: dist/bin in exec
 * mode, shims bound to that netns's daemon in daemon mode. `node` is a netns name or path;
 * undefined means the test process's own netns. `mountNs` runs the daemon in that mount
 * namespace too (a runtime that lives in one, such as the podman lab's).
 */
export function pluginDir(node?: string, opts: { mountNs?: string } = {}): string {
  if (!DAEMON_MODE) return BIN_DIR;
  const path = node === undefined ? '/proc/self/ns/net' : netnsPath(node);
  const mnt = opts.mountNs;
  const key = `${statSync(path).dev}:${statSync(path).ino}${mnt ? `:${statSync(mnt).ino}` : ''}`;
  const hit = daemons.get(key);
  if (hit && hit.proc.exitCode === null && hit.proc.signalCode === null) return hit.dir;
  const work = mkdtempSync(join(tmpdir(), 'cni-kit-node-daemon-'));
  const dir = join(work, 'bin/');
  mkdirSync(dir);
  const socketDir = join(work, 'run');
  mkdirSync(socketDir, { mode: 0o700 });
  const socket = join(socketDir, 'daemon.sock');
  for (const type of readdirSync(SHIMS)) {
    if (type.startsWith('.')) continue;
    rebindShim(
      join(SHIMS, type),
      join(dir, type),
      socket,
      join(work, 'no-exec-fallback-in-daemon-mode', type),
    );
  }
  // Go's plugins beside ours stay reachable through CNI_PATH lists the tests build themselves.
  const logFile = join(work, 'daemon.log');
  const out = openSync(logFile, 'a');
  const args = [CLI, 'daemon', '--plugins', BUNDLES, '--socket', socket, '--log-level', 'info'];
  // With a mount namespace (a podman lab's), the daemon sees what the runtime there sees.
  const ns = [...(mnt ? [`--mount=${mnt}`] : []), ...(node === undefined ? [] : [`--net=${path}`])];
  const proc =
    ns.length === 0
      ? spawn(process.execPath, args, { stdio: ['ignore', out, out] })
      : spawn('nsenter', [...ns, process.execPath, ...args], { stdio: ['ignore', out, out] });
  closeSync(out);
  const d: NodeDaemon = { dir, proc, logFile, mountNs: mnt };
  daemons.set(key, d);
  // Synchronous wait, so that tests with synchronous helpers can ask for the folder anywhere.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const probe = spawnSync(process.execPath, [CLI, 'daemon', '--probe', 'readyz', '--socket', socket], {
      stdio: 'ignore',
    });
    if (probe.status === 0) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`the node daemon did not start:\n${readFileSync(logFile, 'utf8')}`);
    }
    spawnSync('sleep', ['0.05']);
  }
  return dir;
}

/** The log of the daemon serving `node` (daemon mode), for a test's failure message. */
export function daemonLog(node?: string): string {
  const path = node === undefined ? '/proc/self/ns/net' : netnsPath(node);
  const d = daemons.get(`${statSync(path).dev}:${statSync(path).ino}`);
  return d ? readFileSync(d.logFile, 'utf8') : '';
}

/**
 * Stops the daemons (SIGTERM, then SIGKILL after 10 s) and removes their folders; `mountNs` limits
 * it to the daemons of that mount namespace (a podman lab stops its own before its clean-up).
 */
export async function stopPluginDaemons(mountNs?: string): Promise<void> {
  const all = [...daemons.entries()].filter(([, d]) => mountNs === undefined || d.mountNs === mountNs);
  for (const [k] of all) daemons.delete(k);
  await Promise.all(
    all.map(async ([, d]) => {
      if (d.proc.exitCode === null && d.proc.signalCode === null) {
        const exited = new Promise((r) => d.proc.once('exit', r));
        d.proc.kill('SIGTERM');
        const t = setTimeout(() => d.proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(join(d.dir, '..'), { recursive: true, force: true });
    }),
  );
}

if (DAEMON_MODE) afterAll(() => stopPluginDaemons(), 30_000);
