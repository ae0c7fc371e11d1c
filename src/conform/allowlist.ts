// What may stay behind after DEL by design: the one place the leftover checks consult. Anything
// not matched here that a flow's snapshots differ in is a failure.

/** Name patterns of one kind of leftover, each matched against a whole name. */
export type NamePatterns = readonly RegExp[];

const matches = (list: NamePatterns, name: string): boolean => list.some((re) => re.test(name));

/** The chains of portmap's nftables table `cni_hostport`, the same in families `ip` and `ip6`. */
const HOSTPORT_NFT_CHAINS: readonly string[] = [
  'prerouting',
  'output',
  'hostports_all',
  'hostip_hostports',
  'hostports',
  'masquerading',
];

export const BY_DESIGN_LEFTOVERS = {
  /**
   * Links a plugin creates once per node and shares between containers, from the config: the
   * bridge of a `bridge` plugin (`bridge`, default `cni0`) and, with `vlan` and `isGateway`, its
   * VLAN gateway link `<bridge>.<vlan>`; the same for the bridges a `flannel` config (`delegate`,
   * type bridge by default) or a `multus` config (`delegates`) delegates to. The link, its attributes and its addresses may change.
   */
  sharedLinks(config: Record<string, unknown>): string[] {
    const obj = (v: unknown): Record<string, unknown> =>
      typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
    if (config.type === 'flannel') {
      const delegate = obj(config.delegate);
      return BY_DESIGN_LEFTOVERS.sharedLinks({ ...delegate, type: delegate.type ?? 'bridge' });
    }
    if (config.type === 'multus' && Array.isArray(config.delegates)) {
      // Each delegate is a network config or a list of them (`plugins`).
      return config.delegates.flatMap((d) => {
        const plugins = obj(d).plugins;
        return (Array.isArray(plugins) ? plugins : [d]).flatMap((p) =>
          BY_DESIGN_LEFTOVERS.sharedLinks(obj(p)),
        );
      });
    }
    if (config.type !== 'bridge') return [];
    const bridge = typeof config.bridge === 'string' && config.bridge !== '' ? config.bridge : 'cni0';
    const vlan = typeof config.vlan === 'number' && config.vlan > 0 ? config.vlan : 0;
    const gateway = config.isGateway === true || config.isDefaultGateway === true;
    return vlan && gateway ? [bridge, `${bridge}.${vlan}`] : [bridge];
  },

  /**
   * Files in a data dir that allocators keep between calls (matched on the base name): host-local's
   * `last_reserved_ip.<range>` and `lock`, and the allocation cursor of cni-kit's whereabouts file
   * store (`pools/<range>/cursor`, the same idea as last_reserved_ip).
   */
  dataFiles: [/^last_reserved_ip\.\d+$/, /^lock$/, /^cursor$/] as NamePatterns,

  /**
   * iptables chains shared by all containers of a node. The declaration may stay, and so may rules
   * in them or in built-in chains that jump to a shared chain or a built-in target, as long as the
   * rule names no address and no container ID of the run (those are per container).
   */
  sharedChains: [
    /^CNI-FORWARD$/,
    /^CNI-ADMIN$/,
    /^CNI-HOSTPORT-[A-Z]+$/,
    // The firewall plugin's ingressPolicy same-bridge/isolated: its rules name bridges, not containers.
    /^CNI-ISOLATION-STAGE-[12]$/,
  ] as NamePatterns,

  /**
   * nftables tables shared by all containers of a node, with the chains of each whose plumbing may
   * stay: portmap's `cni_hostport` (families `ip` and `ip6`): the hook chains `prerouting` and
   * `output` jump to `hostports_all`, which jumps to `hostip_hostports` and `hostports`. Such a rule
   * may stay when it jumps (if at all) only to a chain of that list and names no address and no
   * container ID of the run; the container's own rules (DNAT and masquerade, commented with its
   * ID) may not. Chains of any table may stay (nft tables and chains are declarations).
   */
  sharedNftChains: {
    'ip cni_hostport': HOSTPORT_NFT_CHAINS,
    'ip6 cni_hostport': HOSTPORT_NFT_CHAINS,
  } as Readonly<Record<string, readonly string[]>>,

  /** Chains whose declaration may stay only while they hold no rule. */
  emptyChains: [/^CNI-DN-/] as NamePatterns,

  /** Built-in chains: iptables-nft creates them (and their table) on first use and keeps them. */
  builtinChains: ['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING'] as readonly string[],

  /** Route protocols the kernel adds by itself (from addresses, links and router adverts). */
  kernelRouteProtocols: ['kernel', 'ra'] as readonly string[],

  /**
   * Addresses the kernel configures by itself when a link goes up, which stay after a plugin sets
   * it down again: 127.0.0.1/8 and ::1/128 on `lo`, and IPv6 link-local (fe80::/10) addresses.
   */
  isKernelAddress(dev: string, family: string, local: string, prefixlen: number): boolean {
    if (dev === 'lo' && family === 'inet' && local === '127.0.0.1' && prefixlen === 8) return true;
    if (dev === 'lo' && family === 'inet6' && local === '::1' && prefixlen === 128) return true;
    return family === 'inet6' && /^fe[89ab][0-9a-f]:/i.test(local);
  },

  /** State the kit never compares: sysctls (e.g. ip_forward, per-interface settings) and tc qdiscs. */
  notCompared: ['sysctls', 'tc qdiscs and filters', 'conntrack entries'] as readonly string[],

  isDataFile(base: string): boolean {
    return matches(BY_DESIGN_LEFTOVERS.dataFiles, base);
  },
  isSharedChain(name: string): boolean {
    return matches(BY_DESIGN_LEFTOVERS.sharedChains, name);
  },
  isEmptyOnlyChain(name: string): boolean {
    return matches(BY_DESIGN_LEFTOVERS.emptyChains, name);
  },
  isBuiltinChain(name: string): boolean {
    return BY_DESIGN_LEFTOVERS.builtinChains.includes(name);
  },
  /**
   * Whether an nft rule (`table` as `ip cni_hostport`, `chain` its name, `rule` as `nft list
   * ruleset` prints it) is in a shared chain and jumps only to shared chains. Whether it names an
   * address or the run's container IDs is for the caller to check, as for iptables rules.
   */
  isSharedNftRule(table: string, chain: string, rule: string): boolean {
    const chains = BY_DESIGN_LEFTOVERS.sharedNftChains[table];
    if (!chains?.includes(chain)) return false;
    const targets = [...rule.matchAll(/(?:^|\s)(?:jump|goto)\s+(\S+)/g)].map((m) => m[1]!);
    // A verdict map (`vmap { ... : jump x }`) may hold per-container chains: never shared.
    if (/\bvmap\b/.test(rule)) return false;
    return targets.every((t) => chains.includes(t));
  },
};
