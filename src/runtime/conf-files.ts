import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import {
  confListFromConf,
  type NetConfList,
  type PluginConf,
  parseNetConf,
  parseNetConfList,
} from '../spec/config.js';
import { CniError, describeSystemError, ErrorCode } from '../spec/errors.js';

/** Extensions runtimes read from a config directory. */
export const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'] as const;

/** The directory runtimes read by default (cnitool's NETCONFPATH default). */
export const DEFAULT_CONF_DIR = '/etc/cni/net.d';

/** Config files in `dir` with the given extensions, sorted by name; a missing directory is empty. */
export async function loadConfFiles(
  dir: string,
  extensions: readonly string[] = CONF_EXTENSIONS,
): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CniError(
      ErrorCode.IOFailure,
      `config directory: ${describeSystemError(err) ?? `cannot read ${dir}: ${(err as Error).message}`}`,
    );
  }
  return names
    .filter((n) => !n.startsWith('.') && extensions.includes(extname(n)))
    .sort()
    .map((n) => join(dir, n));
}

/** One config file read from a directory: the list it holds, or why it could not be used. */
export type LoadedConf =
  | { file: string; list: NetConfList; error?: undefined }
  | { file: string; list?: undefined; error: CniError };

/** Parses one file: `.conflist` as a list, `.conf`/`.json` as a single plugin wrapped into a list. */
export async function loadConfFile(file: string): Promise<NetConfList> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CniError(
      ErrorCode.IOFailure,
      describeSystemError(err) ?? `cannot read ${file}: ${(err as Error).message}`,
    );
  }
  try {
    if (extname(file) === '.conflist') return parseNetConfList(text);
    return confListFromConf(parseNetConf(text));
  } catch (err) {
    const e = CniError.from(err);
    throw new CniError(e.code, `${file}: ${e.message}`, e.details, { cause: err });
  }
}

/**
 * Reads every config in `dir` in file-name order, as runtimes do to find their networks
 * (the first one is the default network). Bad files are returned with their error, not thrown.
 */
export async function loadConfLists(dir: string): Promise<LoadedConf[]> {
  const out: LoadedConf[] = [];
  for (const file of await loadConfFiles(dir)) {
    try {
      out.push({ file, list: await withSiblingPlugins(dir, await loadConfFile(file)) });
    } catch (err) {
      out.push({ file, error: CniError.from(err) });
    }
  }
  return out;
}

/**
 * Loads network `name` from `dir` like libcni's LoadNetworkConf: the first `.conflist` (sorted)
 * with that name, plus plugin objects from `<dir>/<name>/*.conf` unless loadOnlyInlinedPlugins;
 * else the first single-plugin `.conf`/`.json` with that name. Files that fail to parse are
 * skipped but named in the not-found error.
 */
export async function loadConfList(dir: string, name: string): Promise<NetConfList> {
  const skipped: string[] = [];
  const lists = await loadConfFiles(dir, ['.conflist']);
  for (const file of lists) {
    try {
      const list = await loadConfFile(file);
      if (list.name === name) return await withSiblingPlugins(dir, list);
    } catch (err) {
      skipped.push(`${(err as Error).message}`);
    }
  }
  for (const file of await loadConfFiles(dir, ['.conf', '.json'])) {
    try {
      const list = await loadConfFile(file);
      if (list.name === name) return list;
    } catch (err) {
      skipped.push(`${(err as Error).message}`);
    }
  }
  const tail = skipped.length ? `; unreadable files skipped: ${skipped.join(' | ')}` : '';
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `no net configuration with name "${name}" in ${dir}${tail}; add a .conflist whose "name" is "${name}"`,
  );
}

async function withSiblingPlugins(dir: string, list: NetConfList): Promise<NetConfList> {
  if (list.loadOnlyInlinedPlugins) return list;
  const extra: PluginConf[] = [];
  for (const file of await loadConfFiles(join(dir, list.name), ['.conf'])) {
    let obj: unknown;
    try {
      obj = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw new CniError(ErrorCode.DecodingFailure, `${file}: not valid JSON (${(err as Error).message})`);
    }
    if (typeof obj !== 'object' || obj === null || typeof (obj as { type?: unknown }).type !== 'string') {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${file}: type: missing; a plugin object needs a "type"`,
      );
    }
    extra.push(obj as PluginConf);
  }
  if (extra.length === 0) {
    if (list.plugins.length === 0) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `network "${list.name}": no plugin configs found; add "plugins"`,
      );
    }
    return list;
  }
  const plugins = [...list.plugins, ...extra];
  return { ...list, plugins, raw: { ...list.raw, plugins } };
}
