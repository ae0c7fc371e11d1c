// dummy: a dummy link in the container, addressed by IPAM. A dummy device has no peer and carries
// no traffic out of the container: it gives the container an address of its own (a service IP, a
// routing anchor) that local processes can bind to. IPAM is required, as in the reference.
import { CniError, ErrorCode, type PluginContext, type PluginSpec, type Result } from 'cni-kit';
import { isExists, type Netlink, NetlinkError } from 'cni-kit/netlink';
import {
  addWithRollback,
  attachmentResult,
  checkAttachment,
  configureInterface,
  delAttachment,
  deleteLinkInNetns,
  ipamPassthrough,
} from 'cni-kit/netsetup';

/** What the plugin needs from the outside world. */
export interface DummyDeps {
  netlink: Netlink;
}

/** Code 7 before anything is touched: a dummy interface without addresses has no use. */
function requireIpam(ctx: PluginContext): void {
  if (ctx.ipam.type) return;
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    'ipam: missing; a dummy interface needs addresses from IPAM',
    'add an "ipam" block, e.g. {"type": "host-local", "subnet": "10.1.0.0/24"}',
  );
}

/** Creates CNI_IFNAME as a dummy link inside the container netns; names the clash or the missing kind. */
async function createDummy(netlink: Netlink, ctx: PluginContext): Promise<string> {
  try {
    return await netlink.inNetns(ctx.netns, async (ns) => {
      ns.createLink({ kind: 'dummy', name: ctx.ifname });
      return (await ns.getLink(ctx.ifname)).mac;
    });
  } catch (e) {
    if (isExists(e))
      throw new CniError(
        ErrorCode.Internal,
        `interface "${ctx.ifname}" already exists in ${ctx.netns}`,
        'pick another CNI_IFNAME or delete the existing interface',
      );
    if (e instanceof NetlinkError && e.errno === 'EOPNOTSUPP')
      throw new CniError(
        ErrorCode.Internal,
        `this kernel cannot create dummy links (${e.message})`,
        'load the dummy module (CONFIG_DUMMY) on the node',
      );
    throw e;
  }
}

/** Builds the dummy plugin over a netlink backend. */
export function createDummyPlugin({ netlink }: DummyDeps): PluginSpec {
  return {
    about: 'dummy (cni-kit): a dummy interface in the container, addressed by IPAM',
    async add(ctx) {
      requireIpam(ctx);
      return addWithRollback(ctx, 'dummy', async (tx) => {
        const mac = await createDummy(netlink, ctx);
        tx.onRollback(() => deleteLinkInNetns(netlink, ctx.netns, ctx.ifname, { kind: 'dummy' }));
        const ipam = await tx.ipamAdd();
        if (!ipam?.ips?.length)
          throw new CniError(
            ErrorCode.Internal,
            `IPAM plugin ${ctx.ipam.type} returned no IPs for ${ctx.ifname}`,
          );
        const result: Result = attachmentResult(
          ctx.config,
          ipam,
          [{ name: ctx.ifname, mac, sandbox: ctx.netns }],
          0,
        );
        await netlink.inNetns(ctx.netns, (ns) => configureInterface(ns, ctx.ifname, result, { index: 0 }));
        return result;
      });
    },
    async check(ctx) {
      requireIpam(ctx);
      // Down first, as the reference: a down link has lost its routes, which is not the news.
      const live = ctx.netns ? await netlink.inNetns(ctx.netns, (ns) => ns.findLink(ctx.ifname)) : undefined;
      if (live?.kind === 'dummy' && !live.up)
        throw new CniError(ErrorCode.Internal, `CHECK: ${ctx.ifname} in ${ctx.netns} is down`);
      await checkAttachment(ctx, netlink, { kind: 'dummy' });
    },
    del: (ctx) => delAttachment(ctx, netlink, { kind: 'dummy' }),
    ...ipamPassthrough(),
  };
}
