import { CniError, ErrorCode } from './errors.js';

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ID_FIX = "use letters, digits, '_', '.' and '-', starting with a letter or digit";

// Names and container IDs end up in file names: host-local's `<dataDir>/<name>/`, a meta plugin's
// `<dir>/<containerID>`, and the runtime's cache file `<name>-<containerID>-<ifname>` (libcni's
// format). A path component holds at most 255 bytes, so the two limits are chosen to keep that
// longest one within it: 128 + 1 + 110 + 1 + 15 = 255. Runtimes use far shorter IDs (64 hex digits
// for Docker, containerd, CRI-O and podman; containerd caps its IDs at 76).

/** The longest network name (`name`) accepted, in bytes. */
export const MAX_NETWORK_NAME_BYTES = 128;

/** The longest container ID (CNI_CONTAINERID) accepted, in bytes. */
export const MAX_CONTAINER_ID_BYTES = 110;

/** True when a container ID is longer than MAX_CONTAINER_ID_BYTES: no attachment can exist for it. */
export function containerIdTooLong(id: string): boolean {
  return Buffer.byteLength(id, 'utf8') > MAX_CONTAINER_ID_BYTES;
}

/** True when a network name is longer than MAX_NETWORK_NAME_BYTES: no state can exist for it. */
export function networkNameTooLong(name: string): boolean {
  return Buffer.byteLength(name, 'utf8') > MAX_NETWORK_NAME_BYTES;
}

/**
 * Checks a container ID: empty is code 3 (unknown container), bad characters code 4, and longer
 * than `maxBytes` (default MAX_CONTAINER_ID_BYTES, the plugin side's limit) code 4. A runtime,
 * whose cache names are bounded whatever the ID, passes `Number.POSITIVE_INFINITY` as libcni does.
 */
export function validateContainerId(id: string, maxBytes = MAX_CONTAINER_ID_BYTES): void {
  if (id === '')
    throw new CniError(ErrorCode.UnknownContainer, 'missing containerID: CNI_CONTAINERID is empty');
  if (!ID_RE.test(id)) {
    throw new CniError(
      ErrorCode.InvalidEnvironmentVariables,
      `invalid characters in containerID ${JSON.stringify(id)}; ${ID_FIX}`,
      id,
    );
  }
  if (Buffer.byteLength(id, 'utf8') > maxBytes) {
    throw new CniError(
      ErrorCode.InvalidEnvironmentVariables,
      `CNI_CONTAINERID: ${Buffer.byteLength(id, 'utf8')} bytes is too long; the limit is ${maxBytes} bytes (container IDs become parts of file names); use a shorter ID`,
      `${id.slice(0, 40)}...`,
    );
  }
}

/** Checks a network name (code 7 when missing or malformed). */
export function validateNetworkName(name: string): void {
  if (name === '')
    throw new CniError(ErrorCode.InvalidNetworkConfig, 'missing network name: set "name" in the config');
  if (!ID_RE.test(name)) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `name: invalid characters found in network name ${JSON.stringify(name)}; ${ID_FIX}`,
    );
  }
  if (networkNameTooLong(name)) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, networkNameTooLongMessage(name));
  }
}

/** The message for a network name over the limit (the config parsers use it too). */
export function networkNameTooLongMessage(name: string): string {
  return `name: ${Buffer.byteLength(name, 'utf8')} bytes is too long; the limit is ${MAX_NETWORK_NAME_BYTES} bytes (the name becomes part of file names); use a shorter network name`;
}

/** Checks an interface name: 1–15 bytes, not "." or "..", no '/', ':' or whitespace (code 4). */
export function validateIfName(name: string): void {
  const bad = (msg: string, details?: string) =>
    new CniError(ErrorCode.InvalidEnvironmentVariables, `CNI_IFNAME: ${msg}`, details);
  if (name === '') throw bad('interface name is empty; set it, e.g. "eth0"');
  if (Buffer.byteLength(name, 'utf8') > 15) {
    throw bad(
      `interface name ${JSON.stringify(name)} is too long`,
      'interface name should be less than 16 characters',
    );
  }
  if (name === '.' || name === '..') throw bad(`interface name is ${JSON.stringify(name)}; pick a real name`);
  if (/[/:\s]/u.test(name)) {
    throw bad(`interface name ${JSON.stringify(name)} contains / or : or whitespace characters; remove them`);
  }
}

/** True when `name` is a valid interface name. */
export function isValidIfName(name: string): boolean {
  try {
    validateIfName(name);
    return true;
  } catch {
    return false;
  }
}
