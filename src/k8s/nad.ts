// Turning a NetworkAttachmentDefinition into the CNI config a delegate runs (multi-net-spec §3.4):
// its `spec.config`, or, when that is empty, the network of the same name from the caller's config
// directory (the caller passes the loader: reading files is the runtime layer's job, not ours).
import { decodeJsonObject } from '../spec/config.js';
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

/** Loads a network by name when a NAD has no `spec.config` (multus: from its confDir). */
export type NetworkByName = (name: string) => Promise<AttachmentConfig>;

/**
 * The config of a NAD: its `spec.config` (with the NAD name injected when the config has none),
 * or, when empty, `byName(nad name)`.
 */
export async function configFromNad(
  nad: NetworkAttachmentDefinition,
  byName: NetworkByName,
): Promise<AttachmentConfig> {
  const ref = `network-attachment-definition ${nad.metadata.namespace ?? ''}/${nad.metadata.name}`;
  const text = nad.spec?.config?.trim() ?? '';
  if (text === '') {
    try {
      return await byName(nad.metadata.name);
    } catch (err) {
      const e = CniError.from(err);
      throw new CniError(e.code, `${ref} has no spec.config and ${e.message}`, e.details, { cause: err });
    }
  }
  return normalizeDelegateConfig(
    decodeJsonObject(text, `${ref} spec.config`),
    `${ref} spec.config`,
    nad.metadata.name,
  );
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
