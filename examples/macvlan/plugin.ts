// macvlan: gives the container its own MAC on a host (or in-container) master interface.
// master defaults to the interface of the default route, as in the reference.
import {
  addSubLinkAttachment,
  checkAttachment,
  delAttachment,
  ipamPassthrough,
  type MacvlanMode,
  type Netlink,
  optString,
  type PluginSpec,
  parseMasterConf,
  requestedMac,
  resolveMaster,
} from 'cni-kit';

/** The macvlan plugin's own config fields. */
export interface MacvlanConf {
  master?: string;
  mode: MacvlanMode;
  mtu?: number;
  linkInContainer: boolean;
}

/** What the plugin needs from the outside world. */
export interface MacvlanDeps {
  netlink: Netlink;
}

const MODES = ['bridge', 'private', 'vepa', 'passthru'] as const;

function parseMacvlanConf(c: Record<string, unknown>): MacvlanConf {
  return { ...parseMasterConf(c), mode: (optString(c, 'mode', MODES) ?? 'bridge') as MacvlanMode };
}

/** Builds the macvlan plugin over a netlink backend. */
export function createMacvlanPlugin({ netlink }: MacvlanDeps): PluginSpec<MacvlanConf> {
  return {
    about: 'macvlan (cni-kit): a macvlan sub-interface per container',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    parseConfig: (c) => parseMacvlanConf(c),
    async add(ctx) {
      const c = ctx.config;
      const mac = requestedMac(c, ctx.args);
      const parent = await resolveMaster(netlink, ctx.netns, c);
      const spec = {
        kind: 'macvlan',
        parent,
        mode: c.mode,
        ...(mac ? { mac } : {}),
        ...(c.mtu ? { mtu: c.mtu } : {}),
      } as const;
      return addSubLinkAttachment(ctx, netlink, spec, { linkInContainer: c.linkInContainer, announce: true });
    },
    async check(ctx) {
      await checkAttachment(ctx, netlink, { kind: 'macvlan', expect: { macvlanMode: ctx.config.mode } });
    },
    del: (ctx) => delAttachment(ctx, netlink),
    ...ipamPassthrough(),
  };
}
