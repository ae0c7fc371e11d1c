import { buildCniEnv, type Env } from '../spec/call.js';
import { decodeJsonObject } from '../spec/config.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import { CURRENT_VERSION } from '../spec/version.js';
import { type ExecOptions, execPlugin, PluginExecError } from './exec.js';

/** What a plugin answered to VERSION. */
export interface PluginVersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

/**
 * Decodes a VERSION answer with libcni's legacy rules: a missing cniVersion is an error, and an
 * empty supportedVersions list means ["0.1.0","0.2.0"] from a 0.2.0 plugin (an error otherwise).
 */
export function decodeVersionInfo(stdout: string): PluginVersionInfo {
  const o = decodeJsonObject(stdout.trim(), 'version info') as {
    cniVersion?: unknown;
    supportedVersions?: unknown;
  };
  if (typeof o.cniVersion !== 'string' || o.cniVersion === '') {
    throw new CniError(ErrorCode.DecodingFailure, 'decoding version info: missing field cniVersion');
  }
  const list = o.supportedVersions;
  if (
    list !== undefined &&
    list !== null &&
    (!Array.isArray(list) || list.some((s) => typeof s !== 'string'))
  ) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `decoding version info: supportedVersions must be an array of strings, got ${JSON.stringify(list)}`,
    );
  }
  const supported = (list ?? []) as string[];
  if (supported.length === 0) {
    if (o.cniVersion === '0.2.0') return { cniVersion: '0.2.0', supportedVersions: ['0.1.0', '0.2.0'] };
    throw new CniError(
      ErrorCode.DecodingFailure,
      `decoding version info: plugin answered cniVersion ${JSON.stringify(o.cniVersion)} with no supportedVersions`,
    );
  }
  return { cniVersion: o.cniVersion, supportedVersions: [...supported] };
}

/**
 * Asks a plugin binary which spec versions it supports. Sends `{"cniVersion":"1.1.0"}` and fills
 * CNI_NETNS/CNI_IFNAME/CNI_PATH with "dummy" as libcni does, so old skel builds accept the call;
 * a plugin that predates VERSION ("unknown CNI_COMMAND: VERSION") supports only 0.1.0.
 */
export async function getVersionInfo(
  pluginPath: string,
  opts: ExecOptions & { env?: Env; type?: string } = {},
): Promise<PluginVersionInfo> {
  const env = buildCniEnv(opts.env ?? process.env, {
    command: 'VERSION',
    netns: 'dummy',
    ifname: 'dummy',
    path: ['dummy'],
  });
  const call = {
    path: pluginPath,
    command: 'VERSION' as const,
    stdin: JSON.stringify({ cniVersion: CURRENT_VERSION }),
    env,
    ...(opts.type ? { type: opts.type } : {}),
  };
  let stdout: string;
  try {
    stdout = (await execPlugin(call, opts)).stdout;
  } catch (err) {
    if (err instanceof PluginExecError && err.reason === 'unknown CNI_COMMAND: VERSION') {
      return { cniVersion: '0.1.0', supportedVersions: ['0.1.0'] };
    }
    throw err;
  }
  try {
    return decodeVersionInfo(stdout);
  } catch (err) {
    const e = CniError.from(err);
    throw new PluginExecError(e.code, e.message, call, { stdout, cause: err });
  }
}
