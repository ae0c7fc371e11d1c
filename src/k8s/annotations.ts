// The pod selection annotation `k8s.v1.cni.cncf.io/networks` (multi-net-spec §4.1), both forms:
// the comma list `[ns/]name[@ifname]` and the JSON list of selection elements. Pure: no I/O.
import { isIP } from 'node:net';
import { CniError, ErrorCode } from '../spec/errors.js';
import { isValidIfName } from '../spec/identifiers.js';
import type { BandwidthCapability, PortMapping } from '../spec/runtime-config.js';

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
const PROTOCOLS = new Set(['tcp', 'udp', 'sctp']);
const KNOWN_KEYS = new Set([
  'name',
  'namespace',
  'ips',
  'mac',
  'infiniband-guid',
  'interface',
  'interfaceRequest',
  'portMappings',
  'bandwidth',
  'cni-args',
  'default-route',
  'ipam-claim-reference',
  'deviceID',
]);

function invalid(where: string, msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `${where}: ${msg}`);
}

function checkName(where: string, field: string, v: unknown): string {
  if (typeof v !== 'string' || !DNS1123_LABEL.test(v) || v.length > 63) {
    throw invalid(
      where,
      `${field} ${JSON.stringify(v)} is not a valid name; use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
  return v;
}

function checkIfName(where: string, v: unknown): string {
  if (typeof v !== 'string' || !isValidIfName(v)) {
    throw invalid(
      where,
      `interface ${JSON.stringify(v)} is not a valid interface name; use 1 to 15 characters without '/', ':' or whitespace`,
    );
  }
  return v;
}

function isIpOrCidr(v: string): boolean {
  const slash = v.indexOf('/');
  if (slash < 0) return isIP(v) !== 0;
  const fam = isIP(v.slice(0, slash));
  const len = v.slice(slash + 1);
  if (fam === 0 || !/^\d{1,3}$/.test(len)) return false;
  return Number(len) <= (fam === 4 ? 32 : 128);
}

function checkPort(where: string, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw invalid(where, `${field} ${JSON.stringify(v)} must be a port number from 1 to 65535`);
  }
  return v;
}

function checkElement(raw: unknown, i: number, defaultNamespace: string): NetworkSelectionElement {
  const where0 = `${NETWORKS_ANNOTATION}: element ${i}`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalid(where0, `must be an object like {"name":"macvlan-conf"}, got ${JSON.stringify(raw)}`);
  }
  const o = raw as Record<string, unknown>;
  if (o.name === undefined || o.name === '')
    throw invalid(where0, 'name: missing; every element needs "name"');
  const name = checkName(where0, 'name', o.name);
  const where = `${where0} (${JSON.stringify(name)})`;
  const namespace =
    o.namespace === undefined || o.namespace === ''
      ? defaultNamespace
      : checkName(where, 'namespace', o.namespace);
  const el: NetworkSelectionElement = { name, namespace };
  for (const key of Object.keys(o)) {
    // Keys without a dot are reserved by the spec; vendor keys (reverse DNS) are allowed and ignored.
    if (!KNOWN_KEYS.has(key) && !key.includes('.')) {
      throw invalid(where, `unknown key ${JSON.stringify(key)}; keys without a '.' are reserved by the spec`);
    }
  }
  const ifname = o.interface !== undefined && o.interface !== '' ? o.interface : o.interfaceRequest;
  if (ifname !== undefined && ifname !== '') el.interface = checkIfName(where, ifname);
  if (o.ips !== undefined) {
    if (!Array.isArray(o.ips) || o.ips.length === 0) {
      throw invalid(where, `ips must be a non-empty list like ["10.1.1.5/24"], got ${JSON.stringify(o.ips)}`);
    }
    for (const ip of o.ips) {
      if (typeof ip !== 'string' || !isIpOrCidr(ip)) {
        throw invalid(
          where,
          `ips: ${JSON.stringify(ip)} is not an IP address or CIDR; use e.g. "10.1.1.5/24"`,
        );
      }
    }
    el.ips = [...(o.ips as string[])];
  }
  if (o.mac !== undefined) {
    if (typeof o.mac !== 'string' || !MAC_RE.test(o.mac)) {
      throw invalid(where, `mac ${JSON.stringify(o.mac)} is not a MAC address; use e.g. "c2:b0:57:49:47:f1"`);
    }
    el.mac = o.mac;
  }
  if (o['infiniband-guid'] !== undefined) {
    const g = o['infiniband-guid'];
    if (typeof g !== 'string' || !GUID_RE.test(g)) {
      throw invalid(
        where,
        `infiniband-guid ${JSON.stringify(g)} is not an 8-byte GUID; use e.g. "c2:11:22:33:44:55:66:77"`,
      );
    }
    el['infiniband-guid'] = g;
  }
  if (o.portMappings !== undefined) {
    if (!Array.isArray(o.portMappings)) throw invalid(where, 'portMappings must be a list');
    el.portMappings = o.portMappings.map((pm: unknown, j: number) => {
      const w = `${where}: portMappings[${j}]`;
      if (typeof pm !== 'object' || pm === null) throw invalid(w, 'must be an object');
      const p = pm as Record<string, unknown>;
      const out: PortMapping = {
        hostPort: checkPort(w, 'hostPort', p.hostPort),
        containerPort: checkPort(w, 'containerPort', p.containerPort),
      };
      if (p.protocol !== undefined) {
        if (typeof p.protocol !== 'string' || !PROTOCOLS.has(p.protocol.toLowerCase())) {
          throw invalid(w, `protocol ${JSON.stringify(p.protocol)} must be tcp, udp or sctp`);
        }
        out.protocol = p.protocol.toLowerCase();
      }
      if (p.hostIP !== undefined) {
        if (typeof p.hostIP !== 'string' || isIP(p.hostIP) === 0) {
          throw invalid(w, `hostIP ${JSON.stringify(p.hostIP)} is not an IP address`);
        }
        out.hostIP = p.hostIP;
      }
      return out;
    });
  }
  if (o.bandwidth !== undefined) el.bandwidth = checkBandwidth(where, o.bandwidth);
  if (o['cni-args'] !== undefined) {
    const a = o['cni-args'];
    if (typeof a !== 'object' || a === null || Array.isArray(a)) {
      throw invalid(where, `cni-args must be an object, got ${JSON.stringify(a)}`);
    }
    el['cni-args'] = { ...(a as Record<string, unknown>) };
  }
  if (o['default-route'] !== undefined) {
    const d = o['default-route'];
    if (!Array.isArray(d)) throw invalid(where, 'default-route must be a list of gateway IPs');
    for (const gw of d) {
      if (typeof gw !== 'string' || isIP(gw) === 0) {
        throw invalid(where, `default-route: ${JSON.stringify(gw)} is not an IP address`);
      }
    }
    el['default-route'] = [...(d as string[])];
  }
  if (o['ipam-claim-reference'] !== undefined) {
    if (typeof o['ipam-claim-reference'] !== 'string')
      throw invalid(where, 'ipam-claim-reference must be a string');
    if (el.ips) throw invalid(where, 'ipam-claim-reference cannot be combined with ips; remove one of them');
    el['ipam-claim-reference'] = o['ipam-claim-reference'];
  }
  if (o.deviceID !== undefined) {
    if (typeof o.deviceID !== 'string') throw invalid(where, 'deviceID must be a string');
    el.deviceID = o.deviceID;
  }
  return el;
}

function checkBandwidth(where: string, v: unknown): BandwidthCapability {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid(where, 'bandwidth must be an object');
  const b = v as Record<string, unknown>;
  const out: BandwidthCapability = {};
  for (const k of ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const) {
    const x = b[k];
    if (x === undefined) continue;
    if (typeof x !== 'number' || !Number.isInteger(x) || x <= 0) {
      throw invalid(where, `bandwidth.${k} ${JSON.stringify(x)} must be a positive integer (bits/s or bits)`);
    }
    out[k] = x;
  }
  if (out.ingressBurst !== undefined && out.ingressRate === undefined) {
    throw invalid(where, 'bandwidth.ingressBurst needs ingressRate; add the rate');
  }
  if (out.egressBurst !== undefined && out.egressRate === undefined) {
    throw invalid(where, 'bandwidth.egressBurst needs egressRate; add the rate');
  }
  return out;
}

function parseCommaItem(item: string, i: number, defaultNamespace: string): NetworkSelectionElement {
  const where = `${NETWORKS_ANNOTATION}: element ${i} (${JSON.stringify(item)})`;
  const at = item.split('@');
  if (at.length > 2) throw invalid(where, "more than one '@'; write [namespace/]name[@interface]");
  const slash = (at[0] ?? '').split('/');
  if (slash.length > 2) throw invalid(where, "more than one '/'; write [namespace/]name[@interface]");
  const [nsOrName = '', maybeName] = slash;
  const name = checkName(where, 'name', maybeName ?? nsOrName);
  const namespace = maybeName === undefined ? defaultNamespace : checkName(where, 'namespace', nsOrName);
  const el: NetworkSelectionElement = { name, namespace };
  if (at.length === 2) el.interface = checkIfName(where, at[1]);
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
    if (!Array.isArray(parsed)) {
      throw invalid(
        NETWORKS_ANNOTATION,
        'the JSON form must be a list of objects, e.g. [{"name":"macvlan-conf"}]',
      );
    }
    elements = parsed.map((el, i) => checkElement(el, i, defaultNamespace));
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
