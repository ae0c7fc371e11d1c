// Runs a plugin binary with whereabouts' flat file at its standard place,
// /etc/cni/net.d/whereabouts.d/whereabouts.conf, without touching the machine's /etc: the binary
// runs in a private mount namespace (`unshare -m`) in which a directory of the test's own is bind
// mounted over /etc/cni/net.d/whereabouts.d (or, where that does not exist, over /etc/cni/net.d with
// a whereabouts.d inside). The mount disappears with the process.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The directory a whereabouts.d of the test's own is mounted over, or why it cannot be. */
export function flatMountPoint(): { target: string; nested: boolean } | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root for unshare -m and mount --bind' };
  if (spawnSync('unshare', ['-m', 'true']).status !== 0) return { skip: 'unshare -m does not work here' };
  if (existsSync('/etc/cni/net.d/whereabouts.d'))
    return { target: '/etc/cni/net.d/whereabouts.d', nested: false };
  if (existsSync('/etc/cni/net.d')) return { target: '/etc/cni/net.d', nested: true };
  return { skip: 'no /etc/cni/net.d to mount a whereabouts.d over' };
}

/**
 * Prepares `<root>/whereabouts.d` holding `whereabouts.conf` = `flat` (undefined: no file) and returns
 * the directory to mount for `mount` (flatMountPoint()).
 */
export function flatDir(root: string, flat: unknown, mount: { nested: boolean }): string {
  const d = join(root, 'whereabouts.d');
  mkdirSync(d, { recursive: true });
  if (flat !== undefined) {
    writeFileSync(join(d, 'whereabouts.conf'), typeof flat === 'string' ? flat : JSON.stringify(flat));
  }
  return mount.nested ? root : d;
}

/**
 * Runs `bin` with `env` and `stdin` in a private mount namespace where `source` is mounted at
 * `target`. Asynchronous, so an API server in the test's own process keeps answering; killed with
 * its process group after 20 s.
 */
export function runWithFlatFile(
  bin: string,
  env: Record<string, string>,
  stdin: string,
  mount: { source: string; target: string },
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount --bind "$0" "$1" && exec "$2"',
        mount.source,
        mount.target,
        bin,
      ],
      { env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {}
    }, 20_000);
    p.on('error', reject);
    p.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    p.stdin.on('error', () => {}); // a plugin killed before it read its config
    p.stdin.end(stdin);
  });
}
