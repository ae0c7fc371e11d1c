// Well-known capabilities (CONVENTIONS.md) and the runtime-side injection of their values
// into a plugin's `runtimeConfig`, filtered by what the plugin declares.

/** `portMappings` capability entry (consumed by portmap). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol?: 'tcp' | 'udp' | 'sctp' | string;
  hostIP?: string;
}

/** One subnet of an `ipRanges` pool (consumed by host-local). */
export interface IPRangeCapability {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

/** `bandwidth` capability (rates in bit/s, bursts in bits). */
export interface BandwidthCapability {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** `dns` capability; note the keys differ from a result's DNS block. */
export interface DnsCapability {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

/** Every well-known capability and the shape of its value. */
export interface WellKnownCapabilities {
  portMappings: PortMapping[];
  /** Outer list: one entry per IP to allocate; inner list: the pool of subnets for it. */
  ipRanges: IPRangeCapability[][];
  bandwidth: BandwidthCapability;
  dns: DnsCapability;
  ips: string[];
  mac: string;
  infinibandGUID: string;
  deviceID: string;
  aliases: string[];
  cgroupPath: string;
  'io.kubernetes.cri.pod-annotations': Record<string, string>;
}

/** Names of the well-known capabilities. */
export const WELL_KNOWN_CAPABILITIES: ReadonlyArray<keyof WellKnownCapabilities> = [
  'portMappings',
  'ipRanges',
  'bandwidth',
  'dns',
  'ips',
  'mac',
  'infinibandGUID',
  'deviceID',
  'aliases',
  'cgroupPath',
  'io.kubernetes.cri.pod-annotations',
];

/** A plugin's `runtimeConfig`: typed well-known keys plus anything else a runtime sends. */
export type RuntimeConfig = Partial<WellKnownCapabilities> & { [capability: string]: unknown };

/** Capability values a runtime holds for one attachment. */
export type CapabilityArgs = Partial<WellKnownCapabilities> & { [capability: string]: unknown };

/**
 * Returns a copy of `pluginConf` whose `runtimeConfig` holds exactly the capability values the
 * plugin declares (`capabilities[cap] === true`) and the runtime supplied. Like libcni, nothing is
 * injected when that set is empty, and a non-empty set replaces any runtimeConfig in the file.
 */
export function injectRuntimeConfig<
  T extends { capabilities?: Record<string, boolean>; runtimeConfig?: unknown },
>(pluginConf: T, capabilityArgs: CapabilityArgs | undefined): T {
  const caps = pluginConf.capabilities ?? {};
  const rc: Record<string, unknown> = {};
  for (const [cap, enabled] of Object.entries(caps)) {
    if (enabled === true && capabilityArgs && Object.hasOwn(capabilityArgs, cap)) {
      const v = capabilityArgs[cap];
      if (v !== undefined && v !== null) rc[cap] = v;
    }
  }
  if (Object.keys(rc).length === 0) return { ...pluginConf };
  return { ...pluginConf, runtimeConfig: rc };
}

/** Reads a `dns` capability whose keys may be capitalised (CRI-O caches store Servers/Searches/Options). */
export function normalizeDnsCapability(v: unknown): DnsCapability {
  const out: DnsCapability = {};
  if (!v || typeof v !== 'object') return out;
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const key = k.toLowerCase();
    if ((key === 'servers' || key === 'searches' || key === 'options') && Array.isArray(val)) {
      out[key] = val.map(String);
    }
  }
  return out;
}
