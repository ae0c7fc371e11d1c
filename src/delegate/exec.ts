// Running one plugin process the way libcni does, with what libcni lacks: timeouts and abort that
// kill the whole process group, ETXTBSY retries that end in an error, and failures that quote
// stdout, stderr and the exit (execa-style). One file past ~400 lines on purpose: the run, the
// failure classification and the exec-and-parse path share the process facts they report.
import { type LocalRun, localPluginLookups } from '../plugin/host.js';
import { type Command, withDelegationStep } from '../spec/call.js';
import { CniError, ErrorCode, isCniErrorJson } from '../spec/errors.js';
import { parseResult } from '../spec/result/convert.js';
import type { AnyResult } from '../spec/result/types.js';

// Loaded on first use: node:child_process costs a plugin ~2 ms of start-up, and most calls
// (VERSION, plugins whose IPAM runs in-process) never exec anything.
const childProcess = () => process.getBuiltinModule('node:child_process');

/**
 * The registered-symbol global under which a long-lived host (the daemon) offers to start plugin
 * processes for every SDK copy in it (each bundle carries its own): from a process holding
 * hundreds of MiB, fork() copies page tables for every call (about 4 ms at 160 MiB, on the event
 * loop); a small helper process starts them instead. Plain objects only cross it.
 */
export const PROCESS_RUNNER_KEY: unique symbol = Symbol.for('cni-kit.process-runner') as never;

/** One plugin process for a ProcessRunner to run to its end. */
export interface ProcessRunRequest {
  file: string;
  args: string[];
  env: Record<string, string>;
  stdin: Uint8Array;
  /** A process group of its own, killed as a whole (see runOnce). */
  detached: boolean;
  /** 0: no limit. */
  timeoutMs: number;
  killGraceMs: number;
  maxStdout: number;
  maxStderr: number;
}

/** How a ProcessRunner's run ended: the process exited, or it could not be started (errno code). */
export type ProcessRunOutcome =
  | {
      kind: 'exit';
      code: number | null;
      signal: NodeJS.Signals | null;
      timedOut: boolean;
      aborted: boolean;
      stdout: string;
      stderr: string;
    }
  | { kind: 'error'; code: string | undefined; message: string };

/** What a host registers under PROCESS_RUNNER_KEY. */
export interface ProcessRunner {
  protocol: 1;
  /** undefined: not available now (the caller starts the process itself). */
  run(req: ProcessRunRequest, signal?: AbortSignal): Promise<ProcessRunOutcome> | undefined;
}

/** Options for running one plugin process. */
export interface ExecOptions {
  /**
   * Kill the plugin after this many milliseconds (SIGTERM, then SIGKILL after `killGraceMs`); 0
   * means no limit. Default: CNI_KIT_EXEC_TIMEOUT_MS from the plugin's environment, else
   * DEFAULT_EXEC_TIMEOUT_MS (libcni has none, so a hung delegate hangs the pod for ever).
   */
  timeoutMs?: number | undefined;
  /** Time between SIGTERM and SIGKILL on timeout or abort. Default 2000 ms. */
  killGraceMs?: number | undefined;
  /** Aborting kills the plugin the same way a timeout does. */
  signal?: AbortSignal | undefined;
  /** Where the plugin's stderr is copied as it arrives; default process.stderr, null drops it. */
  stderr?: NodeJS.WritableStream | null | undefined;
  /** Extra runs after a "text file busy" (ETXTBSY) spawn failure. Default 5, like libcni. */
  busyRetries?: number | undefined;
  /** Delay between ETXTBSY retries. Default 1000 ms. */
  busyRetryDelayMs?: number | undefined;
  /**
   * Run the plugin chrooted into this directory (multus thick mode's `chrootDir`: the host's root
   * mounted in the daemon's container), through chroot(8); `call.path` is then the path inside it.
   */
  chroot?: string | undefined;
}

/** One plugin process to run: where it is, what it is called, and what it gets. */
export interface ExecCall {
  /** Absolute path of the plugin binary. */
  path: string;
  /** Plugin type, for messages; defaults to the file name. */
  type?: string | undefined;
  /** Network name, for messages. */
  name?: string | undefined;
  command: Command;
  stdin: string | Uint8Array;
  /** The complete environment of the plugin (see buildCniEnv / buildDelegateEnv). */
  env: Readonly<Record<string, string>>;
}

/** What a successful plugin run produced. */
export interface ExecOutput {
  stdout: string;
  stderr: string;
}

/** How a plugin process ended. */
export interface ExitInfo {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
}

/** A CniError from running a plugin: carries the process facts a caller needs to diagnose it. */
export class PluginExecError extends CniError {
  /** Plugin type and path, verb, and how the process ended. */
  readonly plugin: { type: string; name?: string; path: string; command: Command };
  readonly exit: ExitInfo | undefined;
  readonly stdout: string;
  readonly stderr: string;
  /** The plugin's own message (from its error JSON) or our description of what went wrong. */
  readonly reason: string;

  constructor(
    code: number,
    reason: string,
    call: ExecCall,
    facts: {
      exit?: ExitInfo | undefined;
      stdout?: string | undefined;
      stderr?: string | undefined;
      details?: string | undefined;
      cause?: unknown;
    },
  ) {
    const type = call.type ?? baseName(call.path);
    super(code, formatMessage(type, call, reason, facts.exit), facts.details, { cause: facts.cause });
    this.plugin = { type, path: call.path, command: call.command, ...(call.name ? { name: call.name } : {}) };
    this.exit = facts.exit;
    this.stdout = facts.stdout ?? '';
    this.stderr = facts.stderr ?? '';
    this.reason = reason;
  }
}

/** The default limit of one plugin run: above the 60 s an IPAM lock may be waited for. */
export const DEFAULT_EXEC_TIMEOUT_MS = 120_000;

/** The environment variable that sets the default limit of plugin runs (milliseconds, 0 = none). */
export const EXEC_TIMEOUT_ENV = 'CNI_KIT_EXEC_TIMEOUT_MS';

/** The limit for one run: the option, else the call's environment, else the default. */
export function execTimeout(call: Pick<ExecCall, 'env'>, opts: Pick<ExecOptions, 'timeoutMs'>): number {
  if (opts.timeoutMs !== undefined) return Math.max(0, opts.timeoutMs);
  const fromEnv = call.env[EXEC_TIMEOUT_ENV];
  if (fromEnv !== undefined && /^\d+$/.test(fromEnv.trim())) return Number(fromEnv.trim());
  return DEFAULT_EXEC_TIMEOUT_MS;
}

const MAX_QUOTE = 1000;
const MAX_STDERR_KEEP = 64 * 1024;
const MAX_STDOUT = 64 * 1024 * 1024;

/** Quotes process output for a message: trimmed, JSON-escaped, long text cut in the middle. */
export function quoteOutput(s: string, max = MAX_QUOTE): string {
  let t = s.trim();
  if (t.length > max) {
    const half = Math.floor(max / 2);
    t = `${t.slice(0, half)} …[${t.length - max} chars cut]… ${t.slice(-half)}`;
  }
  return JSON.stringify(t);
}

/** Describes how a process ended: "exit status 1", "killed by SIGKILL", "timed out after 5000 ms…". */
export function describeExit(exit: ExitInfo | undefined, timeoutMs?: number): string {
  if (!exit) return 'did not start';
  if (exit.timedOut)
    return `timed out${timeoutMs !== undefined ? ` after ${timeoutMs} ms` : ''} and was killed (${exit.signal ?? `exit status ${exit.exitCode}`})`;
  if (exit.aborted) return `was aborted and killed (${exit.signal ?? `exit status ${exit.exitCode}`})`;
  if (exit.signal) return `killed by ${exit.signal}`;
  return `exit status ${exit.exitCode}`;
}

function formatMessage(type: string, call: ExecCall, reason: string, exit: ExitInfo | undefined): string {
  const name = call.name ? ` name=${JSON.stringify(call.name)}` : '';
  const how = exit ? `, ${describeExit(exit)}` : '';
  return `plugin type=${JSON.stringify(type)}${name} failed (${call.command.toLowerCase()}): ${reason} [${call.path}${how}]`;
}

function baseName(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? p : p.slice(i + 1);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/**
 * Runs a plugin and returns its stdout when it exits 0. Every failure is a PluginExecError:
 * error JSON on stdout keeps the plugin's code; anything else quotes stdout, stderr and the exit.
 * "Text file busy" spawn failures are retried, and running out of retries is an error (libcni
 * returns empty success then).
 */
export async function execPlugin(call: ExecCall, opts: ExecOptions = {}): Promise<ExecOutput> {
  const retries = opts.busyRetries ?? 5;
  // Every plugin cni-kit runs learns the chain of calls above it, so a delegation loop is refused
  // a few levels down instead of forking until the process table is full.
  call = { ...call, env: withDelegationStep(call.env, call.type ?? baseName(call.path), call.command) };
  opts = { ...opts, timeoutMs: execTimeout(call, opts) };
  // Inside the daemon, a shim that would forward to this very daemon runs in-process instead.
  for (const lookup of localPluginLookups()) {
    const local = lookup(
      opts.chroot ? `${opts.chroot.replace(/\/+$/, '')}${call.path}` : call.path,
      call.env,
    );
    if (local) return runInProcess(local, call, opts);
  }
  for (let attempt = 0; ; attempt++) {
    if (opts.signal?.aborted) {
      throw new PluginExecError(ErrorCode.Internal, 'aborted before the plugin was started', call, {
        cause: opts.signal.reason,
      });
    }
    try {
      return await runOnce(call, opts);
    } catch (err) {
      if (isBusy(err) && attempt < retries) {
        await sleep(opts.busyRetryDelayMs ?? 1000, opts.signal);
        continue;
      }
      if (err instanceof PluginExecError) throw err;
      const e = err as NodeJS.ErrnoException;
      const busy = isBusy(err);
      throw new PluginExecError(
        busy ? ErrorCode.TryAgainLater : ErrorCode.IOFailure,
        busy
          ? `could not start the plugin: text file busy (ETXTBSY) after ${attempt + 1} attempts; the binary is still being written, retry once the install has finished`
          : `could not start the plugin: ${e.code ?? ''} ${e.message}`.replace(/\s+/g, ' '),
        call,
        { cause: err },
      );
    }
  }
}

/**
 * A delegate run in this process (see LOCAL_PLUGINS_KEY): the same outcome as its exec, with the
 * same timeout and abort semantics, except that a call past its time is abandoned (its signal
 * aborted) rather than killed.
 */
async function runInProcess(run: LocalRun, call: ExecCall, opts: ExecOptions): Promise<ExecOutput> {
  const ac = new AbortController();
  let timedOut = false;
  let aborted = false;
  const onAbort = () => {
    aborted = true;
    ac.abort(opts.signal?.reason);
  };
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const forward = opts.stderr === undefined ? process.stderr : opts.stderr;
  const lines: string[] = [];
  try {
    const running = run({
      env: { ...call.env },
      stdin: call.stdin,
      signal: ac.signal,
      log: (line) => {
        lines.push(line);
        forward?.write(`${line}\n`);
      },
    });
    const limit = opts.timeoutMs ?? 0;
    const out =
      limit > 0
        ? await Promise.race([
            running,
            new Promise<undefined>((resolve) => {
              timer = setTimeout(() => {
                timedOut = true;
                ac.abort(new Error(`timed out after ${limit} ms`));
                resolve(undefined);
              }, limit);
            }),
          ])
        : await running;
    const stdout = out?.stdout ?? '';
    const stderr = lines.length ? `${lines.join('\n')}\n` : '';
    if (out && out.exitCode === 0 && !timedOut && !aborted) return { stdout, stderr };
    const exit: ExitInfo = { exitCode: out?.exitCode ?? null, signal: null, timedOut, aborted };
    throw errorFromFailedRun(call, exit, stdout, stderr, opts.timeoutMs);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

function isBusy(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | undefined;
  return e?.code === 'ETXTBSY' || /text file busy/i.test(e?.message ?? '');
}

/** Runs `call` through the host's process runner; undefined when there is none available. */
function runThroughHost(call: ExecCall, opts: ExecOptions): Promise<ExecOutput> | undefined {
  const runner = (globalThis as Record<symbol, ProcessRunner | undefined>)[PROCESS_RUNNER_KEY];
  if (runner?.protocol !== 1) return undefined;
  const killable = (opts.timeoutMs !== undefined && opts.timeoutMs > 0) || opts.signal !== undefined;
  const started = runner.run(
    {
      file: opts.chroot ? 'chroot' : call.path,
      args: opts.chroot ? [opts.chroot, call.path] : [],
      env: { ...call.env },
      stdin: typeof call.stdin === 'string' ? Buffer.from(call.stdin) : call.stdin,
      detached: killable,
      timeoutMs: opts.timeoutMs ?? 0,
      killGraceMs: opts.killGraceMs ?? 2000,
      maxStdout: MAX_STDOUT,
      maxStderr: MAX_STDERR_KEEP,
    },
    opts.signal,
  );
  if (!started) return undefined;
  const forward = opts.stderr === undefined ? process.stderr : opts.stderr;
  return started.then((o) => {
    if (o.kind === 'error') {
      throw Object.assign(new Error(o.message), o.code ? { code: o.code } : {});
    }
    if (o.stderr) forward?.write(o.stderr);
    const info: ExitInfo = { exitCode: o.code, signal: o.signal, timedOut: o.timedOut, aborted: o.aborted };
    if (o.code === 0 && !o.timedOut && !o.aborted) return { stdout: o.stdout, stderr: o.stderr };
    throw errorFromFailedRun(call, info, o.stdout, o.stderr, opts.timeoutMs);
  });
}

function runOnce(call: ExecCall, opts: ExecOptions): Promise<ExecOutput> {
  const hosted = runThroughHost(call, opts);
  if (hosted) return hosted;
  return new Promise<ExecOutput>((resolve, reject) => {
    // When the call can be cut short, the plugin gets a process group of its own so a kill also
    // reaches its children (a shell plugin's `sleep` would otherwise keep the stdout pipe open).
    // Only then: a new session costs a few ms per call under load (scheduler autogroups).
    const killable = (opts.timeoutMs !== undefined && opts.timeoutMs > 0) || opts.signal !== undefined;
    const { spawn } = childProcess();
    const child = spawn(opts.chroot ? 'chroot' : call.path, opts.chroot ? [opts.chroot, call.path] : [], {
      env: call.env as NodeJS.ProcessEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: killable,
    });
    const out: Buffer[] = [];
    let outLen = 0;
    let errText = '';
    let timedOut = false;
    let aborted = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const forward = opts.stderr === undefined ? process.stderr : opts.stderr;

    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        if (!killable) throw new Error('no process group');
        process.kill(-child.pid, sig);
      } catch {
        try {
          child.kill(sig);
        } catch {
          // already gone
        }
      }
    };
    const stop = () => {
      killGroup('SIGTERM');
      const t = setTimeout(() => killGroup('SIGKILL'), opts.killGraceMs ?? 2000);
      t.unref();
      timers.push(t);
    };
    const onAbort = () => {
      aborted = true;
      stop();
    };
    if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
      timers.push(
        setTimeout(() => {
          timedOut = true;
          stop();
        }, opts.timeoutMs),
      );
    }
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const cleanup = () => {
      for (const t of timers) clearTimeout(t);
      opts.signal?.removeEventListener('abort', onAbort);
    };

    child.stdout.on('data', (b: Buffer) => {
      outLen += b.length;
      if (outLen <= MAX_STDOUT) out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (forward) forward.write(b);
      errText += b.toString('utf8');
      if (errText.length > MAX_STDERR_KEEP) errText = errText.slice(-MAX_STDERR_KEEP);
    });
    // A plugin that exits without reading stdin makes our write fail with EPIPE; that is not an error.
    child.stdin.on('error', () => {});
    child.stdin.end(call.stdin);

    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    });

    const finish = () => {
      if (settled || !exit) return;
      settled = true;
      cleanup();
      const stdout = Buffer.concat(out).toString('utf8');
      const info: ExitInfo = { exitCode: exit.code, signal: exit.signal, timedOut, aborted };
      if (exit.code === 0 && !timedOut && !aborted) {
        resolve({ stdout, stderr: errText });
        return;
      }
      reject(errorFromFailedRun(call, info, stdout, errText, opts.timeoutMs));
    };
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // A leftover grandchild may hold our pipes open; do not wait for it forever.
      const t = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish();
      }, 500);
      t.unref();
      timers.push(t);
    });
    child.on('close', () => finish());
  });
}

/** Turns a failed run into a PluginExecError, keeping the plugin's own CNI error code when it printed one. */
export function errorFromFailedRun(
  call: ExecCall,
  exit: ExitInfo,
  stdout: string,
  stderr: string,
  timeoutMs?: number,
): PluginExecError {
  const facts = { exit, stdout, stderr };
  if (exit.timedOut) {
    return new PluginExecError(
      ErrorCode.TryAgainLater,
      `it did not finish within ${timeoutMs} ms${outputs(stdout, stderr)}; find out why it hangs, or raise the limit (the timeoutMs exec option, or ${EXEC_TIMEOUT_ENV} in the environment; 0 turns it off)`,
      call,
      facts,
    );
  }
  if (exit.aborted) {
    return new PluginExecError(
      ErrorCode.Internal,
      `the call was aborted${outputs(stdout, stderr)}`,
      call,
      facts,
    );
  }
  const trimmed = stdout.trim();
  if (trimmed === '') {
    return new PluginExecError(
      ErrorCode.Internal,
      stderr.trim() === ''
        ? 'it printed nothing on stdout or stderr'
        : `it printed no error JSON on stdout; stderr: ${quoteOutput(stderr)}`,
      call,
      facts,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    parsed = undefined;
  }
  if (isErrorObject(parsed)) {
    const code = typeof parsed.code === 'number' && parsed.code > 0 ? parsed.code : ErrorCode.Internal;
    const details = typeof parsed.details === 'string' ? parsed.details : undefined;
    return new PluginExecError(code, parsed.msg, call, { ...facts, details });
  }
  return new PluginExecError(
    ErrorCode.Internal,
    `its stdout is not CNI error JSON: stdout ${quoteOutput(stdout)}${
      stderr.trim() ? `; stderr ${quoteOutput(stderr)}` : ''
    }`,
    call,
    facts,
  );
}

function isErrorObject(v: unknown): v is { code?: unknown; msg: string; details?: unknown } {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    typeof (v as { msg?: unknown }).msg === 'string'
  );
}

function outputs(stdout: string, stderr: string): string {
  let s = '';
  if (stdout.trim()) s += `; stdout ${quoteOutput(stdout)}`;
  if (stderr.trim()) s += `; stderr ${quoteOutput(stderr)}`;
  return s;
}

/**
 * Runs a plugin whose stdout must be a result (ADD). Returns the parsed JSON object with
 * `cniVersion` filled in from `configVersion` when the plugin left it out (libcni's fixup, #895).
 * Error JSON printed with exit status 0 is still reported as the plugin's error.
 */
export async function execPluginForJson(
  call: ExecCall,
  configVersion: string,
  opts: ExecOptions = {},
): Promise<Record<string, unknown>> {
  const { stdout, stderr } = await execPlugin(call, opts);
  const trimmed = stdout.trim();
  let parsed: unknown;
  try {
    parsed = trimmed === '' ? undefined : JSON.parse(trimmed);
  } catch {
    parsed = undefined;
  }
  const exit: ExitInfo = { exitCode: 0, signal: null, timedOut: false, aborted: false };
  if (parsed === null) parsed = {};
  if (typeof parsed !== 'object' || parsed === undefined || Array.isArray(parsed)) {
    throw new PluginExecError(
      ErrorCode.DecodingFailure,
      `it exited 0 but its stdout is not a JSON result object: stdout ${quoteOutput(stdout)}${
        stderr.trim() ? `; stderr ${quoteOutput(stderr)}` : ''
      }`,
      call,
      { exit, stdout, stderr },
    );
  }
  const obj = parsed as Record<string, unknown>;
  if (isCniErrorJson(obj) && !('ips' in obj) && !('interfaces' in obj)) {
    return Promise.reject(
      new PluginExecError(obj.code > 0 ? obj.code : ErrorCode.Internal, obj.msg, call, {
        exit,
        stdout,
        stderr,
        details: obj.details,
      }),
    );
  }
  if (obj.cniVersion === undefined || obj.cniVersion === '') obj.cniVersion = configVersion;
  return obj;
}

/**
 * The one exec-and-parse path for a plugin's ADD (delegation and the runtime both use it): runs the
 * plugin and returns its result, validated against the schema of its own version (the config's
 * version when it names none). A result that does not validate is a PluginExecError naming the field.
 */
export async function execPluginResult(
  call: ExecCall,
  configVersion: string,
  opts: ExecOptions = {},
): Promise<AnyResult> {
  const json = await execPluginForJson(call, configVersion, opts);
  try {
    return parseResult(json, configVersion, { what: 'result' });
  } catch (err) {
    const e = CniError.from(err, ErrorCode.DecodingFailure);
    throw new PluginExecError(e.code, `it returned an invalid result: ${e.message}`, call, {
      stdout: JSON.stringify(json),
      ...(e.details ? { details: e.details } : {}),
      cause: err,
    });
  }
}
