import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  openSync,
  readSync,
  type Stats,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrorCode } from '../spec/errors.js';

/** Refuses plugin types that could escape the plugin directories (the spec forbids `/` and `\`). */
export function validatePluginType(type: unknown, field = 'type'): asserts type is string {
  if (typeof type !== 'string' || type === '') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: ${type === undefined ? 'missing plugin type' : `${JSON.stringify(type)} is not a plugin type`}; set it to the plugin binary's name, e.g. "bridge"`,
    );
  }
  if (type.includes('/') || type.includes('\\')) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: invalid plugin type ${JSON.stringify(type)}: a type is a binary name looked up on CNI_PATH and must not contain "/" or "\\"; put the directory on CNI_PATH and use the file name`,
    );
  }
}

/**
 * Finds the first executable regular file named `type` in `paths` (in order), following symlinks.
 * Unlike libcni, which takes any regular file, a non-executable match is skipped and named in the error.
 */
export async function findInPath(type: string, paths: readonly string[]): Promise<string> {
  validatePluginType(type);
  if (paths.length === 0) {
    throw new CniError(
      ErrorCode.InvalidEnvironmentVariables,
      `cannot find plugin "${type}": no plugin directories given; set CNI_PATH (or the runtime's pluginDirs)`,
    );
  }
  const { found, notExecutable } = await search(type, paths);
  if (found) return found;
  const extra = notExecutable.length ? `; found but not executable: ${notExecutable.join(', ')}` : '';
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `failed to find plugin "${type}" in path [${paths.join(' ')}]${extra}; install the plugin into one of these directories or fix the "type" field`,
  );
}

/** The binary `findInPath` would run for `type`, or undefined when there is none (no throw). */
export async function lookPath(type: string, paths: readonly string[]): Promise<string | undefined> {
  validatePluginType(type);
  return (await search(type, paths)).found;
}

async function search(
  type: string,
  paths: readonly string[],
): Promise<{ found?: string; notExecutable: string[] }> {
  const notExecutable: string[] = [];
  for (const dir of paths) {
    const candidate = join(dir, type);
    // Sync calls: a stat and an access on local files, and node:fs/promises stays unloaded.
    let st: Stats;
    try {
      st = statSync(candidate);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return { found: candidate, notExecutable };
    } catch {
      notExecutable.push(candidate);
    }
  }
  return { notExecutable };
}

/**
 * The marker a cni-kit plugin binary carries as its second line, right after the shebang (written
 * by the build): `// cni-kit plugin <type>`. Read, never exec'd: finding out costs one small read.
 */
const BINARY_MARKER = /^#![^\n]*\n\/\/ cni-kit plugin ([^\s/\\]+)\n/;

/** How many leading bytes hold the marker. */
const MARKER_WINDOW = 256;

/**
 * A cni-kit shim (daemon mode) carries its plugin type in a trailer after its ELF image, written
 * by `cni-kit build --shim`: `\n--cni-kit-shim--\ntype=<type>\n...`. It sits in the file's last 4 KiB.
 */
const SHIM_MARKER = /\n--cni-kit-shim--\ntype=([^\s/\\]+)\n/g;
const SHIM_WINDOW = 4096;

/**
 * The plugin type a cni-kit binary says it is: a bundle by the marker in its first bytes, a shim by
 * its trailer; undefined for any other program (a Go plugin, a script) or an unreadable file.
 * Either way the type runs in-process where the caller has it built in, as it would behind the shim.
 */
export async function cniKitBinaryType(path: string): Promise<string | undefined> {
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(MARKER_WINDOW);
      const text = buf.subarray(0, readSync(fd, buf, 0, MARKER_WINDOW, 0)).toString('latin1');
      const bundle = BINARY_MARKER.exec(text)?.[1];
      if (bundle !== undefined || !text.startsWith('\x7fELF')) return bundle;
      const size = fstatSync(fd).size;
      const tail = Buffer.alloc(Math.min(SHIM_WINDOW, size));
      const start = size - tail.length;
      const end = tail.subarray(0, readSync(fd, tail, 0, tail.length, start)).toString('latin1');
      let type: string | undefined;
      for (const m of end.matchAll(SHIM_MARKER)) type = m[1];
      return type;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}
