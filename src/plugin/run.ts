import { parseCniArgs } from '../spec/args.js';
import { delegationProblem, type Env, type HandlerCommand, splitCniPath } from '../spec/call.js';
import { type NetConf, parseNetConf, validAttachments } from '../spec/config.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import {
  containerIdTooLong,
  MAX_CONTAINER_ID_BYTES,
  MAX_NETWORK_NAME_BYTES,
  networkNameTooLong,
  validateContainerId,
  validateIfName,
} from '../spec/identifiers.js';
import { convertResult, validateResult } from '../spec/result/convert.js';
import type { AddResult, Result } from '../spec/result/types.js';
import {
  ALL_VERSIONS,
  CURRENT_VERSION,
  normalizeVersion,
  resultFamily,
  versionAtLeast,
} from '../spec/version.js';
import type { CallInfo, GcContext, IpamClient, PluginContext, PluginOptions, PluginSpec } from './context.js';
import { withStdoutGuard } from './stdout-guard.js';

// The heart of pluginMain: a function from { env, stdin } to { stdout, exitCode }, with no
// process-global reads or writes, so one process can serve many calls and tests run in-process.
// The one exception is the stdout guard while plugin code runs (./stdout-guard.ts): console.* and
// process.stdout.write are routed to the call's log, by async context, and restored afterwards.

/**
 * Default supported versions: all of them, as the reference plugins (`version.All`). Results are
 * converted to the config's version, and an ADD whose result cannot be given at that version (an
 * L2-only result at 0.1.0/0.2.0) is undone before the error is returned.
 */
export const DEFAULT_SUPPORTED_VERSIONS: readonly string[] = ALL_VERSIONS;

/** The input of one plugin call. */
export interface PluginInput {
  env: Env;
  /** The request config, or a function that reads it (called at most once, never for VERSION). */
  stdin: string | Uint8Array | (() => Promise<string | Uint8Array>);
  /** Aborted when the call must stop early. */
  signal?: AbortSignal | undefined;
  /** Receives log lines (stderr); default: collected into the outcome's `stderr`. */
  log?: ((line: string) => void) | undefined;
  /**
   * The version an ADD result is printed in; default: the config's `cniVersion`, as a runtime
   * expects. A daemon answering an unmodified multus-shim asks for 1.0.0, which that shim converts
   * to the config's version itself.
   */
  resultVersion?: string | undefined;
}

/** The outcome of one plugin call: exactly one JSON document (or nothing) on stdout. */
export interface PluginOutcome {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const REQUIRED_ENV: Record<HandlerCommand, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: ['CNI_PATH'],
  STATUS: [],
};

const MIN_VERSION: Partial<Record<HandlerCommand, string>> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

const print = (v: unknown) => JSON.stringify(v, null, 4);

/** A spec with `options` laid over it; an option that is undefined leaves the spec's value. */
export function withOptions<C>(spec: PluginSpec<C>, options: PluginOptions<C>): PluginSpec<C> {
  const merged: PluginSpec<C> = { ...spec };
  for (const [k, v] of Object.entries(options) as Array<[keyof PluginOptions<C>, unknown]>) {
    if (v !== undefined) Object.assign(merged, { [k]: v });
  }
  return merged;
}

/** Runs one CNI call against a plugin's handlers and returns what the process should emit. */
export async function runPlugin<C>(spec: PluginSpec<C>, call: PluginInput): Promise<PluginOutcome> {
  const supported = spec.supportedVersions ?? DEFAULT_SUPPORTED_VERSIONS;
  const logs: string[] = [];
  const log = call.log ?? ((line: string) => logs.push(line));
  const outcome = (stdout: string, exitCode: number): PluginOutcome => ({
    stdout,
    stderr: logs.length ? `${logs.join('\n')}\n` : '',
    exitCode,
  });
  let cniVersion: string | undefined;
  try {
    const env = call.env;
    const command = env.CNI_COMMAND ?? '';
    if (command === '') {
      if (spec.about) {
        log(spec.about);
        log(`CNI protocol versions supported: ${supported.join(', ')}`);
        return outcome('', 0);
      }
      throw missingEnv(['CNI_COMMAND'], 'any command');
    }
    if (command === 'VERSION') {
      return outcome(`${JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: supported })}\n`, 0);
    }
    if (!(command in REQUIRED_ENV)) {
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `unknown CNI_COMMAND: ${command}`,
        'use one of ADD, DEL, CHECK, GC, STATUS, VERSION',
      );
    }
    const cmd = command as HandlerCommand;
    const missing = REQUIRED_ENV[cmd].filter((k) => !env[k]);
    if (missing.length) throw missingEnv(missing, cmd);
    const containerId = env.CNI_CONTAINERID ?? '';
    const ifname = env.CNI_IFNAME ?? '';
    // ADD refuses IDs and names too long for the file names state is kept under, so nothing can
    // exist for them: DEL succeeds at once instead of failing on every retry of the runtime.
    if (cmd === 'DEL' && containerIdTooLong(containerId)) {
      log(
        `DEL: CNI_CONTAINERID is longer than ${MAX_CONTAINER_ID_BYTES} bytes; ADD refuses such IDs, so there is nothing to delete`,
      );
      return outcome('', 0);
    }
    if (REQUIRED_ENV[cmd].includes('CNI_CONTAINERID')) validateContainerId(containerId);
    if (REQUIRED_ENV[cmd].includes('CNI_IFNAME')) validateIfName(ifname);
    const args = parseCniArgs(env.CNI_ARGS);

    const stdin = await readStdin(call.stdin);
    if ((cmd === 'DEL' || cmd === 'GC') && nameTooLong(stdin)) {
      log(
        `${cmd}: the network name is longer than ${MAX_NETWORK_NAME_BYTES} bytes; ADD refuses such names, so there is nothing to ${cmd === 'DEL' ? 'delete' : 'collect'}`,
      );
      return outcome('', 0);
    }
    const config = parseNetConf(stdin);
    cniVersion = config.cniVersion;
    checkVersion(cmd, config, supported);
    const problem = delegationProblem(env);
    if (problem) {
      // The same call one level up was refused on ADD for the same reason, so it created nothing:
      // DEL and GC succeed, or the runtime's cleanup of the failed ADD could never finish.
      if (cmd === 'DEL' || cmd === 'GC') {
        log(`${cmd}: ${problem}; nothing can exist at this level, so ${cmd} succeeds`);
        return outcome('', 0);
      }
      throw new CniError(ErrorCode.InvalidNetworkConfig, problem);
    }
    const info: CallInfo = {
      command: cmd,
      config,
      stdin,
      containerId,
      netns: env.CNI_NETNS ?? '',
      ifname,
      args,
      path: splitCniPath(env.CNI_PATH),
      env,
      signal: call.signal ?? new AbortController().signal,
      log,
    };
    if (cmd === 'GC') info.validAttachments = validAttachments(config) ?? [];
    // The plugin's own code runs from here on (its schema, its IPAM factory, its handler): what it
    // prints with console.* or process.stdout.write goes to the call's log, so that stdout carries
    // exactly one JSON document.
    return outcome(await withStdoutGuard(log, () => invoke(spec, info, call.resultVersion)), 0);
  } catch (err) {
    const e = CniError.from(err);
    if (!(err instanceof CniError) && err instanceof Error && err.stack) log(err.stack);
    const v = (cniVersion !== undefined && normalizeVersion(cniVersion)) || CURRENT_VERSION;
    return outcome(print(e.toJSON(v)), 1);
  }
}

/** Runs the plugin's code for one validated call; returns what goes on stdout. */
async function invoke<C>(spec: PluginSpec<C>, info: CallInfo, resultVersion?: string): Promise<string> {
  const { config } = info;
  // The plugin's typed fields live apart from the wire config, so what is delegated (IPAM's
  // stdin included) is exactly what the runtime sent.
  const conf = (spec.config ? spec.config.parse(config) : config) as C;
  const ipam = spec.ipam ? spec.ipam(info) : noIpam(config);
  const ctx: PluginContext<C> = { ...info, conf, ipam: guardIpam(ipam, info) };
  switch (info.command) {
    case 'ADD': {
      const result = await spec.add(ctx);
      try {
        return print(encodeResult(result, resultVersion ?? config.cniVersion));
      } catch (err) {
        // The attachment exists by now: a result that cannot be printed must not leave it behind.
        await undoAdd(spec, ctx, err);
        throw err;
      }
    }
    case 'GC': {
      const gcCtx: GcContext<C> = { ...ctx, validAttachments: info.validAttachments ?? [] };
      if (spec.gc) await spec.gc(gcCtx);
      else info.log(`${config.type ?? 'this plugin'}: no GC handler; nothing to collect`);
      return '';
    }
    default: {
      const cmd = info.command;
      const handler = cmd === 'DEL' ? spec.del : cmd === 'CHECK' ? spec.check : spec.status;
      if (handler) await handler.call(spec, ctx);
      return '';
    }
  }
}

/** ctx.ipam when no IPAM factory was injected: every verb says how to get one. */
function noIpam(config: NetConf): IpamClient {
  const fail = async (): Promise<never> => {
    throw new CniError(
      ErrorCode.Internal,
      'ctx.ipam: no IPAM factory in the plugin options; use pluginMain/runPlugin from "cni-kit", or pass `ipam`',
    );
  };
  return { type: config.ipam?.type, add: fail, check: fail, del: fail, gc: fail, status: fail };
}

/**
 * ctx.ipam, refusing what can only fail or loop, before anything is exec'd: an `ipam` block
 * without a type, and an IPAM type that is the plugin itself (exec'ing it would run this plugin
 * again with the same config, which would delegate again, without end). ADD never got past
 * either, so no IPAM state can exist: DEL and GC pass instead of failing on every retry.
 */
function guardIpam(ipam: IpamClient, info: CallInfo): IpamClient {
  const self = info.config.type;
  const block = info.config.ipam;
  const type = block?.type;
  let problem: string | undefined;
  if (block !== undefined && (typeof type !== 'string' || type === '')) {
    problem =
      'ipam.type: missing; name the IPAM plugin, e.g. "ipam": {"type": "host-local", ...}, or remove the "ipam" block for an interface without addresses';
  } else if (type === self) {
    problem = `ipam.type: ${JSON.stringify(self)} is this plugin itself; a plugin cannot be its own IPAM (it would call itself without end); set ipam.type to an IPAM plugin such as "host-local", "static" or "dhcp"`;
  }
  if (problem === undefined) return ipam;
  const why = problem;
  const refuse = async (): Promise<never> => {
    throw new CniError(ErrorCode.InvalidNetworkConfig, why);
  };
  const skip = async (): Promise<void> => {
    info.log(`${why.slice(0, why.indexOf(';'))}: no IPAM state can exist, nothing to free`);
  };
  return { type: ipam.type, add: refuse, check: refuse, status: refuse, gc: skip, del: skip };
}

/** Runs the plugin's DEL after an ADD whose result could not be encoded; DEL errors are logged. */
async function undoAdd<C>(spec: PluginSpec<C>, ctx: PluginContext<C>, why: unknown): Promise<void> {
  if (!spec.del) return;
  ctx.log(`ADD: undoing the attachment: ${CniError.from(why).message}`);
  try {
    await spec.del({ ...ctx, command: 'DEL' });
  } catch (err) {
    ctx.log(`ADD: undoing the attachment failed: ${CniError.from(err).message}`);
  }
}

/** True when stdin holds a config whose name is over the limit (bad JSON is parseNetConf's to report). */
function nameTooLong(stdin: string): boolean {
  try {
    const name = (JSON.parse(stdin) as { name?: unknown } | null)?.name;
    return typeof name === 'string' && networkNameTooLong(name);
  } catch {
    return false;
  }
}

function missingEnv(names: string[], cmd: string): CniError {
  return new CniError(
    ErrorCode.InvalidEnvironmentVariables,
    `required env variables [${names.join(',')}] missing`,
    `the runtime must set ${names.join(', ')} for ${cmd}`,
  );
}

async function readStdin(src: PluginInput['stdin']): Promise<string> {
  try {
    const v = typeof src === 'function' ? await src() : src;
    // Keep a BOM: stdin is handed on to delegates as received (and JSON with a BOM is refused, as Go does).
    return typeof v === 'string' ? v : new TextDecoder('utf-8', { ignoreBOM: true }).decode(v);
  } catch (e) {
    throw new CniError(ErrorCode.IOFailure, `error reading from stdin: ${(e as Error).message}`);
  }
}

function checkVersion(cmd: HandlerCommand, config: NetConf, supported: readonly string[]): void {
  const v = normalizeVersion(config.cniVersion);
  const min = MIN_VERSION[cmd];
  if (v && min && !versionAtLeast(v, min)) {
    throw new CniError(
      ErrorCode.IncompatibleCNIVersion,
      `config version "${config.cniVersion}" does not allow ${cmd}; ${cmd} needs cniVersion ${min} or later`,
    );
  }
  if (!v || !supported.includes(v)) {
    throw new CniError(
      ErrorCode.IncompatibleCNIVersion,
      'incompatible CNI versions',
      `config is "${config.cniVersion}", plugin supports [${supported.map((s) => `"${s}"`).join(' ')}]`,
    );
  }
}

function encodeResult(result: AddResult, toVersion: string): unknown {
  if (!result || typeof result !== 'object') {
    throw new CniError(ErrorCode.Internal, 'plugin returned no result from ADD');
  }
  const current: Result = { ...result, cniVersion: CURRENT_VERSION };
  try {
    validateResult(current, 'plugin result');
  } catch (e) {
    const err = CniError.from(e);
    throw new CniError(ErrorCode.Internal, `plugin returned an invalid result: ${err.message}`, err.details);
  }
  try {
    return convertResult(current, toVersion);
  } catch (e) {
    const err = CniError.from(e);
    const v = normalizeVersion(toVersion);
    if (v && resultFamily(v) === '0.2') {
      throw new CniError(
        err.code,
        `the ADD result cannot be given at cniVersion ${JSON.stringify(toVersion || '0.1.0')}: it has no valid IP addresses, and a 0.1.0/0.2.0 result must hold one (an attachment without IPAM); the attachment was removed again. Add an "ipam" section, or use cniVersion 0.3.0 or later`,
        err.details,
      );
    }
    throw err;
  }
}
