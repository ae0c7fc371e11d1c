// Turning a network reference into the CNI config a delegate runs: NetworkAttachmentDefinition
// `spec.config` (multi-net-spec §3.4), a config file or directory, or a name looked up in confDir.
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { loadConfFile, loadConfFiles, loadConfList } from '../delegate/conf-files.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import type { NetworkAttachmentDefinition } from './client.js';

/** A delegate's CNI config as JSON: a single plugin (`type`) or a list (`plugins`). */
export type AttachmentConfig = Record<string, unknown>;

/** True when the config is a conflist. */
export function isConfList(conf: AttachmentConfig): boolean {
  return Array.isArray(conf.plugins);
}

/** The plugin objects of a config (itself for a single plugin). */
export function pluginsOf(conf: AttachmentConfig): Array<Record<string, unknown>> {
  return isConfList(conf) ? (conf.plugins as Array<Record<string, unknown>>) : [conf];
}

/**
 * Checks a delegate config object: it needs `type` (one plugin) or a non-empty `plugins` list.
 * A missing `name` becomes `fallbackName` (spec §3.4.2). Returns a copy.
 */
export function normalizeDelegateConfig(
  json: unknown,
  where: string,
  fallbackName?: string,
): AttachmentConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `${where}: the CNI config must be a JSON object`);
  }
  const conf = { ...(json as AttachmentConfig) };
  if (typeof conf.type !== 'string' || conf.type === '') {
    if (!Array.isArray(conf.plugins) || conf.plugins.length === 0) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${where}: delegate must have the 'type' (one plugin) or 'plugins' (a list) field`,
      );
    }
    conf.plugins.forEach((p: unknown, i: number) => {
      if (typeof p !== 'object' || p === null || typeof (p as AttachmentConfig).type !== 'string') {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `${where}: plugins[${i}].type: missing; every plugin needs "type"`,
        );
      }
    });
  }
  if ((conf.name === undefined || conf.name === '') && fallbackName) conf.name = fallbackName;
  if (typeof conf.name !== 'string' || conf.name === '') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${where}: name: missing; set "name" in the CNI config`,
    );
  }
  return conf;
}

/** Loads network `name` from confDir: a .conflist first, then a .conf/.json (spec §3.4.1). */
export async function configFromConfDir(confDir: string, name: string): Promise<AttachmentConfig> {
  const list = await loadConfList(confDir, name);
  return normalizeDelegateConfig(list.raw, `${confDir} network "${name}"`);
}

/**
 * The config of a NAD: its `spec.config` (with the NAD name injected when the config has none),
 * or, when empty, the network of the same name in confDir.
 */
export async function configFromNad(
  nad: NetworkAttachmentDefinition,
  confDir: string,
): Promise<AttachmentConfig> {
  const ref = `network-attachment-definition ${nad.metadata.namespace ?? ''}/${nad.metadata.name}`;
  const text = nad.spec?.config?.trim() ?? '';
  if (text === '') {
    try {
      return await configFromConfDir(confDir, nad.metadata.name);
    } catch (err) {
      const e = CniError.from(err);
      throw new CniError(e.code, `${ref} has no spec.config and ${e.message}`, e.details, { cause: err });
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `${ref}: spec.config is not valid JSON (${(e as Error).message}); fix the NetworkAttachmentDefinition`,
    );
  }
  return normalizeDelegateConfig(json, `${ref} spec.config`, nad.metadata.name);
}

/**
 * Loads a config from a path (multus `clusterNetwork` with a '/'): a directory gives its first
 * .conf/.conflist by name (skipping multus's own 00-multus files), a .conflist a list, any other
 * file a single plugin.
 */
export async function configFromPath(path: string): Promise<AttachmentConfig> {
  let file = path;
  let isDir = false;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    throw new CniError(ErrorCode.IOFailure, `network config ${path}: ${(e as Error).message}`);
  }
  if (isDir) {
    const files = (await loadConfFiles(path, ['.conf', '.conflist'])).filter(
      (f) => !basename(f).startsWith('00-multus'),
    );
    const first = files[0];
    if (!first) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `no .conf or .conflist file in ${path}; install the cluster network's config there`,
      );
    }
    file = first;
  }
  const list = await loadConfFile(file);
  const conf = file.endsWith('.conflist') ? list.raw : (list.plugins[0] as AttachmentConfig);
  return normalizeDelegateConfig(conf, file);
}

/** Merges `cniArgs` into `args.cni` of every plugin; the given values win over the config's. */
export function withCniArgs(
  conf: AttachmentConfig,
  cniArgs: Record<string, unknown> | undefined,
): AttachmentConfig {
  if (!cniArgs || Object.keys(cniArgs).length === 0) return conf;
  const merge = (p: Record<string, unknown>) => {
    const args = (typeof p.args === 'object' && p.args !== null ? p.args : {}) as Record<string, unknown>;
    const cni = (typeof args.cni === 'object' && args.cni !== null ? args.cni : {}) as Record<
      string,
      unknown
    >;
    return { ...p, args: { ...args, cni: { ...cni, ...cniArgs } } };
  };
  if (isConfList(conf)) return { ...conf, plugins: pluginsOf(conf).map(merge) };
  return merge(conf);
}
