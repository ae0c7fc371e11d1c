// host-device: moves an existing host interface into the container under CNI_IFNAME and back out
// under its original name on DEL. Moves go through a temporary netns so renames never race with
// names in the host or the container; the original name travels in the link's alias, as the
// reference does. Before anything moves, ADD checks what can fail (the netns, a CNI_IFNAME already
// in use there) and records the device as it was (name, alias, MTU, up, addresses, routes) in a
// state file; a failed ADD, and DEL, put it back exactly so. DEL moves out only the device that
// record names, so an unrelated interface called CNI_IFNAME is never touched.
// Past ~400 lines on purpose: the moves, the put-back and DEL share the state record and the
// attachment's temporary netns, which stay private to this file.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import { boundedFileName, removeStaleTempFiles, writeFileAtomicSync } from 'cni-kit/fs';
import { isExists, type Netlink, type NetnsOps, type RouteSpec, type TempNetns } from 'cni-kit/netlink';
import {
  addWithRollback,
  attachmentResult,
  checkAttachment,
  configureInterface,
  inNetnsIfExists,
  ipamPassthrough,
} from 'cni-kit/netsetup';
import { ipamConfigured } from 'cni-kit/spec';

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
    /** Where ADD records each moved device as it was (cni-kit's own field; the reference has no state). */
    dataDir: conf.string().default('/run/cni/host-device'),
  })
  .transform((c) => {
    // device, hwaddr and kernelpath are what a user writes: exactly one of them, or none. pciBusID
    // and runtimeConfig.deviceID are also what a meta plugin injects (multus sets both from the
    // device kubelet allocated): they count only when the user named no device, and deviceID, the
    // runtime's, wins over pciBusID, as in the reference plugin.
    const user = { device: c.device, hwaddr: c.hwaddr, kernelpath: c.kernelpath };
    const n = Object.values(user).filter(Boolean).length;
    const deviceID = n === 0 ? c.runtimeConfig?.deviceID : undefined;
    const pciBusID = n === 0 && !deviceID ? c.pciBusID : undefined;
    if (n > 1 || (n === 0 && !deviceID && !pciBusID)) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `host-device: ${n === 0 ? 'no device given' : 'more than one device selector given'}`,
        'set exactly one of "device", "hwaddr", "kernelpath", "pciBusID" (or runtimeConfig.deviceID)',
      );
    }
    return { ...user, pciBusID, deviceID, dataDir: c.dataDir };
  });

/** The host-device plugin's config, parsed. */
export type HostDeviceConf = Infer<typeof hostDeviceConfig>;

/** What the plugin needs from the outside world. */
export interface HostDeviceDeps {
  netlink: Netlink;
  /** Where sysfs is mounted (tests point it at a fake tree); default /sys. */
  sysfs?: string;
}

/** A host device as it was before ADD moved it: what a failed ADD and DEL put back. */
export interface HostDeviceState {
  name: string;
  alias?: string;
  mac: string;
  mtu: number;
  up: boolean;
  /** Its addresses (CIDR with host bits), IPv6 link-local ones left to the kernel. */
  addresses: string[];
  /** Its static routes in the main table (the kernel's own prefix routes come back with the addresses). */
  routes: RouteSpec[];
}

/** The state file of one attachment: `<containerID>_<ifname>.json`, bounded to a file name's length. */
export function stateFile(dir: string, cid: string, ifname: string): string {
  return join(dir, boundedFileName(`${cid}_${ifname}.json`));
}

/** Reads `name`'s state in `ns`. */
export async function captureDevice(ns: NetnsOps, name: string): Promise<HostDeviceState> {
  const l = await ns.getLink(name);
  const addrs = await ns.addresses({ link: name });
  const routes = await ns.routes({ dev: name });
  const st: HostDeviceState = {
    name: l.name,
    mac: l.mac,
    mtu: l.mtu,
    up: l.up,
    addresses: addrs.filter((a) => !(a.family === 6 && a.scope === 'link')).map((a) => a.cidr),
    routes: routes
      .filter((r) => r.type === 'unicast' && r.protocol !== 'kernel' && r.protocol !== 'ra')
      .filter((r) => !(r.family === 6 && r.dst.startsWith('fe80:')))
      .map((r) => {
        const spec: RouteSpec = { dst: r.dst, dev: l.name, family: r.family };
        if (r.gw) spec.gw = r.gw;
        if (r.metric !== undefined) spec.metric = r.metric;
        if (r.src) spec.src = r.src;
        if (r.scope === 'link' || r.scope === 'host' || r.scope === 'global') spec.scope = r.scope;
        return spec;
      }),
  };
  if (l.alias) st.alias = l.alias;
  return st;
}

function sameFile(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.ino === y.ino && x.dev === y.dev;
  } catch {
    return false;
  }
}

const why = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Drivers that bind a PCI function for DPDK: it has no netdev, so there is nothing to move. */
const USERSPACE_DRIVERS = ['vfio-pci', 'uio_pci_generic', 'igb_uio'];

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

  /**
   * The bus device the config names: runtimeConfig.deviceID (a PCI function, else an auxiliary
   * device such as a Mellanox sub-function), else pciBusID.
   */
  function busDevice(c: HostDeviceConf): { bus: 'pci' | 'auxiliary'; id: string; field: string } | undefined {
    if (c.deviceID) {
      const field = 'runtimeConfig.deviceID';
      if (existsSync(join(sysfs, 'bus/pci/devices', c.deviceID)))
        return { bus: 'pci', id: c.deviceID, field };
      if (existsSync(join(sysfs, 'bus/auxiliary/devices', c.deviceID)))
        return { bus: 'auxiliary', id: c.deviceID, field };
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${field}: ${JSON.stringify(c.deviceID)} is neither a PCI device (${join(sysfs, 'bus/pci/devices', c.deviceID)}) nor an auxiliary device (${join(sysfs, 'bus/auxiliary/devices', c.deviceID)})`,
        "the device ID comes from the device plugin's allocation: check that its resource lists devices of this node",
      );
    }
    return c.pciBusID ? { bus: 'pci', id: c.pciBusID, field: 'pciBusID' } : undefined;
  }

  /** The userspace (DPDK) driver the selected PCI function is bound to, if it is. */
  function dpdkDriver(c: HostDeviceConf): string | undefined {
    const dev = busDevice(c);
    if (dev?.bus !== 'pci') return undefined;
    try {
      const driver = basename(realpathSync(join(sysfs, 'bus/pci/devices', dev.id, 'driver')));
      return USERSPACE_DRIVERS.includes(driver) ? driver : undefined;
    } catch {
      return undefined; // no driver bound: an ordinary lookup reports the missing netdev
    }
  }

  /** The host name of the selected device. */
  async function findDevice(c: HostDeviceConf): Promise<string> {
    if (c.device) return c.device;
    if (c.kernelpath)
      return netDirEntry(join(sysfs, c.kernelpath.slice('/sys/'.length), 'net'), 'kernelpath', c.kernelpath);
    const dev = busDevice(c);
    if (dev?.bus === 'auxiliary')
      return netDirEntry(join(sysfs, 'bus/auxiliary/devices', dev.id, 'net'), dev.field, dev.id);
    if (dev) {
      const base = join(sysfs, 'bus/pci/devices', dev.id);
      let dir = join(base, 'net');
      try {
        // virtio-net functions keep their netdev one level down, under virtio<N>/.
        const virtio = readdirSync(base).find((n) => n.startsWith('virtio'));
        if (virtio && !readdirSync(base).includes('net')) dir = join(base, virtio, 'net');
      } catch {
        // a missing PCI device is reported by netDirEntry
      }
      return netDirEntry(dir, dev.field, dev.id);
    }
    const links = await netlink.inNetns(undefined, (ns) => ns.links());
    const hit = links.find((l) => l.mac.toLowerCase() === c.hwaddr);
    if (!hit)
      throw new CniError(ErrorCode.InvalidNetworkConfig, `hwaddr: no host interface has MAC ${c.hwaddr}`);
    return hit.name;
  }

  /** Everything ADD can check before it moves anything; returns the device as it is now. */
  async function validate(ctx: PluginContext<HostDeviceConf>, dev: string): Promise<HostDeviceState> {
    if (!(await netlink.netnsExists(ctx.netns)))
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `CNI_NETNS: ${JSON.stringify(ctx.netns)} is not a network namespace; pass the container's netns path`,
      );
    if (sameFile(ctx.netns, netlink.hostNetns))
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `CNI_NETNS: ${JSON.stringify(ctx.netns)} is the host's own network namespace; pass the container's`,
      );
    const st = await netlink.inNetns(undefined, async (ns) => {
      const l = await ns.findLink(dev);
      if (!l)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `device: host interface ${JSON.stringify(dev)} not found`,
        );
      if (l.name === 'lo')
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          'device: "lo" is the loopback device, which cannot leave its network namespace; pick another device',
        );
      return captureDevice(ns, l.name);
    });
    const clash = await netlink.inNetns(ctx.netns, (ns) => ns.findLink(ctx.ifname));
    if (clash)
      throw new CniError(
        ErrorCode.InvalidEnvironmentVariables,
        `CNI_IFNAME: ${JSON.stringify(ctx.ifname)} already exists in ${ctx.netns}; pick a name not in use there`,
      );
    return st;
  }

  /**
   * The temporary netns moves go through. Its name derives from the attachment, so when a killed
   * ADD or DEL left the device in it, the next DEL finds it there.
   */
  const tmpName = (ctx: PluginContext<HostDeviceConf>) =>
    `cnikit-hd-${createHash('sha256').update(`${ctx.containerId}/${ctx.ifname}`).digest('hex').slice(0, 16)}`;

  async function openTmp(ctx: PluginContext<HostDeviceConf>): Promise<TempNetns> {
    const name = tmpName(ctx);
    try {
      return await netlink.createNetns(name);
    } catch (e) {
      if (!isExists(e)) throw e;
      const path = `/var/run/netns/${name}`;
      if (await netlink.netnsExists(path)) return { name, path, remove: () => netlink.removeNetns(path) };
      // A file a kill left half made (created, never mounted, or unmounted, never removed).
      await netlink.removeNetns(path);
      return netlink.createNetns(name);
    }
  }

  /** Moves the device from the host into the container as CNI_IFNAME, through the temporary netns. */
  async function moveIn(ctx: PluginContext<HostDeviceConf>, st: HostDeviceState): Promise<void> {
    const tmp = await openTmp(ctx);
    try {
      await netlink.inNetns(undefined, (ns) => ns.moveLink(st.name, tmp.path));
      await netlink.inNetns(tmp.path, (ns) => {
        if (ctx.ifname !== st.name) ns.renameLink(st.name, ctx.ifname);
        ns.setLink(ctx.ifname, { alias: st.name });
        ns.moveLink(ctx.ifname, ctx.netns);
      });
      await netlink.inNetns(ctx.netns, (ns) => ns.setLink(ctx.ifname, { up: true }));
    } catch (e) {
      await putBack(ctx, st).catch((u) => ctx.log(`host-device: rollback after failed ADD: ${why(u)}`));
      await dropTmp(tmp);
      throw e;
    }
    await tmp.remove();
  }

  /** Removes the temporary netns unless a device is still in it (kept for DEL to find). */
  async function dropTmp(tmp: TempNetns): Promise<void> {
    const left = await inNetnsIfExists(netlink, tmp.path, (ns) => ns.links());
    if (left?.every((l) => l.name === 'lo')) await tmp.remove();
  }

  /**
   * Returns the device to the host wherever a move left it (the container, the temporary netns, or
   * already home), under its name and alias, then restores its MTU, addresses, up state and routes.
   * False when it is nowhere (its netns is gone, and with it a virtual device).
   */
  async function putBack(ctx: PluginContext<HostDeviceConf>, st: HostDeviceState): Promise<boolean> {
    const ours = (l: { name: string; mac: string; alias?: string } | undefined) =>
      l && l.mac === st.mac && (l.name === st.name || l.alias === st.name) ? l : undefined;
    const home = await netlink.inNetns(undefined, async (ns) => ours(await ns.findLink(st.name)));
    if (!home) {
      const tmp = await openTmp(ctx);
      try {
        const inCtr = await inNetnsIfExists(netlink, ctx.netns, async (ns) =>
          ours(await ns.findLink(ctx.ifname)),
        );
        if (inCtr)
          await netlink.inNetns(ctx.netns, (ns) => {
            ns.setLink(ctx.ifname, { up: false });
            ns.moveLink(ctx.ifname, tmp.path);
          });
        const found = await netlink.inNetns(tmp.path, async (ns) => {
          // Whatever carries the recorded MAC in the attachment's own temp netns is the device, at
          // whatever step of a rename a kill stopped it.
          const l = (await ns.links()).find((x) => x.mac === st.mac);
          if (!l) return false;
          if (l.name !== st.name) ns.renameLink(l.name, st.name);
          ns.setLink(st.name, { alias: st.alias ?? null });
          await ns.flush();
          try {
            ns.moveLink(st.name, netlink.hostNetns);
            await ns.flush();
          } catch (e) {
            // The host has taken the name meanwhile: keep the device where DEL finds it again.
            if (inCtr) {
              ns.renameLink(st.name, ctx.ifname);
              ns.setLink(ctx.ifname, { alias: st.name });
              ns.moveLink(ctx.ifname, ctx.netns);
              await ns.flush();
            }
            throw new CniError(
              ErrorCode.Internal,
              `host-device: cannot return ${st.name} to the host: ${why(e)}; free the name ${st.name} on the host and retry`,
            );
          }
          return true;
        });
        if (!found) return false;
      } finally {
        await dropTmp(tmp);
      }
    }
    await restoreOnHost(ctx, st);
    return true;
  }

  /** MTU, addresses, up state and routes as recorded; each step on its own so one failure is not all. */
  async function restoreOnHost(ctx: PluginContext<HostDeviceConf>, st: HostDeviceState) {
    await netlink.inNetns(undefined, async (ns) => {
      const step = async (what: string, fn: () => void) => {
        try {
          fn();
          await ns.flush();
        } catch (e) {
          ctx.log(`host-device: restoring ${what} of ${st.name}: ${why(e)}`);
        }
      };
      const l = await ns.getLink(st.name);
      if (l.mtu !== st.mtu) await step(`mtu ${st.mtu}`, () => ns.setLink(st.name, { mtu: st.mtu }));
      if ((l.alias ?? '') !== (st.alias ?? ''))
        await step('alias', () => ns.setLink(st.name, { alias: st.alias ?? null }));
      for (const a of st.addresses)
        await step(`address ${a}`, () => ns.addAddress(st.name, a, { existsOk: true, noDad: true }));
      if (st.up) await step('up', () => ns.setLink(st.name, { up: true }));
      for (const r of st.routes) await step(`route ${r.dst}`, () => ns.addRoute(r, { existsOk: true }));
    });
  }

  async function add(ctx: PluginContext<HostDeviceConf>): Promise<Result> {
    const dpdk = dpdkDriver(ctx.conf);
    if (dpdk) {
      // As the reference: a function bound to a DPDK driver stays where it is (the pod's DPDK
      // application opens it through the device plugin's mounts); only IPAM runs, for an
      // application that wants the addresses.
      ctx.log(`host-device: ${busDevice(ctx.conf)?.id} is bound to ${dpdk} (DPDK); no netdev to move`);
      return addWithRollback(ctx, 'host-device', async (tx) => {
        const r = attachmentResult(ctx.config, await tx.ipamAdd(), [], 0);
        if (r.ips) r.ips = r.ips.map(({ interface: _i, ...ip }) => ip);
        return r;
      });
    }
    const dev = await findDevice(ctx.conf);
    const st = await validate(ctx, dev);
    const file = stateFile(ctx.conf.dataDir, ctx.containerId, ctx.ifname);
    mkdirSync(ctx.conf.dataDir, { recursive: true, mode: 0o700 });
    writeFileAtomicSync(file, JSON.stringify(st), { mode: 0o600 });
    try {
      await moveIn(ctx, st);
    } catch (e) {
      rmSync(file, { force: true });
      throw e;
    }
    return addWithRollback(ctx, 'host-device', async (tx) => {
      tx.onRollback(async () => {
        await putBack(ctx, st);
        rmSync(file, { force: true });
      });
      const link = await netlink.inNetns(ctx.netns, (ns) => ns.getLink(ctx.ifname));
      const iface = { name: ctx.ifname, mac: link.mac, sandbox: ctx.netns };
      const result = attachmentResult(ctx.config, await tx.ipamAdd(), [iface], 0);
      if (result.ips)
        await netlink.inNetns(ctx.netns, (ns) => configureInterface(ns, ctx.ifname, result, { index: 0 }));
      return result;
    });
  }

  function readState(file: string, log: (m: string) => void): HostDeviceState | undefined {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const st = JSON.parse(text) as HostDeviceState;
      if (typeof st.name === 'string' && typeof st.mac === 'string') return st;
    } catch {
      // reported below
    }
    log(`host-device: ignoring unreadable state file ${file}`);
    return undefined;
  }

  async function del(ctx: PluginContext<HostDeviceConf>): Promise<void> {
    // An IPAM failure must not keep the device from going home: both run, the first error is reported.
    let ipamError: unknown;
    if (ipamConfigured(ctx.config)) await ctx.ipam.del().catch((e: unknown) => (ipamError = e));
    let dpdk: string | undefined;
    try {
      dpdk = dpdkDriver(ctx.conf);
    } catch {
      // the device is gone from this node: whatever ADD moved comes back through its state file
    }
    if (!dpdk) await returnDevice(ctx);
    if (ipamError) throw ipamError;
  }

  async function returnDevice(ctx: PluginContext<HostDeviceConf>): Promise<void> {
    const file = stateFile(ctx.conf.dataDir, ctx.containerId, ctx.ifname);
    // A state write killed between its temp file and the rename leaves `.tmp.*` (writer gone).
    removeStaleTempFiles(dirname(file));
    const recorded = readState(file, ctx.log);
    const link = await inNetnsIfExists(netlink, ctx.netns, (ns) => ns.findLink(ctx.ifname));
    if (recorded) {
      // The device may be in the container (ours only if its alias is the recorded name), or in
      // the temporary netns, or home already, when an ADD or DEL was killed half way.
      const mine = link?.alias === recorded.name;
      if (link && !mine)
        ctx.log(
          `host-device: ${ctx.ifname} in ${ctx.netns} is not the ${recorded.name} this plugin moved in; left in place`,
        );
      await putBack(ctx, { ...recorded, mac: mine && link ? link.mac : recorded.mac });
      const tmp = `/var/run/netns/${tmpName(ctx)}`;
      if (await netlink.netnsExists(tmp))
        await dropTmp({ name: tmpName(ctx), path: tmp, remove: () => netlink.removeNetns(tmp) });
      rmSync(file, { force: true });
      return;
    }
    if (!link) return;
    // No record: an ADD of the reference plugin (or of an older cni-kit) moved it in; as the
    // reference, the alias names the device, which goes back down with its alias cleared.
    if (!link.alias || link.name === 'lo') {
      ctx.log(
        `host-device: ${ctx.ifname} in ${ctx.netns} has no alias with its original name; left in place`,
      );
      return;
    }
    const c = ctx.conf;
    if ((c.device && link.alias !== c.device) || (c.hwaddr && link.mac !== c.hwaddr)) {
      ctx.log(`host-device: ${ctx.ifname} in ${ctx.netns} is not the configured device; left in place`);
      return;
    }
    const taken = await netlink.inNetns(undefined, (ns) => ns.findLink(link.alias ?? ''));
    if (taken) {
      ctx.log(
        `host-device: ${ctx.ifname}'s alias ${link.alias} names a host interface already; left in place`,
      );
      return;
    }
    await putBack(ctx, {
      name: link.alias,
      mac: link.mac,
      mtu: link.mtu,
      up: false,
      addresses: [],
      routes: [],
    });
  }

  return {
    about: 'host-device (cni-kit): moves a host interface into the container and back',
    config: hostDeviceConfig,
    add,
    async check(ctx) {
      if (dpdkDriver(ctx.conf)) return;
      await checkAttachment(ctx, netlink);
    },
    del,
    ...ipamPassthrough(),
  };
}
