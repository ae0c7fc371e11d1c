import { parseCniArgs } from '../spec/args.js';
import { type Attachment, type NetConf, parseNetConf, validAttachments } from '../spec/config.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import { validateContainerId, validateIfName } from '../spec/identifiers.js';
import { convertResult, validateResult } from '../spec/result/convert.js';
import type { Result } from '../spec/result/types.js';
import { CURRENT_VERSION, normalizeVersion, versionAtLeast, versionsFrom } from '../spec/version.js';
import type { GcContext, PluginCommand, PluginContext, PluginSpec } from './context.js';

// The heart of pluginMain: a function from { env, stdin } to { stdout, exitCode }, with no
// process-global reads or writes, so one process can serve many calls and tests run in-process.

/** Default supported versions: every version with a rich result (0.3.0 and later). */
export const DEFAULT_SUPPORTED_VERSIONS: readonly string[] = versionsFrom('0.3.0');

/** The input of one plugin call. */
export interface PluginInput {
  env: Readonly<Record<string, string | undefined>>;
  /** The request config, or a function that reads it (called at most once, never for VERSION). */
  stdin: string | Uint8Array | (() => Promise<string | Uint8Array>);
  /** Aborted when the call must stop early. */
  signal?: AbortSignal;
  /** Receives log lines (stderr); default: collected into the outcome's `stderr`. */
  log?: (line: string) => void;
}

/** The outcome of one plugin call: exactly one JSON document (or nothing) on stdout. */
export interface PluginOutcome {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const REQUIRED_ENV: Record<PluginCommand, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: ['CNI_PATH'],
  STATUS: [],
};

const MIN_VERSION: Partial<Record<PluginCommand, string>> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

const print = (v: unknown) => JSON.stringify(v, null, 4);

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
    const cmd = command as PluginCommand;
    const missing = REQUIRED_ENV[cmd].filter((k) => !env[k]);
    if (missing.length) throw missingEnv(missing, cmd);
    const containerId = env.CNI_CONTAINERID ?? '';
    const ifname = env.CNI_IFNAME ?? '';
    if (REQUIRED_ENV[cmd].includes('CNI_CONTAINERID')) validateContainerId(containerId);
    if (REQUIRED_ENV[cmd].includes('CNI_IFNAME')) validateIfName(ifname);
    const args = parseCniArgs(env.CNI_ARGS);

    const stdin = await readStdin(call.stdin);
    const config = parseNetConf(stdin);
    cniVersion = config.cniVersion;
    checkVersion(cmd, config, supported);
    let typed: NetConf & C = config as NetConf & C;
    if (spec.parseConfig) {
      try {
        typed = Object.assign(config, spec.parseConfig(config));
      } catch (e) {
        throw CniError.from(e, ErrorCode.InvalidNetworkConfig);
      }
    }
    const ctx: PluginContext<C> = {
      command: cmd,
      config: typed,
      stdin,
      containerId,
      netns: env.CNI_NETNS ?? '',
      ifname,
      args,
      path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
      env,
      signal: call.signal ?? new AbortController().signal,
      log,
    };
    switch (cmd) {
      case 'ADD': {
        const result = await spec.add(ctx);
        return outcome(print(encodeResult(result, config.cniVersion)), 0);
      }
      case 'GC': {
        const gcCtx: GcContext<C> = {
          ...ctx,
          validAttachments: validAttachments(config) ?? ([] as Attachment[]),
        };
        if (spec.gc) await spec.gc(gcCtx);
        else log(`${config.type}: no GC handler; nothing to collect`);
        return outcome('', 0);
      }
      default: {
        const handler = cmd === 'DEL' ? spec.del : cmd === 'CHECK' ? spec.check : spec.status;
        if (handler) await handler.call(spec, ctx);
        return outcome('', 0);
      }
    }
  } catch (err) {
    const e = CniError.from(err);
    if (!(err instanceof CniError) && err instanceof Error && err.stack) log(err.stack);
    const v = (cniVersion !== undefined && normalizeVersion(cniVersion)) || CURRENT_VERSION;
    return outcome(print(e.toJSON(v)), 1);
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
    return typeof v === 'string' ? v : new TextDecoder().decode(v);
  } catch (e) {
    throw new CniError(ErrorCode.IOFailure, `error reading from stdin: ${(e as Error).message}`);
  }
}

function checkVersion(cmd: PluginCommand, config: NetConf, supported: readonly string[]): void {
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

function encodeResult(result: Result, toVersion: string): unknown {
  if (!result || typeof result !== 'object') {
    throw new CniError(ErrorCode.Internal, 'plugin returned no result from ADD');
  }
  const current = { ...result, cniVersion: CURRENT_VERSION };
  try {
    validateResult(current, 'plugin result');
  } catch (e) {
    throw new CniError(ErrorCode.Internal, `plugin returned an invalid result: ${(e as CniError).message}`);
  }
  return convertResult(current, toVersion);
}
