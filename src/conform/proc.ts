// Child processes of the kit: plugin calls (in the node netns, in a process group of their own,
// killed as a group on timeout or abort) and the iproute2/iptables commands the kit runs itself.
import { spawn } from 'node:child_process';

/** How a process ended, with everything it printed. */
export interface ProcOutcome {
  /** Exit status; null when killed by a signal or never started. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Set when the process could not be started (e.g. ENOENT). */
  spawnError?: string;
  durationMs: number;
}

export interface ProcOptions {
  env?: NodeJS.ProcessEnv;
  stdin?: string;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

const MAX_OUTPUT = 8 * 1024 * 1024;

/**
 * Runs `file args` in a new process group (session) and collects its output. On timeout or abort
 * the whole group gets SIGKILL, so helpers a plugin started die with it.
 */
export function runProc(file: string, args: readonly string[], opts: ProcOptions): Promise<ProcOutcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let timedOut = false;
    let settled = false;
    const finish = (o: Omit<ProcOutcome, 'durationMs' | 'stdout' | 'stderr' | 'timedOut'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({
        ...o,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        durationMs: Date.now() - started,
      });
    };
    if (opts.signal?.aborted) {
      finish({ exitCode: null, signal: null, spawnError: 'aborted' });
      return;
    }
    const child = spawn(file, [...args], {
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // the group is already gone
      }
    };
    const onAbort = () => killGroup();
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, opts.timeoutMs);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (b: Buffer) => {
      if (outLen < MAX_OUTPUT) out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < MAX_OUTPUT) err.push(b);
      errLen += b.length;
    });
    // A plugin need not read stdin (VERSION); writing to a closed pipe is not an error here.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.stdin ?? '');
    child.on('error', (e) => finish({ exitCode: null, signal: null, spawnError: e.message }));
    child.on('close', (code, sig) => finish({ exitCode: code, signal: sig }));
  });
}

/** Runs a helper command; throws with its stderr when it fails. */
export async function mustRun(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number; signal?: AbortSignal | undefined } = {},
): Promise<string> {
  const r = await runProc(file, args, { timeoutMs: opts.timeoutMs ?? 20_000, signal: opts.signal });
  if (r.exitCode !== 0) {
    const why = r.spawnError ?? (r.timedOut ? 'timed out' : r.stderr.trim() || `exit ${r.exitCode}`);
    throw new Error(`${file} ${args.join(' ')}: ${why}`);
  }
  return r.stdout;
}

/** Describes how a process ended, for report details. */
export function describeExit(o: ProcOutcome): string {
  if (o.spawnError) return `could not run: ${o.spawnError}`;
  if (o.timedOut) return `timed out after ${o.durationMs} ms (process group killed)`;
  if (o.signal) return `killed by ${o.signal}`;
  return `exit status ${o.exitCode}`;
}

/** The first line of a text, shortened for a report cell. */
export function brief(text: string, max = 160): string {
  const t = text.trim().replace(/\s+/g, ' ');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}
