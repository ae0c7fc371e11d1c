// Loads plugin bundles (the output of `cni-kit build`) into the daemon's process. A bundle is a
// program whose top level calls pluginMain; with a plugin host set (src/plugin/host.ts), that call
// registers the plugin instead of running it. Bundles are CommonJS files required in place, so
// their sidecars in lib/ beside them load as they do in exec mode, once for all bundles of a folder.
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { type HostedPlugin, PLUGIN_HOST_KEY, PLUGIN_HOST_PROTOCOL, type PluginHost } from '../plugin/host.js';

/** The marker `cni-kit build` writes as a bundle's second line. */
const MARKER = /^#![^\n]*\n\/\/ cni-kit plugin ([A-Za-z0-9._-]+)\n/;
/** Present in every bundle whose SDK can hand its plugin to a host. */
const HOST_AWARE = 'cni-kit.plugin-host';

/** One bundle the daemon serves. */
export interface LoadedPlugin {
  type: string;
  file: string;
  plugin: HostedPlugin;
}

/** A file of the folder that is not served, and why. */
export interface SkippedBundle {
  file: string;
  reason: string;
}

/** What loading a folder found. */
export interface LoadReport {
  plugins: LoadedPlugin[];
  skipped: SkippedBundle[];
}

function head(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/** Loads one bundle file and returns the plugin its pluginMain call registered. */
export function loadPluginBundle(file: string): LoadedPlugin {
  const abs = resolve(file);
  const m = MARKER.exec(head(abs));
  if (!m)
    throw new Error(`${abs} is not a cni-kit plugin bundle (no "// cni-kit plugin <type>" second line)`);
  const type = m[1] as string;
  if (!readFileSync(abs, 'latin1').includes(HOST_AWARE)) {
    throw new Error(
      `${abs} was built with a cni-kit that cannot run inside the daemon; rebuild it with this cni-kit (cni-kit build)`,
    );
  }
  const registered: HostedPlugin[] = [];
  const host: PluginHost = { register: (p) => registered.push(p) };
  const slot = globalThis as Record<symbol, unknown>;
  const before = slot[PLUGIN_HOST_KEY];
  slot[PLUGIN_HOST_KEY] = host;
  try {
    createRequire(abs)(abs);
  } finally {
    slot[PLUGIN_HOST_KEY] = before;
  }
  if (registered.length !== 1) {
    throw new Error(
      `${abs} registered ${registered.length} plugins while loading; a bundle calls pluginMain exactly once at its top level`,
    );
  }
  const plugin = registered[0] as HostedPlugin;
  if (plugin.protocol !== PLUGIN_HOST_PROTOCOL) {
    throw new Error(
      `${abs} speaks plugin-host protocol ${String(plugin.protocol)}, this daemon ${PLUGIN_HOST_PROTOCOL}`,
    );
  }
  return { type, file: abs, plugin };
}

/**
 * Loads every cni-kit bundle in the folders (other files are skipped silently, bundles that fail
 * to load are reported). The first folder that has a type wins.
 */
export function loadPluginBundles(dirs: readonly string[]): LoadReport {
  const plugins: LoadedPlugin[] = [];
  const skipped: SkippedBundle[] = [];
  const seen = new Set<string>();
  for (const dir of dirs) {
    for (const name of readdirSync(dir).sort()) {
      const file = join(dir, name);
      let st: ReturnType<typeof statSync>;
      try {
        st = statSync(file);
      } catch {
        continue;
      }
      if (!st.isFile()) continue;
      let text: string;
      try {
        text = head(file);
      } catch {
        continue;
      }
      const m = MARKER.exec(text);
      if (!m) continue;
      if (seen.has(m[1] as string)) {
        skipped.push({ file, reason: `type ${m[1]} is already served from an earlier folder` });
        continue;
      }
      try {
        const loaded = loadPluginBundle(file);
        seen.add(loaded.type);
        plugins.push(loaded);
      } catch (e) {
        skipped.push({ file, reason: e instanceof Error ? e.message : String(e) });
      }
    }
  }
  return { plugins, skipped };
}

const TRAILER = '\n--cni-kit-shim--\n';

/** What a shim's trailer says about where it sends calls (see native/cni-kit-shim.c). */
export interface ShimTarget {
  type: string;
  /** The trailer's `socket=`, when it has one. */
  socket: string | undefined;
}

/** The plugin type and socket a cni-kit shim's trailer names; undefined for any other file. */
export function readShimTarget(path: string): ShimTarget | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const magic = Buffer.alloc(4);
    if (readSync(fd, magic, 0, 4, 0) !== 4 || magic.toString('latin1') !== '\x7fELF') return undefined;
    const size = fstatSync(fd).size;
    const tail = Buffer.alloc(Math.min(4096, size));
    const text = tail.subarray(0, readSync(fd, tail, 0, tail.length, size - tail.length)).toString('utf8');
    const at = text.lastIndexOf(TRAILER);
    if (at < 0) return undefined;
    const fields = new Map<string, string>();
    for (const line of text.slice(at + TRAILER.length).split('\n')) {
      if (line === '--end--') break;
      const eq = line.indexOf('=');
      if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
    }
    const type = fields.get('type');
    return type ? { type, socket: fields.get('socket') || undefined } : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
