import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { CniError, ErrorCode } from '../spec/errors.js';

/** Splits a CNI_PATH value on the OS list separator, dropping empty entries. */
export function splitCniPath(value: string | undefined): string[] {
  if (!value) return [];
  return value.split(delimiter).filter((p) => p !== '');
}

/** Refuses plugin types that could escape the plugin directories (the spec forbids `/` and `\`). */
export function validatePluginType(type: unknown, field = 'type'): asserts type is string {
  if (typeof type !== 'string' || type === '') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: missing plugin type (got ${JSON.stringify(type)}); set it to the plugin binary's name, e.g. "bridge"`,
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
  const notExecutable: string[] = [];
  for (const dir of paths) {
    const candidate = join(dir, type);
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(candidate);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      notExecutable.push(candidate);
    }
  }
  const extra = notExecutable.length ? `; found but not executable: ${notExecutable.join(', ')}` : '';
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `failed to find plugin "${type}" in path [${paths.join(' ')}]${extra}; install the plugin into one of these directories or fix the "type" field`,
  );
}
