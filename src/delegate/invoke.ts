import { buildDelegateEnv, type Command, type Env, splitCniPath } from '../spec/call.js';
import { convertResult, parseResult, toCurrentResult } from '../spec/result/convert.js';
import type { Result } from '../spec/result/types.js';
import { type ExecCall, type ExecOptions, execPlugin, execPluginResult } from './exec.js';
import { findInPath } from './find.js';

/** How a plugin runs a delegate: its own environment, and exec limits. */
export interface DelegateOptions extends ExecOptions {
  /** The calling plugin's environment (ctx.env); default process.env. Only CNI_COMMAND is changed. */
  env?: Env | undefined;
  /** Where to look for the delegate; default CNI_PATH from `env`. */
  path?: readonly string[] | undefined;
  /** The binary to run, when the caller already found it (no CNI_PATH lookup then). */
  binary?: string | undefined;
  /**
   * On a failed ADD, run DEL on the delegate so it releases what it may have reserved
   * (the spec asks the caller to clean up). Default true; DEL errors are ignored.
   */
  cleanupOnFailure?: boolean | undefined;
}

/** A config to hand to a delegate: the caller's exact stdin text, bytes, or a config object. */
export type DelegateConfig = string | Uint8Array | Record<string, unknown>;

interface Prepared {
  stdin: string;
  version: string;
  name: string | undefined;
}

/**
 * The full config goes to the delegate (spec §4). An object's `prevResult`, which inside the SDK
 * is the current type, is converted back to the config's version: Go delegates parse it with
 * the config's version and refuse a 1.x result under a 0.4.0 config.
 */
function prepare(config: DelegateConfig): Prepared {
  if (typeof config === 'string' || config instanceof Uint8Array) {
    const stdin =
      typeof config === 'string' ? config : new TextDecoder('utf-8', { ignoreBOM: true }).decode(config);
    let version = '';
    let name: string | undefined;
    try {
      const o = JSON.parse(stdin) as { cniVersion?: unknown; name?: unknown };
      if (typeof o.cniVersion === 'string') version = o.cniVersion;
      if (typeof o.name === 'string') name = o.name;
    } catch {
      // the delegate will report the bad JSON itself, with its own code
    }
    return { stdin, version, name };
  }
  const version = typeof config.cniVersion === 'string' ? config.cniVersion : '';
  const out: Record<string, unknown> = { ...config };
  if (out.prevResult !== undefined && out.prevResult !== null && version) {
    out.prevResult = convertResult(parseResult(out.prevResult, version, { what: 'prevResult' }), version);
  }
  return {
    stdin: JSON.stringify(out),
    version,
    name: typeof config.name === 'string' ? config.name : undefined,
  };
}

async function locate(type: string, opts: DelegateOptions): Promise<string> {
  if (opts.binary) return opts.binary;
  const env = opts.env ?? process.env;
  return findInPath(type, opts.path ?? splitCniPath(env.CNI_PATH));
}

function callFor(type: string, path: string, command: Command, p: Prepared, opts: DelegateOptions): ExecCall {
  return {
    path,
    type,
    command,
    stdin: p.stdin,
    env: buildDelegateEnv(opts.env ?? process.env, command),
    ...(p.name ? { name: p.name } : {}),
  };
}

/**
 * Runs `type` with ADD and returns its result as the current result type. On failure the
 * delegate gets a DEL first (unless `cleanupOnFailure: false`), then the error is thrown.
 */
export async function delegateAdd(
  type: string,
  config: DelegateConfig,
  opts: DelegateOptions = {},
): Promise<Result> {
  const p = prepare(config);
  const path = await locate(type, opts);
  try {
    return toCurrentResult(await execPluginResult(callFor(type, path, 'ADD', p, opts), p.version, opts));
  } catch (err) {
    if (opts.cleanupOnFailure !== false) {
      await execPlugin(callFor(type, path, 'DEL', p, opts), opts).catch(() => {});
    }
    throw err;
  }
}

async function runNoResult(command: Command, type: string, config: DelegateConfig, opts: DelegateOptions) {
  const p = prepare(config);
  const path = await locate(type, opts);
  await execPlugin(callFor(type, path, command, p, opts), opts);
}

/** A delegate call whose answer is only success or a CNI error. */
export type DelegateNoResult = (
  type: string,
  config: DelegateConfig,
  opts?: DelegateOptions,
) => Promise<void>;

const noResult =
  (command: Command): DelegateNoResult =>
  (type, config, opts = {}) =>
    runNoResult(command, type, config, opts);

/** Runs `type` with CHECK (the config's prevResult is what the delegate checks against). */
export const delegateCheck: DelegateNoResult = noResult('CHECK');

/** Runs `type` with DEL. */
export const delegateDel: DelegateNoResult = noResult('DEL');

/** Runs `type` with STATUS; a not-ready delegate throws its own code (50 or 51). */
export const delegateStatus: DelegateNoResult = noResult('STATUS');

/** Runs `type` with GC; the config should carry `cni.dev/valid-attachments`. */
export const delegateGC: DelegateNoResult = noResult('GC');
