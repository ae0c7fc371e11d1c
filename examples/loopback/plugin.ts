// loopback: brings `lo` up in the container (ADD) and down again (DEL). Chained, it passes the
// previous result through unchanged, like the reference.
import { CniError, ErrorCode, type PluginSpec, type Result } from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import { inNetnsIfExists } from 'cni-kit/netsetup';

/** What the plugin needs from the outside world. */
export interface LoopbackDeps {
  netlink: Netlink;
}

/** Builds the loopback plugin over a netlink backend. */
export function createLoopbackPlugin({ netlink }: LoopbackDeps): PluginSpec {
  return {
    about: 'loopback (cni-kit): sets up the loopback interface of a container',
    async add(ctx) {
      const addrs = await netlink.inNetns(ctx.netns, async (ns) => {
        ns.setLink('lo', { up: true });
        return ns.addresses({ link: 'lo' });
      });
      for (const a of addrs) {
        const loopback = a.family === 4 ? a.ip.startsWith('127.') : a.ip === '::1';
        if (!loopback)
          throw new CniError(ErrorCode.Internal, `lo in ${ctx.netns} has a non-loopback address ${a.cidr}`);
      }
      if (ctx.config.prevResult) return ctx.config.prevResult;
      const result: Result = {
        cniVersion: '1.1.0',
        interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: ctx.netns }],
        ips: addrs.map((a) => ({ interface: 0, address: a.cidr })),
      };
      return result;
    },
    async check(ctx) {
      const lo = await netlink.inNetns(ctx.netns, (ns) => ns.getLink('lo'));
      if (!lo.up) throw new CniError(ErrorCode.Internal, `CHECK: lo in ${ctx.netns} is down`);
    },
    async del(ctx) {
      // A container whose netns is already gone has no loopback left to take down.
      await inNetnsIfExists(netlink, ctx.netns, (ns) => ns.setLink('lo', { up: false }));
    },
  };
}
