import { CniError, ErrorCode } from '../spec/errors.js';
import { convertResult, parseResult, toCurrentResult } from '../spec/result/convert.js';
import type { AnyResult, Result } from '../spec/result/types.js';
import { buildDelegateEnv, type CniCommand, type EnvMap } from './env.js';
import { type ExecCall, type ExecOptions, execPlugin, execPluginForJson } from './exec.js';
import { findInPath, splitCniPath } from './find.js';

/** How a plugin runs a delegate: its own environment, and exec limits. */
export interface DelegateOptions extends ExecOptions {
  /** The calling plugin's environment (ctx.env); default process.env. Only CNI_COMMAND is changed. */
  env?: EnvMap;
  /** Where to look for the delegate; default CNI_PATH from `env`. */
  path?: readonly string[];
  /**
   * On a failed ADD, run DEL on the delegate so it releases what it may have reserved
   * (the spec asks the caller to clean up). Default true; DEL errors are ignored.
   */
  cleanupOnFailure?: boolean;
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
    const stdin = typeof config === 'string' ? config : new TextDecoder().decode(config);
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
  const env = opts.env ?? process.env;
  return findInPath(type, opts.path ?? splitCniPath(env.CNI_PATH));
}

function callFor(
  type: string,
  path: string,
  command: CniCommand,
  p: Prepared,
  opts: DelegateOptions,
): ExecCall {
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
    const json = await execPluginForJson(callFor(type, path, 'ADD', p, opts), p.version, opts);
    let result: AnyResult;
    try {
      result = parseResult(json, p.version, { what: `result of delegate "${type}"` });
    } catch (err) {
      const e = CniError.from(err, ErrorCode.DecodingFailure);
      throw new CniError(
        e.code,
        `delegate "${type}" (${path}) returned an invalid result: ${e.message}`,
        e.details,
        {
          cause: err,
        },
      );
    }
    return toCurrentResult(result);
  } catch (err) {
    if (opts.cleanupOnFailure !== false) {
      await execPlugin(callFor(type, path, 'DEL', p, opts), opts).catch(() => {});
    }
    throw err;
  }
}

async function runNoResult(command: CniCommand, type: string, config: DelegateConfig, opts: DelegateOptions) {
  const p = prepare(config);
  const path = await locate(type, opts);
  await execPlugin(callFor(type, path, command, p, opts), opts);
}

/** Runs `type` with CHECK (the config's prevResult is what the delegate checks against). */
export async function delegateCheck(
  type: string,
  config: DelegateConfig,
  opts: DelegateOptions = {},
): Promise<void> {
  await runNoResult('CHECK', type, config, opts);
}

/** Runs `type` with DEL. */
export async function delegateDel(
  type: string,
  config: DelegateConfig,
  opts: DelegateOptions = {},
): Promise<void> {
  await runNoResult('DEL', type, config, opts);
}

/** Runs `type` with STATUS; a not-ready delegate throws its own code (50 or 51). */
export async function delegateStatus(
  type: string,
  config: DelegateConfig,
  opts: DelegateOptions = {},
): Promise<void> {
  await runNoResult('STATUS', type, config, opts);
}

/** Runs `type` with GC; the config should carry `cni.dev/valid-attachments`. */
export async function delegateGC(
  type: string,
  config: DelegateConfig,
  opts: DelegateOptions = {},
): Promise<void> {
  await runNoResult('GC', type, config, opts);
}
