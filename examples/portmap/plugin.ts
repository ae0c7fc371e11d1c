// portmap: forwards host ports to the container (chained after a plugin that gave it addresses),
// with the reference's config, its iptables chains (so the Go plugin and this one remove each
// other's rules) and its nftables table. Like the reference it reserves nothing: a host service on
// the same port loses its traffic to the container, and the last ADD for a port wins.
import {
  type Attachment,
  CniError,
  CURRENT_VERSION,
  conf,
  ErrorCode,
  type Infer,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import { addWithRollback, type IptablesRunner, requirePrevResult, spawnIptables } from 'cni-kit/netsetup';
import { parseCIDR, parseIP, subnetContains } from 'cni-kit/spec';
import {
  checkIptables,
  forwardIptables,
  iptablesContainers,
  planIptables,
  unforwardIptables,
} from './iptables.js';
import { checkNft, forwardNft, nftWorks, unforwardNft } from './nftables.js';
import { containerAddresses, type Family, type Mapping, normalizeIp, type PortmapRules } from './rules.js';

/** The reference's default masquerade mark bit (Kubernetes uses 14 and 15, Calico 20-31). */
export const DEFAULT_MARK_BIT = 13;

const port = (what: string) =>
  conf.int(1, 65535).fix(`use the ${what} port, from 1 to 65535 (0 is not a port that can be mapped)`);

const protocol = conf.custom((v, path) => {
  const p = typeof v === 'string' ? v.toLowerCase() : undefined;
  if (p === 'tcp' || p === 'udp' || p === 'sctp') return p;
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `${path}: ${JSON.stringify(v)} is not a protocol portmap forwards; use "tcp", "udp" or "sctp"`,
  );
});

/** One entry of runtimeConfig.portMappings (the `portMappings` capability). */
export const portMapping = conf.object({
  hostPort: port('host'),
  containerPort: port('container'),
  protocol: protocol.default('tcp'),
  hostIP: conf
    .ip()
    .optional()
    .transform((ip) => (ip === undefined ? undefined : normalizeIp(ip))),
});

const conditions = conf
  .array(conf.string())
  .fix('use a list of strings, e.g. ["-s", "10.0.0.0/8"]')
  .optional();

/** The portmap plugin's own config fields, with the reference's defaults. */
export const portmapConfig = conf
  .object({
    /** Which firewall the rules go to; unset: iptables, unless only nft works here. */
    backend: conf.enum(['iptables', 'nftables']).optional(),
    /** Masquerade hairpin and localhost traffic to the mapped ports (default true). */
    snat: conf.bool().default(true),
    /** Masquerade traffic to the mapped ports from any source, not only hairpin and localhost. */
    masqAll: conf.bool().default(false),
    /** The bit of the packet mark that asks CNI-HOSTPORT-MASQ to masquerade (iptables). */
    markMasqBit: conf.int(0, 31).optional(),
    /** A chain of someone else's (e.g. KUBE-MARK-MASQ) to jump to instead of CNI-HOSTPORT-SETMARK. */
    externalSetMarkChain: conf.string().optional(),
    /** Extra matches on the IPv4 entry rules (iptables arguments, or an nft expression's words). */
    conditionsV4: conditions,
    conditionsV6: conditions,
    runtimeConfig: conf.object({ portMappings: conf.array(portMapping).default([]) }).optional(),
  })
  .transform((c) => {
    if (c.markMasqBit !== undefined && c.externalSetMarkChain !== undefined)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `markMasqBit: ${c.markMasqBit} cannot be combined with externalSetMarkChain ${JSON.stringify(c.externalSetMarkChain)}: the external chain sets its own mark`,
        'drop one of the two fields',
      );
    return { ...c, markMasqBit: c.markMasqBit ?? DEFAULT_MARK_BIT };
  });

/** The portmap plugin's config, parsed. */
export type PortmapConf = Infer<typeof portmapConfig>;

/** What the plugin needs from the outside world. */
export interface PortmapDeps {
  netlink: Netlink;
  /** Runs iptables, nft and conntrack (default: the real binaries). */
  iptables?: IptablesRunner;
}

type Backend = 'iptables' | 'nftables';

/** Which backend a condition list is written for ("-"/"!" starts iptables arguments), if any. */
export function conditionsBackend(list: readonly string[] | undefined): Backend | undefined {
  const first = list?.[0];
  if (!first) return undefined;
  return first.startsWith('-') || first.startsWith('!') ? 'iptables' : 'nftables';
}

/** The options that only one backend understands, by backend. */
export function backendOptions(c: PortmapConf): Record<Backend, string[]> {
  const out: Record<Backend, string[]> = { iptables: [], nftables: [] };
  if (c.externalSetMarkChain !== undefined) out.iptables.push('externalSetMarkChain');
  for (const k of ['conditionsV4', 'conditionsV6'] as const) {
    const b = conditionsBackend(c[k]);
    if (b) out[b].push(k);
  }
  return out;
}

/** The rule inputs of one call. */
export function rulesOf(ctx: PluginContext<PortmapConf>): PortmapRules {
  const c = ctx.conf;
  return {
    network: String(ctx.config.name ?? ''),
    containerId: ctx.containerId,
    mappings: (c.runtimeConfig?.portMappings ?? []) as Mapping[],
    snat: c.snat,
    masqAll: c.masqAll,
    markMasqBit: c.markMasqBit,
    externalSetMarkChain: c.externalSetMarkChain,
    conditionsV4: c.conditionsV4,
    conditionsV6: c.conditionsV6,
  };
}

/** The interface of the host's route toward `ip` (longest prefix in the main table), if any. */
async function hostInterfaceToward(netlink: Netlink, ip: string): Promise<string | undefined> {
  const target = parseIP(ip);
  const routes = await netlink.inNetns(undefined, (ns) => ns.routes({ family: 4 }));
  let best: { dev: string; prefix: number } | undefined;
  for (const r of routes) {
    if (!r.dev || r.type !== 'unicast') continue;
    const { subnet } = parseCIDR(r.dst);
    if (subnetContains(subnet, target) && (!best || subnet.prefix > best.prefix))
      best = { dev: r.dev, prefix: subnet.prefix };
  }
  return best?.dev;
}

/** Builds the portmap plugin over a netlink backend and a firewall-tool runner. */
export function createPortmapPlugin(deps: PortmapDeps): PluginSpec<PortmapConf> {
  const { netlink } = deps;
  const runner = deps.iptables ?? spawnIptables;

  async function backendOf(c: PortmapConf): Promise<Backend> {
    let b = c.backend;
    if (b === undefined) {
      // As the reference: iptables, unless it does not work here and nft does.
      const ipt = await runner('iptables', ['-w', '-t', 'filter', '-S', 'INPUT', '1']);
      b = ipt.code !== 0 && (await nftWorks(runner)) ? 'nftables' : 'iptables';
    }
    const other: Backend = b === 'iptables' ? 'nftables' : 'iptables';
    const wrong = backendOptions(c)[other];
    if (wrong.length)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `backend: ${JSON.stringify(b)}${c.backend === undefined ? ' (the default here)' : ''} is in use, but ${wrong.join(' and ')} ${wrong.length > 1 ? 'are' : 'is'} written for ${other}`,
        `set "backend": "${other}", or write ${wrong.join(' and ')} for ${b}`,
      );
    return b;
  }

  const unforward = (b: Backend, p: PortmapRules) =>
    b === 'iptables'
      ? unforwardIptables(p.network, p.containerId, runner)
      : unforwardNft(p.containerId, runner);

  /** Drops conntrack's UDP entries to the mapped host ports, so earlier flows see the new DNAT (best effort). */
  async function flushUdpConntrack(
    ctx: PluginContext<PortmapConf>,
    p: PortmapRules,
    family: Family,
    seen: { missing?: boolean },
  ) {
    if (seen.missing) return;
    for (const m of p.mappings.filter((x) => x.protocol === 'udp')) {
      const args = [
        '-D',
        '-p',
        'udp',
        '--orig-port-dst',
        String(m.hostPort),
        '-f',
        family === 4 ? 'ipv4' : 'ipv6',
      ];
      const r = await runner('conntrack', args);
      if (r.code === 127) {
        seen.missing = true;
        ctx.log('portmap: conntrack is not installed: stale UDP conntrack entries of the mapped ports stay');
        return;
      }
      // conntrack exits 1 when there was nothing to delete.
      if (r.code !== 0 && !/0 flow entries/.test(r.stderr))
        ctx.log(`portmap: conntrack ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
    }
  }

  async function add(ctx: PluginContext<PortmapConf>): Promise<Result> {
    const prev = ctx.config.prevResult;
    if (!prev)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'prevResult: missing; portmap must run chained after a plugin that gives the container its addresses',
        'put portmap after bridge, ptp or another main plugin in a conflist',
      );
    const out: Result = { ...prev, cniVersion: CURRENT_VERSION };
    const p = rulesOf(ctx);
    if (!p.mappings.length) return out;
    const backend = await backendOf(ctx.conf);
    const addrs = containerAddresses(prev, ctx.ifname);
    const conntrack = {};
    await addWithRollback(ctx, 'portmap', async (tx) => {
      tx.onRollback(() => unforward(backend, p));
      for (const family of [4, 6] as const) {
        const address = addrs[family];
        if (!address) continue;
        if (backend === 'iptables') await forwardIptables(planIptables(p, address, family), family, runner);
        else await forwardNft(p, address, family, runner);
        await flushUdpConntrack(ctx, p, family, conntrack);
        if (family === 4 && p.snat) {
          // 127.0.0.1 → container needs the host interface toward it to route "martian" 127/8.
          const dev = await hostInterfaceToward(netlink, address.split('/')[0] ?? address);
          if (dev) {
            try {
              await netlink.inNetns(undefined, (ns) =>
                ns.setSysctl(`net/ipv4/conf/${dev}/route_localnet`, '1'),
              );
            } catch (e) {
              throw new CniError(
                ErrorCode.Internal,
                `portmap: enabling net.ipv4.conf.${dev}.route_localnet failed: ${e instanceof Error ? e.message : String(e)}`,
                'portmap needs root in the host network namespace; or set "snat": false',
              );
            }
          }
        }
      }
    });
    return out;
  }

  return {
    about: 'portmap (cni-kit): forwards host ports to the container (iptables or nftables)',
    config: portmapConfig,
    add,
    async check(ctx) {
      const prev = requirePrevResult(ctx);
      const p = rulesOf(ctx);
      if (!p.mappings.length) return;
      const backend = await backendOf(ctx.conf);
      const addrs = containerAddresses(prev, ctx.ifname);
      for (const family of [4, 6] as const) {
        const address = addrs[family];
        if (!address) continue;
        if (backend === 'iptables') await checkIptables(planIptables(p, address, family), family, runner);
        else await checkNft(p, family, runner);
      }
    },
    async del(ctx) {
      // As the reference: without mappings ADD did nothing, so neither does DEL (no prevResult needed).
      const p = rulesOf(ctx);
      if (!p.mappings.length) return;
      await unforward(await backendOf(ctx.conf), p);
    },
    async gc(ctx) {
      // Only the iptables rules name their network (in the jump's comment); the reference's nft
      // rules carry the container ID alone, so another network's rules cannot be told apart there.
      const c = ctx.conf;
      if ((c.backend ?? 'iptables') !== 'iptables') {
        ctx.log('portmap: GC of the nftables backend is not possible (its rules do not name their network)');
        return;
      }
      const network = String(ctx.config.name ?? '');
      const valid = new Set(ctx.validAttachments.map((a: Attachment) => a.containerId));
      for (const id of await iptablesContainers(network, runner))
        if (!valid.has(id)) await unforwardIptables(network, id, runner);
    },
  };
}
