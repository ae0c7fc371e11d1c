// Device-plugin integration (SR-IOV and the like): a NetworkAttachmentDefinition annotated with
// k8s.v1.cni.cncf.io/resourceName gets, per attachment, one of the devices kubelet allocated to
// the pod for that resource (from kubelet's PodResources API); the device ID goes into every
// plugin's config (`deviceID`, and `pciBusID` for host-device) and into runtimeConfig (`deviceID`,
// `CNIDeviceInfoFile`) for plugins declaring those capabilities. The device-info file of the
// attachment is prepared before the delegate runs (the device plugin's copied) and read after
// it, for network-status.
import { CniError, ErrorCode, type PodRef } from 'cni-kit';
import {
  type AttachmentConfig,
  cniDeviceInfoPath,
  connectPodResources,
  copyDpDeviceInfo,
  type DeviceInformation,
  isConfList,
  isPciAddress,
  type PodResourcesClient,
  pciDeviceInfo,
  podDeviceIds,
  RESOURCE_NAME_ANNOTATION,
  readDeviceInfo,
  removeDeviceInfo,
  writeDeviceInfo,
} from 'cni-kit/k8s';
import type { Delegate } from './delegates.js';

/** Opens kubelet's PodResources API at `socket`. */
export type PodResourcesConnect = (socket: string) => Promise<PodResourcesClient>;

/** The default: @grpc/grpc-js on the socket, 10 s per call. */
export const defaultPodResources: PodResourcesConnect = (socket) => connectPodResources({ socket });

/** The resource a NAD's annotations name, if any. */
export function resourceNameOf(annotations: Record<string, string> | undefined): string | undefined {
  const r = annotations?.[RESOURCE_NAME_ANNOTATION]?.trim();
  return r ? r : undefined;
}

/** The config with `deviceID` and `pciBusID` set in every plugin (a list's too), as multus does. */
export function withDeviceId(conf: AttachmentConfig, deviceId: string): AttachmentConfig {
  const set = (p: Record<string, unknown>) => ({ ...p, deviceID: deviceId, pciBusID: deviceId });
  if (isConfList(conf))
    return { ...conf, plugins: (conf.plugins as Array<Record<string, unknown>>).map(set) };
  return set(conf);
}

/**
 * Gives each delegate whose NAD names a resource the next device kubelet allocated to the pod for
 * that resource, in delegate order: its config and runtimeConfig carry the device ID from then on.
 * kubelet is asked once, and only when a delegate needs it. Runs after the capability check, since
 * these runtimeConfig keys are multus's own, not the pod's requests.
 */
export async function assignDevices(
  delegates: Delegate[],
  pod: PodRef | undefined,
  opts: { socket: string; connect: PodResourcesConnect; containerId: string; deviceInfoDir: string },
): Promise<void> {
  const wanting = delegates.filter((d) => d.resourceName);
  if (wanting.length === 0) return;
  if (!pod) {
    // multus only looks devices up for a known pod; without K8S_POD_* there is none to ask for.
    return;
  }
  let allocated: Map<string, string[]>;
  let client: PodResourcesClient | undefined;
  try {
    client = await opts.connect(opts.socket);
    allocated = await podDeviceIds(client, pod.namespace, pod.name);
  } catch (err) {
    const e = CniError.from(err);
    const d = wanting[0] as Delegate;
    throw new CniError(
      e.code,
      `network ${d.name} (${RESOURCE_NAME_ANNOTATION}: ${d.resourceName}): cannot read the devices kubelet allocated to pod ${pod.namespace}/${pod.name}: ${e.message}`,
      e.details,
      { cause: err },
    );
  } finally {
    client?.close();
  }
  const used = new Map<string, number>();
  for (const d of wanting) {
    const resource = d.resourceName as string;
    const ids = allocated.get(resource) ?? [];
    const i = used.get(resource) ?? 0;
    const id = ids[i];
    if (id === undefined) {
      const users = wanting.filter((w) => w.resourceName === resource).length;
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        ids.length === 0
          ? `network ${d.name} needs a device of resource "${resource}" (${RESOURCE_NAME_ANNOTATION}) but kubelet allocated none to pod ${pod.namespace}/${pod.name}`
          : `pod ${pod.namespace}/${pod.name} has ${ids.length} device(s) of resource "${resource}" but ${users} of its networks use that resource; network ${d.name} is left without one`,
        `request one "${resource}" per network that uses it in a container's resources (requests and limits, e.g. "${resource}": "${users}")`,
      );
    }
    used.set(resource, i + 1);
    d.deviceID = id;
    d.conf = withDeviceId(d.conf, id);
    d.capabilityArgs = {
      ...(d.capabilityArgs ?? {}),
      // A deviceID the pod asked for in its selection wins, as it does for every other request.
      deviceID: d.capabilityArgs?.deviceID ?? id,
      CNIDeviceInfoFile: cniDeviceInfoPath(d.name, opts.containerId, d.ifname, opts.deviceInfoDir),
    };
  }
}

/** The attachment's device-info file path, when multus manages one for this delegate. */
export function deviceInfoFileOf(d: Delegate): string | undefined {
  const f = d.capabilityArgs?.CNIDeviceInfoFile;
  return d.deviceID && typeof f === 'string' ? f : undefined;
}

/**
 * Before the delegate's ADD: the device plugin's device-info file for this device, copied to the
 * attachment's. A device plugin that wrote none, or an unreadable one, is logged, not fatal (the
 * delegate may write the file itself).
 */
export async function prepareDeviceInfo(d: Delegate, dir: string, log: (m: string) => void): Promise<void> {
  const file = deviceInfoFileOf(d);
  if (!file || !d.resourceName || !d.deviceID) return;
  try {
    await copyDpDeviceInfo(d.resourceName, d.deviceID, file, dir);
  } catch (err) {
    log(`multus: device-info of ${d.resourceName} ${d.deviceID} not copied: ${(err as Error).message}`);
  }
}

/**
 * After the delegate's ADD: what the attachment's device-info file holds, for network-status. When
 * neither the device plugin nor the delegate wrote one and the device ID is a PCI address, cni-kit
 * writes the PCI document itself, so the pod sees its VF's address either way.
 */
export async function collectDeviceInfo(
  d: Delegate,
  log: (m: string) => void,
): Promise<DeviceInformation | undefined> {
  const file = deviceInfoFileOf(d);
  if (!file || !d.deviceID) return undefined;
  try {
    const found = await readDeviceInfo(file);
    if (found) return found;
    if (!isPciAddress(d.deviceID)) return undefined;
    const info = pciDeviceInfo(d.deviceID);
    await writeDeviceInfo(file, info);
    return info;
  } catch (err) {
    log(`multus: device-info of ${d.name}: ${(err as Error).message}`);
    return undefined;
  }
}

/**
 * DEL (and a rolled-back ADD): the attachment's device-info file goes; missing is fine. Delegates
 * rebuilt without the cache know their resource but not their device: the name is the same.
 */
export async function dropDeviceInfo(
  d: Delegate,
  containerId: string,
  dir: string,
  log: (m: string) => void,
): Promise<void> {
  const file =
    deviceInfoFileOf(d) ??
    (d.resourceName ? cniDeviceInfoPath(d.name, containerId, d.ifname, dir) : undefined);
  if (!file) return;
  await removeDeviceInfo(file).catch((err) =>
    log(`multus: cannot remove device-info file ${file}: ${(err as Error).message}`),
  );
}
