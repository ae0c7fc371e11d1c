// The Device Information Specification of the Network Plumbing Working Group (v1.1.0): the JSON a
// device plugin, multus and a CNI plugin share about the device behind an attachment (a PCI VF, a
// vDPA, vhost-user or memif device), the files it travels in, and their names:
//   <dir>/dp/<resourceName>-<deviceID>-device.json   written by the device plugin
//   <dir>/cni/<network>-<containerID>_<ifname>       one per attachment: multus copies the device
//                                                    plugin's file there, the CNI plugin may write it
// with '/' in names replaced by '-'. multus puts what the second file holds into network-status.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { boundedFileName, writeFileAtomic } from '../fs/atomic.js';
import { CniError, ErrorCode } from '../spec/errors.js';

/** Where device information files live. */
export const DEVICE_INFO_DIR = '/var/run/k8s.cni.cncf.io/devinfo';
/** The spec version cni-kit writes. */
export const DEVICE_INFO_VERSION = '1.1.0';

/** The `pci` map: a PCI device (an SR-IOV VF or a PF). */
export type PciDeviceInfo = {
  /** BDF address, `dddd:BB:DD.f`. */
  'pci-address': string;
  'vhost-net'?: string;
  'rdma-device'?: string;
  /** The PF of a VF (1.1.0). */
  'pf-pci-address'?: string;
  /** The VF's representor netdev (1.1.0). */
  'representor-device'?: string;
};

/** The `vdpa` map. */
export type VdpaDeviceInfo = {
  'parent-device': string;
  driver: 'vhost' | 'virtio';
  path: string;
  'pci-address'?: string;
  'pf-pci-address'?: string;
  'representor-device'?: string;
};

/** The `vhost-user` map. */
export type VhostUserDeviceInfo = { mode: 'client' | 'server'; path: string };

/** The `memif` map. */
export type MemifDeviceInfo = {
  role: 'master' | 'slave';
  path: string;
  mode: 'ethernet' | 'ip' | 'inject-punt';
};

/** A device information document (the `device-info` of network-status). Unknown keys are kept. */
export type DeviceInformation = {
  type: 'pci' | 'vdpa' | 'vhost-user' | 'memif';
  /** `MAJOR.MINOR.PATCH` of the spec the writer followed. */
  version: string;
  pci?: PciDeviceInfo;
  vdpa?: VdpaDeviceInfo;
  'vhost-user'?: VhostUserDeviceInfo;
  memif?: MemifDeviceInfo;
  [key: string]: unknown;
};

/** Required keys of each type's map, with the values a key must take when it is an enumeration. */
const REQUIRED: Record<DeviceInformation['type'], Record<string, readonly string[] | null>> = {
  pci: { 'pci-address': null },
  vdpa: { 'parent-device': null, driver: ['vhost', 'virtio'], path: null },
  'vhost-user': { mode: ['client', 'server'], path: null },
  memif: { role: ['master', 'slave'], path: null, mode: ['ethernet', 'ip', 'inject-punt'] },
};

const fail = (where: string, msg: string): never => {
  throw new CniError(ErrorCode.DecodingFailure, `${where}: ${msg}`);
};

/**
 * Checks a device information document against the spec: `type` one of the four, `version`
 * `MAJOR.MINOR.PATCH` with major 1, and the map of that type with its required keys. Returns it.
 */
export function parseDeviceInfo(value: unknown, where: string): DeviceInformation {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(
      where,
      'device information must be a JSON object like {"type": "pci", "version": "1.1.0", "pci": {...}}',
    );
  const v = value as Record<string, unknown>;
  const type = v.type;
  if (typeof type !== 'string' || !(type in REQUIRED))
    fail(where, `type: ${JSON.stringify(type)} is not one of ${Object.keys(REQUIRED).join(', ')}`);
  if (typeof v.version !== 'string' || !/^1\.\d+\.\d+$/.test(v.version))
    fail(where, `version: ${JSON.stringify(v.version)} is not a 1.x.y version of the device-info spec`);
  const t = type as DeviceInformation['type'];
  const map = v[t];
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    fail(where, `${t}: missing; type "${t}" needs a "${t}" map`);
  for (const [key, allowed] of Object.entries(REQUIRED[t])) {
    const field = (map as Record<string, unknown>)[key];
    if (typeof field !== 'string' || field === '') fail(where, `${t}.${key}: missing; the spec requires it`);
    if (allowed && !allowed.includes(field as string))
      fail(where, `${t}.${key}: ${JSON.stringify(field)} is not one of ${allowed.join(', ')}`);
  }
  return v as DeviceInformation;
}

/** A PCI device's information, as cni-kit writes it when only the address is known. */
export function pciDeviceInfo(
  pciAddress: string,
  extra: Omit<PciDeviceInfo, 'pci-address'> = {},
): DeviceInformation {
  return { type: 'pci', version: DEVICE_INFO_VERSION, pci: { 'pci-address': pciAddress, ...extra } };
}

/** True for a PCI address in BDF form with its domain (`0000:03:02.1`), what SR-IOV device IDs are. */
export function isPciAddress(id: string): boolean {
  return /^[0-9a-fA-F]{4,}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/.test(id);
}

const dashes = (s: string) => s.replaceAll('/', '-');

/** The device plugin's file for a device: `<dir>/dp/<resourceName>-<deviceID>-device.json`. */
export function dpDeviceInfoPath(resourceName: string, deviceId: string, dir = DEVICE_INFO_DIR): string {
  return join(dir, 'dp', boundedFileName(`${dashes(resourceName)}-${dashes(deviceId)}-device.json`));
}

/**
 * The attachment's file (the `CNIDeviceInfoFile` capability): `<dir>/cni/<network>-<containerID>_<ifname>`,
 * multus's naming (a name past 255 bytes is shortened with a hash).
 */
export function cniDeviceInfoPath(
  networkName: string,
  containerId: string,
  ifname: string,
  dir = DEVICE_INFO_DIR,
): string {
  return join(dir, 'cni', boundedFileName(dashes(`${networkName}-${containerId}_${ifname}`)));
}

/** Reads and checks a device information file; undefined when there is none. */
export async function readDeviceInfo(path: string): Promise<DeviceInformation | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CniError(ErrorCode.IOFailure, `device information file ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return fail(`device information file ${path}`, `not JSON (${(err as Error).message})`);
  }
  return parseDeviceInfo(json, `device information file ${path}`);
}

/** Writes a device information file atomically, creating its directory as the spec asks. */
export async function writeDeviceInfo(path: string, info: DeviceInformation): Promise<void> {
  parseDeviceInfo(info, `device information for ${path}`);
  await writeFileAtomic(path, JSON.stringify(info), { mode: 0o644, dirMode: 0o755 });
}

/**
 * multus's step before calling a delegate: copies the device plugin's file for `deviceId` to the
 * attachment's file. False when the device plugin wrote none (most do not).
 */
export async function copyDpDeviceInfo(
  resourceName: string,
  deviceId: string,
  cniPath: string,
  dir = DEVICE_INFO_DIR,
): Promise<boolean> {
  const info = await readDeviceInfo(dpDeviceInfoPath(resourceName, deviceId, dir));
  if (!info) return false;
  await writeDeviceInfo(cniPath, info);
  return true;
}

/** Removes an attachment's device information file (CNI DEL); missing is fine. */
export async function removeDeviceInfo(path: string): Promise<void> {
  await rm(path, { force: true });
}
