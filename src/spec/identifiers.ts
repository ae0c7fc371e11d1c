import { CniError, ErrorCode } from './errors.js';

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ID_FIX = "use letters, digits, '_', '.' and '-', starting with a letter or digit";

/** Checks a container ID: empty is code 3 (unknown container), bad characters code 4. */
export function validateContainerId(id: string): void {
  if (id === '')
    throw new CniError(ErrorCode.UnknownContainer, 'missing containerID: CNI_CONTAINERID is empty');
  if (!ID_RE.test(id)) {
    throw new CniError(
      ErrorCode.InvalidEnvironmentVariables,
      `invalid characters in containerID ${JSON.stringify(id)}; ${ID_FIX}`,
      id,
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
