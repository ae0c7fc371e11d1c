// host-device: moves an existing host interface into the container under CNI_IFNAME and back out
// under its original name on DEL. Moves go through a temporary netns so renames never race with
// names in the host or the container; the original name travels in the link's alias.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import {
  addWithRollback,
  attachmentResult,
  checkAttachment,
  configureInterface,
  inNetnsIfExists,
  ipamPassthrough,
} from 'cni-kit/netsetup';

const selector = conf
  .string()
  .optional()
  .transform((v) => v || undefined);

/** The host-device plugin's own config fields: exactly one way to pick the device. */
export const hostDeviceConfig = conf
  .object({
    device: selector,
    hwaddr: conf.mac().optional(),
    kernelpath: conf
      .string()
      .pattern(/^\/sys\/devices\//, 'must start with /sys/devices/')
      .optional(),
    pciBusID: selector,
    runtimeConfig: conf.object({ deviceID: selector }).optional(),
  })
  .transform((c) => {
    const pciBusID = c.pciBusID ?? c.runtimeConfig?.deviceID;
    const picked = { device: c.device, hwaddr: c.hwaddr, kernelpath: c.kernelpath, pciBusID };
    const n = Object.values(picked).filter(Boolean).length;
    if (n !== 1) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `host-device: ${n === 0 ? 'no device given' : 'more than one device selector given'}`,
        'set exactly one of "device", "hwaddr", "kernelpath", "pciBusID" (or runtimeConfig.deviceID)',
      );
    }
    return picked;
  });

/** The host-device plugin's config, parsed. */
export type HostDeviceConf = Infer<typeof hostDeviceConfig>;

/** What the plugin needs from the outside world. */
export interface HostDeviceDeps {
  netlink: Netlink;
  /** Where sysfs is mounted (tests point it at a fake tree); default /sys. */
  sysfs?: string;
}

/** Builds the host-device plugin over a netlink backend. */
export function createHostDevicePlugin(deps: HostDeviceDeps): PluginSpec<HostDeviceConf> {
  const { netlink } = deps;
  const sysfs = deps.sysfs ?? '/sys';

  function netDirEntry(dir: string, field: string, value: string): string {
    try {
      const names = readdirSync(dir);
      if (names[0]) return names[0];
    } catch {
      // reported below with the field that led here
    }
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${field}: no network interface found for ${JSON.stringify(value)} (looked in ${dir})`,
    );
  }

  /** The host name of the selected device. */
  async function findDevice(c: HostDeviceConf): Promise<string> {
    if (c.device) return c.device;
    if (c.kernelpath)
      return netDirEntry(join(sysfs, c.kernelpath.slice('/sys/'.length), 'net'), 'kernelpath', c.kernelpath);
    if (c.pciBusID) {
      const base = join(sysfs, 'bus/pci/devices', c.pciBusID);
      let dir = join(base, 'net');
      try {
        const virtio = readdirSync(base).find((n) => n.startsWith('virtio'));
        if (virtio && !readdirSync(base).includes('net')) dir = join(base, virtio, 'net');
      } catch {
        // a missing PCI device is reported by netDirEntry
      }
      return netDirEntry(dir, 'pciBusID', c.pciBusID);
    }
    const links = await netlink.inNetns(undefined, (ns) => ns.links());
    const hit = links.find((l) => l.mac.toLowerCase() === c.hwaddr);
    if (!hit)
      throw new CniError(ErrorCode.InvalidNetworkConfig, `hwaddr: no host interface has MAC ${c.hwaddr}`);
    return hit.name;
  }

  /** Moves `name` from netns `from` to `to` as `newName`, through a temporary netns; sets or clears the alias. */
  async function move(
    from: string | undefined,
    to: string,
    name: string,
    newName: string,
    alias: string | null,
  ) {
    const tmp = await netlink.createNetns();
    try {
      await netlink.inNetns(from, (ns) => {
        if (alias === null) ns.setLink(name, { up: false });
        ns.moveLink(name, tmp.path);
      });
      try {
        await netlink.inNetns(tmp.path, (ns) => {
          if (newName !== name) ns.renameLink(name, newName);
          ns.setLink(newName, { alias });
          ns.moveLink(newName, to);
        });
      } catch (e) {
        // Put the device back where it came from before the temporary netns (and a veth in it) dies.
        await netlink
          .inNetns(tmp.path, async (ns) => {
            const l = (await ns.findLink(newName)) ?? (await ns.findLink(name));
            if (l) ns.moveLink(l.name, from ?? netlink.hostNetns);
          })
          .catch(() => {});
        throw e;
      }
    } finally {
      await tmp.remove();
    }
  }

  async function add(ctx: PluginContext<HostDeviceConf>): Promise<Result> {
    const dev = await findDevice(ctx.conf);
    await netlink.inNetns(undefined, async (ns) => {
      if (!(await ns.findLink(dev)))
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `device: host interface ${JSON.stringify(dev)} not found`,
        );
    });
    await move(undefined, ctx.netns, dev, ctx.ifname, dev);
    return addWithRollback(ctx, 'host-device', async (tx) => {
      tx.onRollback(() => move(ctx.netns, netlink.hostNetns, ctx.ifname, dev, null));
      const link = await netlink.inNetns(ctx.netns, (ns) => {
        ns.setLink(ctx.ifname, { up: true });
        return ns.getLink(ctx.ifname);
      });
      const iface = { name: ctx.ifname, mac: link.mac, sandbox: ctx.netns };
      const result = attachmentResult(ctx.config, await tx.ipamAdd(), [iface], 0);
      if (result.ips)
        await netlink.inNetns(ctx.netns, (ns) => configureInterface(ns, ctx.ifname, result, { index: 0 }));
      return result;
    });
  }

  return {
    about: 'host-device (cni-kit): moves a host interface into the container and back',
    supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    config: hostDeviceConfig,
    add,
    async check(ctx) {
      await checkAttachment(ctx, netlink);
    },
    async del(ctx) {
      if (ctx.config.ipam) await ctx.ipam.del();
      const link = await inNetnsIfExists(netlink, ctx.netns, (ns) => ns.findLink(ctx.ifname));
      if (!link) return;
      if (!link.alias) {
        // Not moved in by us (no original name recorded): leave it rather than guess a host name.
        ctx.log(
          `host-device: ${ctx.ifname} in ${ctx.netns} has no alias with its original name; left in place`,
        );
        return;
      }
      await move(ctx.netns, netlink.hostNetns, ctx.ifname, link.alias, null);
    },
    ...ipamPassthrough(),
  };
}
