// The pod selection annotation `k8s.v1.cni.cncf.io/networks` (multi-net-spec §4.1), both forms:
// the comma list `[ns/]name[@ifname]` and the JSON list of selection elements. Pure: no I/O.
import { CniError, ErrorCode } from '../spec/errors.js';
import type { BandwidthCapability, PortMapping } from '../spec/runtime-config.js';
import { conf, joinPath } from '../spec/schema.js';

/** Annotation a pod selects its attachment networks with. */
export const NETWORKS_ANNOTATION = 'k8s.v1.cni.cncf.io/networks';
/** Annotation the delegator writes with the outcome of every attachment. */
export const NETWORK_STATUS_ANNOTATION = 'k8s.v1.cni.cncf.io/network-status';
/** Pod annotation that replaces the cluster default network (looked up in multusNamespace). */
export const DEFAULT_NETWORK_ANNOTATION = 'v1.multus-cni.io/default-network';
/** NAD annotation naming a device-plugin resource. */
export const RESOURCE_NAME_ANNOTATION = 'k8s.v1.cni.cncf.io/resourceName';

/** One element of the selection annotation; `namespace` is always filled in after parsing. */
export interface NetworkSelectionElement {
  name: string;
  namespace: string;
  /** Requested addresses, bare or with a prefix (`runtimeConfig.ips`). */
  ips?: string[];
  /** Requested MAC (`runtimeConfig.mac`). */
  mac?: string;
  'infiniband-guid'?: string;
  /** Requested interface name in the pod (CNI_IFNAME). */
  interface?: string;
  portMappings?: PortMapping[];
  bandwidth?: BandwidthCapability;
  /** Merged into `args.cni` of every plugin of the delegate. */
  'cni-args'?: Record<string, unknown>;
  /** Gateways of the pod's default route(s), moved to this attachment. */
  'default-route'?: string[];
  'ipam-claim-reference'?: string;
  deviceID?: string;
}

/** DNS-1123 label, the name rule for networks and namespaces. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const MAC_RE = /^[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}$/;
const GUID_RE = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){7}$/;

function invalid(where: string, msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `${where}: ${msg}`);
}

/** A network or namespace name: a DNS-1123 label. */
const dnsLabel = conf
  .string()
  .max(63)
  .pattern(DNS1123_LABEL, 'is not a valid name')
  .fix("use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit");
const ifname = conf.ifname().fix("use 1 to 15 characters without '/', ':' or whitespace");
const port = conf.int(1, 65535).fix('use a port number from 1 to 65535');
const rate = conf.int(1).fix('use a positive integer (bits/s or bits)').optional();

const portMapping = conf
  .object({
    hostPort: port,
    containerPort: port,
    protocol: conf
      .string()
      .transform((p) => p.toLowerCase())
      .refine((p) => (['tcp', 'udp', 'sctp'].includes(p) ? undefined : 'must be tcp, udp or sctp'))
      .optional(),
    hostIP: conf.ip().optional(),
  })
  .transform((pm): PortMapping => {
    const out: PortMapping = { hostPort: pm.hostPort, containerPort: pm.containerPort };
    if (pm.protocol !== undefined) out.protocol = pm.protocol;
    if (pm.hostIP !== undefined) out.hostIP = pm.hostIP;
    return out;
  });

const bandwidth = conf
  .object({ ingressRate: rate, ingressBurst: rate, egressRate: rate, egressBurst: rate })
  .transform((b, path): BandwidthCapability => {
    for (const dir of ['ingress', 'egress'] as const) {
      if (b[`${dir}Burst`] !== undefined && b[`${dir}Rate`] === undefined) {
        throw invalid(`${path}.${dir}Burst`, `${b[`${dir}Burst`]} needs ${dir}Rate; add the rate`);
      }
    }
    const out: BandwidthCapability = {};
    for (const k of ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const) {
      if (b[k] !== undefined) out[k] = b[k];
    }
    return out;
  });

/** The keys of a selection element (multi-net-spec §4.1.2); keys without a '.' are reserved. */
const elementFields = {
  name: dnsLabel,
  namespace: dnsLabel.optional(),
  /** Requested addresses, bare or with a prefix. */
  ips: conf
    .array(conf.union([conf.ip(), conf.cidr()], 'is not an IP address or CIDR').fix('use e.g. "10.1.1.5/24"'))
    .min(1)
    .fix('use a non-empty list like ["10.1.1.5/24"]')
    .optional(),
  mac: conf.string().pattern(MAC_RE, 'is not a MAC address').fix('use e.g. "c2:b0:57:49:47:f1"').optional(),
  'infiniband-guid': conf
    .string()
    .pattern(GUID_RE, 'is not an 8-byte GUID')
    .fix('use e.g. "c2:11:22:33:44:55:66:77"')
    .optional(),
  interface: ifname.optional(),
  /** The deprecated name of `interface`. */
  interfaceRequest: ifname.optional(),
  portMappings: conf.array(portMapping).optional(),
  bandwidth: bandwidth.optional(),
  'cni-args': conf.json().optional(),
  'default-route': conf.array(conf.ip()).fix('use a list of gateway IPs').optional(),
  'ipam-claim-reference': conf.string().optional(),
  deviceID: conf.string().optional(),
};

/** One element of the JSON form; vendor keys (with a '.') are dropped, other unknown keys refused. */
const elementSchema = conf
  .object(elementFields)
  .fix('use an object like {"name":"macvlan-conf"}')
  .transform((o, path): Omit<NetworkSelectionElement, 'namespace'> & { namespace?: string } => {
    for (const key of Object.keys(o)) {
      if (!(key in elementFields) && !key.includes('.')) {
        throw invalid(
          path,
          `unknown key ${JSON.stringify(key)}; keys without a '.' are reserved by the spec`,
        );
      }
    }
    if (o['ipam-claim-reference'] !== undefined && o.ips) {
      throw invalid(path, 'ipam-claim-reference cannot be combined with ips; remove one of them');
    }
    const { interfaceRequest, ...rest } = o;
    const el: Record<string, unknown> = {};
    for (const key of Object.keys(elementFields)) {
      const v = (rest as Record<string, unknown>)[key];
      if (v !== undefined && key !== 'interfaceRequest') el[key] = v;
    }
    if (el.interface === undefined && interfaceRequest !== undefined) el.interface = interfaceRequest;
    return el as Omit<NetworkSelectionElement, 'namespace'>;
  });

const selectionSchema = conf.array(elementSchema).fix('write a list like [{"name":"macvlan-conf"}]');

function parseCommaItem(item: string, i: number, defaultNamespace: string): NetworkSelectionElement {
  const where = `${NETWORKS_ANNOTATION}: element ${i} (${JSON.stringify(item)})`;
  const at = item.split('@');
  if (at.length > 2) throw invalid(where, "more than one '@'; write [namespace/]name[@interface]");
  const slash = (at[0] ?? '').split('/');
  if (slash.length > 2) throw invalid(where, "more than one '/'; write [namespace/]name[@interface]");
  const [nsOrName = '', maybeName] = slash;
  const path = joinPath(NETWORKS_ANNOTATION, i);
  const name = dnsLabel.parse(maybeName ?? nsOrName, { path: `${path}.name` });
  const namespace =
    maybeName === undefined ? defaultNamespace : dnsLabel.parse(nsOrName, { path: `${path}.namespace` });
  const el: NetworkSelectionElement = { name, namespace };
  if (at.length === 2) el.interface = ifname.parse(at[1], { path: `${path}.interface` });
  return el;
}

/**
 * Parses the selection annotation. A value containing `[`, `{` or `"` is the JSON form, anything
 * else the comma form; elements without a namespace get `defaultNamespace` (the pod's). Rejects
 * invalid names, interface names over 15 characters, two elements asking for the same interface
 * and more than one element carrying `default-route`, with a CniError (code 7) naming the element.
 */
export function parseNetworkSelection(value: string, defaultNamespace: string): NetworkSelectionElement[] {
  const text = value.trim();
  if (text === '') return [];
  let elements: NetworkSelectionElement[];
  if (/[[{"]/.test(text)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw invalid(
        NETWORKS_ANNOTATION,
        `not valid JSON (${(e as Error).message}); write a list like [{"name":"macvlan-conf"}]`,
      );
    }
    elements = selectionSchema
      .parse(parsed, { path: NETWORKS_ANNOTATION })
      .map((el) => ({ ...el, namespace: el.namespace ?? defaultNamespace }));
  } else {
    elements = text
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s, i) => parseCommaItem(s, i, defaultNamespace));
  }
  const seen = new Map<string, number>();
  let routeOwner: number | undefined;
  elements.forEach((el, i) => {
    if (el.interface !== undefined) {
      const prev = seen.get(el.interface);
      if (prev !== undefined) {
        throw invalid(
          NETWORKS_ANNOTATION,
          `elements ${prev} and ${i} both request interface ${JSON.stringify(el.interface)}; give each attachment its own interface name`,
        );
      }
      seen.set(el.interface, i);
    }
    if (el['default-route'] !== undefined) {
      if (routeOwner !== undefined) {
        throw invalid(
          NETWORKS_ANNOTATION,
          `elements ${routeOwner} and ${i} both carry default-route; only one attachment can own the default route`,
        );
      }
      routeOwner = i;
    }
  });
  return elements;
}

/** True when the element carries only what the comma form can express. */
export function isSimpleSelection(el: NetworkSelectionElement): boolean {
  return Object.keys(el).every((k) => k === 'name' || k === 'namespace' || k === 'interface');
}

/**
 * Formats elements as the annotation value: the comma form (`ns/name@if`) when every element is
 * simple, else the JSON form. `parseNetworkSelection(formatNetworkSelection(x), ns)` gives back x.
 */
export function formatNetworkSelection(
  elements: readonly NetworkSelectionElement[],
  form: 'auto' | 'json' = 'auto',
): string {
  if (form === 'auto' && elements.every(isSimpleSelection)) {
    return elements.map((e) => `${e.namespace}/${e.name}${e.interface ? `@${e.interface}` : ''}`).join(',');
  }
  return JSON.stringify(elements);
}
