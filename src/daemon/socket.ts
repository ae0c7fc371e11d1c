// The daemon's socket files: a private folder, a stale socket replaced, a live one left alone.
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import type { DaemonLogger } from './log.js';

/**
 * Makes the socket's folder private (0700, ours) and clears a stale socket file. A shared folder
 * (other owner, or writable by others, as /tmp) is refused rather than tightened.
 */
export function prepareSocketPath(path: string, logger: DaemonLogger): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new Error(
      `socket folder ${dir} is ${st.uid !== uid ? `owned by uid ${st.uid}` : 'writable by others'}; the daemon needs a folder of its own (mode 0700) so that only its owner can call it: choose a socket path in a private folder such as /run/cni-kit/`,
    );
  }
  if ((st.mode & 0o777) !== 0o700) {
    chmodSync(dir, 0o700);
    logger.log('info', { msg: 'socket folder made private', dir, mode: '0700' });
  }
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(path);
  } catch {
    existing = undefined;
  }
  if (!existing) return;
  if (!existing.isSocket()) {
    throw new Error(`${path} exists and is not a socket; remove it or choose another --socket path`);
  }
  unlinkSync(path);
  logger.log('info', { msg: 'replaced a socket file left by an earlier daemon', socket: path });
}

/**
 * Refuses a socket path another process still serves: replacing its file would not stop it, and
 * when it shut down later, closing its listener would unlink the file, which by then is ours.
 */
export async function refuseLiveSocket(path: string): Promise<void> {
  try {
    if (!lstatSync(path).isSocket()) return;
  } catch {
    return;
  }
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.setTimeout(2_000, () => {
      s.destroy();
      resolve(true);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    // ECONNREFUSED: nothing listens, the file is stale.
    s.once('error', () => resolve(false));
  });
  if (live) {
    throw new Error(
      `${path}: a daemon is listening there; stop it first (SIGTERM lets it finish its calls) or choose another --socket path`,
    );
  }
}
