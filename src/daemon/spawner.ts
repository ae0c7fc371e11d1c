// The daemon's process helper: a small Node process that starts the plugin processes (delegates)
// of every call in the daemon. Node starts a child with fork() + exec(), and fork() copies the page
// tables of the whole parent on the event loop: about 1 ms from a fresh process, 4 ms and more from
// a daemon holding 160 MiB (measured; worse on a loaded machine), paid for every delegate of every
// call. The helper holds a few MiB, so a start costs it about 1 ms, off the daemon's event loop.
// It runs each process to its end with the semantics of execPlugin (stdin written and closed,
// bounded stdout and stderr, a process group of its own when killable, SIGTERM then SIGKILL on
// timeout or abort, 500 ms for grandchildren holding the pipes) and answers with the outcome. When
// it is gone, calls start their processes themselves, and the next call starts a new helper.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  PROCESS_RUNNER_KEY,
  type ProcessRunner,
  type ProcessRunOutcome,
  type ProcessRunRequest,
} from '../delegate/exec.js';

/** The helper's program (run with `node -e`): requests in, outcomes out, over the IPC channel. */
const HELPER = `
const { spawn } = require('node:child_process');
const running = new Map();
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  if (m.abort !== undefined) {
    running.get(m.abort)?.();
    return;
  }
  const out = [];
  let outLen = 0;
  let err = '';
  let timedOut = false;
  let aborted = false;
  let exit;
  let settled = false;
  const timers = [];
  const done = (msg) => {
    if (settled) return;
    settled = true;
    for (const t of timers) clearTimeout(t);
    running.delete(m.id);
    process.send({ id: m.id, outcome: msg });
  };
  let child;
  try {
    child = spawn(m.file, m.args, { env: m.env, stdio: ['pipe', 'pipe', 'pipe'], detached: m.detached });
  } catch (e) {
    return done({ kind: 'error', code: e.code, message: e.message });
  }
  const killGroup = (sig) => {
    if (child.pid === undefined) return;
    try {
      if (!m.detached) throw new Error('no process group');
      process.kill(-child.pid, sig);
    } catch {
      try { child.kill(sig); } catch {}
    }
  };
  const stop = () => {
    killGroup('SIGTERM');
    const t = setTimeout(() => killGroup('SIGKILL'), m.killGraceMs);
    timers.push(t);
  };
  running.set(m.id, () => { aborted = true; stop(); });
  if (m.timeoutMs > 0) timers.push(setTimeout(() => { timedOut = true; stop(); }, m.timeoutMs));
  child.stdout.on('data', (b) => { outLen += b.length; if (outLen <= m.maxStdout) out.push(b); });
  child.stderr.on('data', (b) => {
    err += b.toString('utf8');
    if (err.length > m.maxStderr) err = err.slice(-m.maxStderr);
  });
  child.stdin.on('error', () => {});
  child.stdin.end(Buffer.from(m.stdin));
  child.on('error', (e) => done({ kind: 'error', code: e.code, message: e.message }));
  const finish = () => {
    if (!exit) return;
    done({ kind: 'exit', code: exit.code, signal: exit.signal, timedOut, aborted,
      stdout: Buffer.concat(out).toString('utf8'), stderr: err });
  };
  child.on('exit', (code, signal) => {
    exit = { code, signal };
    timers.push(setTimeout(() => { child.stdout.destroy(); child.stderr.destroy(); finish(); }, 500));
  });
  child.on('close', finish);
});
`;

/** A running process helper. */
export interface ProcessHelper {
  readonly runner: ProcessRunner;
  /** The helper's pid (undefined while none runs). */
  pid(): number | undefined;
  /** Processes started through it so far. */
  started(): number;
  /** Stops the helper (processes still running keep running); later runs start processes locally. */
  close(): void;
}

/** Starts the helper lazily, on the first run. */
export function createProcessHelper(): ProcessHelper {
  let child: ChildProcess | undefined;
  let closed = false;
  let seq = 0;
  let count = 0;
  const pending = new Map<number, (o: ProcessRunOutcome) => void>();

  const release = () => {
    // Ref'd only while something waits on it: an idle helper never keeps the daemon alive.
    if (pending.size === 0) {
      child?.unref();
      (child?.channel as { unref?: () => void } | undefined)?.unref?.();
    }
  };
  const ensure = (): ChildProcess | undefined => {
    if (closed) return undefined;
    if (child?.connected) return child;
    const c = spawn(process.execPath, ['--max-semi-space-size=1', '-e', HELPER], {
      env: {},
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    c.on('message', (m: { id: number; outcome: ProcessRunOutcome }) => {
      const resolve = pending.get(m.id);
      pending.delete(m.id);
      resolve?.(m.outcome);
      release();
    });
    const gone = (why: string) => {
      if (child === c) child = undefined;
      // Runs still waiting cannot learn their outcome any more.
      for (const [id, resolve] of pending) {
        pending.delete(id);
        resolve({ kind: 'error', code: 'EHELPER', message: `the daemon's process helper ${why}` });
      }
    };
    c.on('exit', (code, sig) => gone(`exited (${sig ?? code})`));
    c.on('error', (e) => gone(`failed: ${e.message}`));
    child = c;
    return c;
  };

  const runner: ProcessRunner = {
    protocol: 1,
    run(req: ProcessRunRequest, signal?: AbortSignal) {
      const c = ensure();
      if (!c) return undefined;
      const id = ++seq;
      count += 1;
      return new Promise<ProcessRunOutcome>((resolve) => {
        const onAbort = () => {
          if (c.connected) c.send({ abort: id });
        };
        pending.set(id, (o) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(o);
        });
        c.ref();
        (c.channel as { ref?: () => void } | undefined)?.ref?.();
        c.send({ id, ...req, stdin: Buffer.from(req.stdin) });
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
  return {
    runner,
    pid: () => child?.pid,
    started: () => count,
    close() {
      closed = true;
      if (child?.connected) child.disconnect();
      child?.unref();
    },
  };
}

/**
 * Makes `helper` start the plugin processes of every SDK copy in this process (the daemon and the
 * bundles it loaded); returns its removal. A runner already registered (another daemon in this
 * process) is left in place.
 */
export function registerProcessHelper(helper: ProcessHelper): () => void {
  const slot = globalThis as Record<symbol, ProcessRunner | undefined>;
  if (slot[PROCESS_RUNNER_KEY]) return () => {};
  slot[PROCESS_RUNNER_KEY] = helper.runner;
  return () => {
    if (slot[PROCESS_RUNNER_KEY] === helper.runner) delete slot[PROCESS_RUNNER_KEY];
  };
}
