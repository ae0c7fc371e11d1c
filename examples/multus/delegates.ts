// Which networks a pod gets, in which order and under which interface names (multi-net-spec
// §4–§6 with multus's rules), and the per-container cache that lets DEL work without the API.
import { readFile, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type CapabilityArgs, CniError, ErrorCode, type PodRef } from 'cni-kit';
import { boundedFileName, removeStaleTempFiles, type SyncBatch, writeFileAtomic } from 'cni-kit/fs';
import {
  type AttachmentConfig,
  configFromNad,
  DEFAULT_NETWORK_ANNOTATION,
  isKubeNotFound,
  type KubeClient,
  NETWORKS_ANNOTATION,
  type NetworkSelectionElement,
  normalizeDelegateConfig,
  type Pod,
  parseNetworkSelection,
  pluginsOf,
  podEvent,
  withCniArgs,
} from 'cni-kit/k8s';
import { loadConfFile, loadConfFiles, loadConfList } from 'cni-kit/runtime';
import { describeSystemError } from 'cni-kit/spec';
import type { MultusConf } from './config.js';
import { resourceNameOf } from './devices.js';

/** One network to attach, fully resolved. */
export interface Delegate {
  /** The CNI config to run (a single plugin or a list). */
  conf: AttachmentConfig;
  /** Status name: `<ns>/<nad>` for NADs, else the config's name. */
  name: string;
  ifname: string;
  /** The cluster default network: its result is the one returned. */
  master: boolean;
  /** Values handed to plugins that declare the capability. */
  capabilityArgs?: CapabilityArgs;
  /** Gateways this attachment takes the pod's default route(s) to. */
  defaultRoute?: string[];
  /** The device-plugin resource the NAD names (k8s.v1.cni.cncf.io/resourceName). */
  resourceName?: string;
  /** The device of that resource kubelet allocated to the pod, given to this attachment. */
  deviceID?: string;
}

/** Where the delegates come from. */
export interface PlanInput {
  conf: MultusConf;
  ifname: string;
  pod?: PodRef;
  /** The pod object when the API server answered. */
  podObject?: Pod;
  kube?: KubeClient;
  /** Only what the multus config names (cluster network, delegates, defaultNetworks): no pod annotations. */
  configOnly?: boolean;
}

/** Capability keys a selection element can request, with the capability they map to. */
const REQUESTS: Array<[keyof NetworkSelectionElement, string]> = [
  ['ips', 'ips'],
  ['mac', 'mac'],
  ['portMappings', 'portMappings'],
  ['bandwidth', 'bandwidth'],
  ['infiniband-guid', 'infinibandGUID'],
  ['deviceID', 'deviceID'],
];

/** Loads network `name` from confDir: a .conflist first, then a .conf/.json (spec §3.4.1). */
export async function configFromConfDir(confDir: string, name: string): Promise<AttachmentConfig> {
  const list = await loadConfList(confDir, name);
  return normalizeDelegateConfig(list.raw, `${confDir} network "${name}"`);
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
    throw new CniError(
      ErrorCode.IOFailure,
      `network config: ${describeSystemError(e) ?? `${path}: ${(e as Error).message}`}`,
    );
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

function withVersion(conf: AttachmentConfig, cniVersion: string): AttachmentConfig {
  // A delegate without cniVersion runs at the multus config's version, as the reference does.
  return typeof conf.cniVersion === 'string' && conf.cniVersion !== '' ? conf : { ...conf, cniVersion };
}

async function resolveByName(
  input: PlanInput,
  ref: string,
  namespace: string,
): Promise<{ conf: AttachmentConfig; name: string; resourceName?: string }> {
  const { conf, kube } = input;
  if (ref.includes('/')) {
    const c = await configFromPath(ref);
    return { conf: c, name: c.name as string };
  }
  // Also on a DEL without the delegate cache (configOnly): the cluster network named by a NAD is
  // still resolved through the API, or its address would leak.
  if (kube) {
    try {
      const nad = await kube.getNetworkAttachmentDefinition(namespace, ref);
      const resourceName = resourceNameOf(nad.metadata.annotations);
      return {
        conf: await configFromNad(nad, (n) => configFromConfDir(conf.confDir, n)),
        name: `${namespace}/${ref}`,
        ...(resourceName ? { resourceName } : {}),
      };
    } catch (err) {
      // On that DEL path any API failure falls back to confDir, as a 404 does.
      if (!isKubeNotFound(err) && !input.configOnly) throw err;
    }
  }
  try {
    const c = await configFromConfDir(conf.confDir, ref);
    return { conf: c, name: c.name as string };
  } catch (err) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `cannot find network ${JSON.stringify(ref)}: no NetworkAttachmentDefinition ${namespace}/${ref}${kube ? '' : ' (no kubeconfig)'} and ${(err as Error).message}`,
    );
  }
}

async function resolveElement(
  input: PlanInput,
  el: NetworkSelectionElement,
): Promise<{ conf: AttachmentConfig; resourceName?: string }> {
  const kube = input.kube;
  if (!kube) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `network ${el.namespace}/${el.name}: no kubeconfig to read it with`,
    );
  }
  let nad: Awaited<ReturnType<KubeClient['getNetworkAttachmentDefinition']>>;
  try {
    nad = await kube.getNetworkAttachmentDefinition(el.namespace, el.name);
  } catch (err) {
    const e = CniError.from(err);
    const message = `cannot find a network-attachment-definition (${el.name}) in namespace (${el.namespace}): ${e.message}`;
    if (input.podObject) {
      // multus tells the pod's owner why it cannot start: a Warning event (best effort).
      const ev = podEvent(input.podObject, 'Warning', 'NoNetworkFound', message, 'multus');
      await kube.createEvent(ev.metadata.namespace, ev).catch(() => undefined);
    }
    throw new CniError(e.code, message, e.details, { cause: err });
  }
  const byName = (n: string) => configFromConfDir(input.conf.confDir, n);
  const resourceName = resourceNameOf(nad.metadata.annotations);
  return {
    conf: withCniArgs(await configFromNad(nad, byName), el['cni-args']),
    ...(resourceName ? { resourceName } : {}),
  };
}

function requestsOf(el: NetworkSelectionElement): CapabilityArgs | undefined {
  const caps: CapabilityArgs = {};
  for (const [key, cap] of REQUESTS) if (el[key] !== undefined) caps[cap] = el[key];
  return Object.keys(caps).length ? caps : undefined;
}

/** Fails when a requested capability is declared by no plugin of the network (spec §4.1.2.1). */
export function checkCapabilities(d: Delegate): void {
  for (const cap of Object.keys(d.capabilityArgs ?? {})) {
    if (
      !pluginsOf(d.conf).some((p) => (p.capabilities as Record<string, unknown> | undefined)?.[cap] === true)
    ) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `network ${d.name}: the pod requests "${cap}" for ${d.ifname} but no plugin of this network declares capabilities {"${cap}": true}; add it to the plugin that applies it or drop the request from the annotation`,
      );
    }
  }
}

/**
 * Builds the ordered delegate list: the cluster network (or the pod's default-network
 * annotation), the inline delegates, defaultNetworks (not for system namespaces), then the pod's
 * selection annotation. Interface names: an explicit request, CNI_IFNAME for the cluster network,
 * else `net<position>`; duplicates are refused before anything is attached.
 */
export async function planDelegates(input: PlanInput): Promise<Delegate[]> {
  const { conf, pod } = input;
  const annotations = input.configOnly ? {} : (input.podObject?.metadata.annotations ?? {});
  const list: Array<Omit<Delegate, 'ifname'> & { want?: string }> = [];

  const defaultNet = annotations[DEFAULT_NETWORK_ANNOTATION];
  let master: { conf: AttachmentConfig; name: string; resourceName?: string };
  if (defaultNet && input.kube) {
    const els = parseNetworkSelection(defaultNet, conf.multusNamespace);
    if (els.length !== 1) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${DEFAULT_NETWORK_ANNOTATION}: ${els.length === 0 ? 'empty' : 'more than one default network is specified'}; name exactly one network`,
      );
    }
    const el = els[0] as NetworkSelectionElement;
    master = { ...(await resolveElement(input, el)), name: `${el.namespace}/${el.name}` };
  } else if (conf.clusterNetwork) {
    master = await resolveByName(input, conf.clusterNetwork, conf.multusNamespace);
  } else {
    const d0 = normalizeDelegateConfig(conf.delegates[0], 'multus config: delegates[0]');
    master = { conf: d0, name: d0.name as string };
  }
  const runtimeCaps =
    conf.runtimeConfig && Object.keys(conf.runtimeConfig).length ? conf.runtimeConfig : undefined;
  list.push({ ...master, master: true, ...(runtimeCaps ? { capabilityArgs: runtimeCaps } : {}) });

  if (!conf.clusterNetwork) {
    conf.delegates.slice(1).forEach((d, i) => {
      const c = normalizeDelegateConfig(d, `multus config: delegates[${i + 1}]`);
      list.push({ conf: c, name: c.name as string, master: false });
    });
  }
  const systemPod = pod !== undefined && conf.systemNamespaces.includes(pod.namespace);
  if (!systemPod) {
    for (const ref of conf.defaultNetworks) {
      const r = await resolveByName(input, ref, conf.multusNamespace);
      list.push({ ...r, master: false });
    }
  }

  const selection = annotations[NETWORKS_ANNOTATION];
  if (selection && pod && input.kube) {
    for (const el of parseNetworkSelection(selection, pod.namespace)) {
      if (
        conf.namespaceIsolation &&
        el.namespace !== pod.namespace &&
        !conf.globalNamespaces.includes(el.namespace)
      ) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `namespace isolation enabled, annotation violates permission, pod is in namespace ${pod.namespace} but refers to target namespace ${el.namespace}; create the NetworkAttachmentDefinition in ${pod.namespace} or list ${el.namespace} in globalNamespaces`,
        );
      }
      const caps = requestsOf(el);
      list.push({
        ...(await resolveElement(input, el)),
        name: `${el.namespace}/${el.name}`,
        master: false,
        ...(el.interface ? { want: el.interface } : {}),
        ...(caps ? { capabilityArgs: caps } : {}),
        ...(el['default-route'] ? { defaultRoute: el['default-route'] } : {}),
      });
    }
  }

  const used = new Map<string, string>();
  const out = list.map(({ want, ...d }, idx) => {
    const ifname = want ?? (d.master ? input.ifname : `net${idx}`);
    const prev = used.get(ifname);
    if (prev !== undefined) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `interface ${ifname} is requested by both ${prev} and ${d.name}; request distinct names in ${NETWORKS_ANNOTATION}`,
      );
    }
    used.set(ifname, d.name);
    const delegate: Delegate = { ...d, conf: withVersion(d.conf, conf.cniVersion), ifname };
    return delegate;
  });
  for (const d of out) if (!d.master) checkCapabilities(d);
  return out;
}

// ---- cache ----

/** Marker of our cache files; the reference writes a bare list, which is also read. */
const CACHE_KIND = 'cniKitMultusV1';

/**
 * Path of a container's delegate cache: `<cniDir>/<containerID>` as multus names it, or a hash of
 * the ID when that name would not fit the file system (an ID of hundreds of characters).
 */
export function cachePath(cniDir: string, containerId: string): string {
  return join(cniDir, boundedFileName(containerId));
}

/**
 * Writes the delegate list atomically (temp file, fsync, rename), mode 0600 in a 0700 dir; with
 * `syncBatch`, in place at once and durable when the batch is flushed (ADD flushes before it answers).
 */
export async function saveDelegates(
  cniDir: string,
  containerId: string,
  delegates: Delegate[],
  syncBatch?: SyncBatch,
): Promise<void> {
  const body = { kind: CACHE_KIND, containerId, delegates };
  await writeFileAtomic(cachePath(cniDir, containerId), JSON.stringify(body), {
    mode: 0o600,
    dirMode: 0o700,
    syncBatch,
  });
}

/** The cached delegates, `missing`, or `corrupt` with the reason (the caller falls back). */
export async function loadDelegates(
  cniDir: string,
  containerId: string,
  ifname: string,
): Promise<
  | { status: 'ok'; delegates: Delegate[] }
  | { status: 'missing' }
  | { status: 'corrupt'; path: string; reason: string }
> {
  const path = cachePath(cniDir, containerId);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'corrupt', path, reason: (err as Error).message };
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (Array.isArray(v)) return { status: 'ok', delegates: fromReferenceCache(v, ifname) };
    const o = v as { kind?: unknown; delegates?: unknown; containerId?: unknown };
    if (o?.kind !== CACHE_KIND || !Array.isArray(o.delegates)) throw new Error('not a multus delegate cache');
    if (o.containerId !== undefined && o.containerId !== containerId) {
      throw new Error(`it belongs to container ${String(o.containerId)}`);
    }
    const delegates = o.delegates as Delegate[];
    delegates.forEach((d, i) => {
      if (typeof d?.ifname !== 'string' || typeof d.name !== 'string')
        throw new Error(`delegate ${i} has no ifname/name`);
      normalizeDelegateConfig(d.conf, `delegate ${i}`);
    });
    if (delegates.length === 0) throw new Error('no delegates');
    return { status: 'ok', delegates };
  } catch (err) {
    return { status: 'corrupt', path, reason: (err as Error).message };
  }
}

/** Reads the Go multus cache (a list of DelegateNetConf with base64 `Bytes`). */
function fromReferenceCache(v: unknown[], ifname: string): Delegate[] {
  return v.map((raw, idx) => {
    const d = raw as { Bytes?: string; Name?: string; ifnameRequest?: string };
    if (typeof d?.Bytes !== 'string') throw new Error(`delegate ${idx} has no Bytes`);
    const conf = normalizeDelegateConfig(
      JSON.parse(Buffer.from(d.Bytes, 'base64').toString('utf8')),
      `delegate ${idx}`,
    );
    return {
      conf,
      name: d.Name || (conf.name as string),
      ifname: d.ifnameRequest || (idx === 0 ? ifname : `net${idx}`),
      master: idx === 0,
    };
  });
}

/** Removes a container's cache; missing is fine. */
export async function removeDelegates(cniDir: string, containerId: string): Promise<void> {
  await rm(cachePath(cniDir, containerId), { force: true });
  // A cache write killed between its temp file and the rename leaves `.tmp.*` (its writer is gone).
  removeStaleTempFiles(cniDir);
}
