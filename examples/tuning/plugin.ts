// tuning (chained): sets sysctls under net. and link attributes (mac, promisc, mtu, txQLen,
// allmulti) of the container interface, backs the originals up and restores them on DEL. The backup
// file has the reference's name and format, so either implementation can undo the other's ADD.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ALL_VERSIONS,
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import type { LinkSettings, Netlink } from 'cni-kit/netlink';
import { inNetnsIfExists, mtuField, requestedMac } from 'cni-kit/netsetup';

/** The tuning plugin's own config fields. */
export const tuningConfig = conf.object({
  /** Keys under net. (IFNAME stands for the container interface) and their values. */
  sysctl: conf
    .record(
      conf.custom((v, path) => {
        if (typeof v === 'string' || typeof v === 'number') return String(v);
        throw new CniError(ErrorCode.InvalidNetworkConfig, `${path}: ${JSON.stringify(v)} must be a string`);
      }),
    )
    .fix('use an object of key: value strings')
    .default({}),
  mac: conf.mac().optional(),
  promisc: conf.bool().optional(),
  mtu: mtuField,
  txQLen: conf.int(0, 2 ** 31 - 1).optional(),
  allmulti: conf.bool().optional(),
  dataDir: conf.string().default('/run/cni/tuning'),
});

/** The tuning plugin's config, parsed. */
export type TuningConf = Infer<typeof tuningConfig>;

/** What the plugin needs from the outside world. */
export interface TuningDeps {
  netlink: Netlink;
  /** Regex allowlist file for sysctl keys (default /etc/cni/tuning/allowlist.conf; used when present). */
  allowlistFile?: string;
}

/** The backup of what ADD changed, in the reference's JSON layout. */
interface Backup {
  mac?: string;
  promisc?: boolean;
  mtu?: number;
  allmulti?: boolean;
  txQLen?: number;
}

/** The /proc/sys path (relative) for a key; `IFNAME` stands for the container interface. */
export function sysctlKeyPath(key: string, ifname: string): string {
  // Interface names may contain dots, so a key may use '/' separators instead; IFNAME is replaced
  // after splitting so a dotted ifname survives.
  const parts = key.includes('/') ? key.replace(/^\/proc\/sys\//, '').split('/') : key.split('.');
  const path = parts.map((p) => (p === 'IFNAME' ? ifname : p)).join('/');
  if (!path.startsWith('net/') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `sysctl: key ${JSON.stringify(key)} is not under net.; tuning only sets per-netns keys such as "net.ipv4.conf.IFNAME.arp_filter"`,
    );
  }
  return path;
}

const backupFile = (dir: string, cid: string, ifname: string) => join(dir, `${cid}_${ifname}.json`);

/** Builds the tuning plugin over a netlink backend. */
export function createTuningPlugin(deps: TuningDeps): PluginSpec<TuningConf> {
  const { netlink } = deps;

  function checkAllowlist(keys: string[]): void {
    const file = deps.allowlistFile ?? '/etc/cni/tuning/allowlist.conf';
    if (!existsSync(file)) return;
    const patterns = readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => new RegExp(l));
    for (const k of keys) {
      if (!patterns.some((re) => re.test(k)))
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `sysctl: key ${JSON.stringify(k)} is not allowed by ${file}`,
        );
    }
  }

  function wanted(ctx: PluginContext<TuningConf>): LinkSettings {
    const c = ctx.conf;
    const s: LinkSettings = {};
    const mac = requestedMac(ctx.config, ctx.args);
    if (mac) s.mac = mac;
    if (c.promisc !== undefined) s.promisc = c.promisc;
    if (c.mtu !== undefined) s.mtu = c.mtu;
    if (c.allmulti !== undefined) s.allmulti = c.allmulti;
    if (c.txQLen !== undefined) s.txqlen = c.txQLen;
    return s;
  }

  function requirePrev(ctx: PluginContext<TuningConf>): Result {
    const prev = ctx.config.prevResult;
    if (!prev) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'prevResult: missing; tuning must run chained after a plugin that creates the interface',
      );
    }
    return prev;
  }

  return {
    about: 'tuning (cni-kit): sysctls and link attributes for a container interface',
    supportedVersions: ALL_VERSIONS,
    config: tuningConfig,
    async add(ctx) {
      const prev = requirePrev(ctx);
      const c = ctx.conf;
      const keys = Object.keys(c.sysctl);
      checkAllowlist(keys);
      const paths = keys.map((k) => sysctlKeyPath(k, ctx.ifname));
      const set = wanted(ctx);
      const file = backupFile(c.dataDir, ctx.containerId, ctx.ifname);
      const link = await netlink.inNetns(ctx.netns, async (ns) => {
        const before = await ns.getLink(ctx.ifname);
        if (Object.keys(set).length && !existsSync(file)) {
          // Only the first ADD writes the backup: a retried ADD must not record our own values.
          const b: Backup = {};
          if (set.mac) b.mac = before.mac;
          if (set.promisc !== undefined) b.promisc = before.promisc;
          if (set.mtu !== undefined) b.mtu = before.mtu;
          if (set.allmulti !== undefined) b.allmulti = before.allmulti;
          if (set.txqlen !== undefined) b.txQLen = before.txqlen;
          mkdirSync(c.dataDir, { recursive: true });
          writeFileSync(`${file}.tmp`, JSON.stringify(b));
          renameSync(`${file}.tmp`, file);
        }
        for (const [i, p] of paths.entries()) ns.setSysctl(p, c.sysctl[keys[i] ?? ''] ?? '');
        if (Object.keys(set).length) ns.setLink(ctx.ifname, set);
        return ns.getLink(ctx.ifname);
      });
      const out: Result = { ...prev, cniVersion: '1.1.0' };
      if (set.mac) {
        out.interfaces = (prev.interfaces ?? []).map((i) =>
          i.name === ctx.ifname && i.sandbox === ctx.netns ? { ...i, mac: link.mac } : i,
        );
      }
      return out;
    },
    async check(ctx) {
      requirePrev(ctx);
      const c = ctx.conf;
      const keys = Object.keys(c.sysctl);
      const set = wanted(ctx);
      await netlink.inNetns(ctx.netns, async (ns) => {
        for (const k of keys) {
          const got = await ns.getSysctl(sysctlKeyPath(k, ctx.ifname));
          if (got !== c.sysctl[k])
            throw new CniError(
              ErrorCode.Internal,
              `CHECK: sysctl ${k} is ${got}, config says ${c.sysctl[k]}`,
            );
        }
        const l = await ns.getLink(ctx.ifname);
        const diffs: string[] = [];
        if (set.mac && l.mac !== set.mac) diffs.push(`mac ${l.mac} != ${set.mac}`);
        if (set.mtu !== undefined && l.mtu !== set.mtu) diffs.push(`mtu ${l.mtu} != ${set.mtu}`);
        if (set.promisc !== undefined && l.promisc !== set.promisc)
          diffs.push(`promisc ${l.promisc} != ${set.promisc}`);
        if (set.allmulti !== undefined && l.allmulti !== set.allmulti)
          diffs.push(`allmulti ${l.allmulti} != ${set.allmulti}`);
        if (set.txqlen !== undefined && l.txqlen !== set.txqlen)
          diffs.push(`txQLen ${l.txqlen} != ${set.txqlen}`);
        if (diffs.length)
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: ${ctx.ifname} differs from the tuning config: ${diffs.join(', ')}`,
          );
      });
    },
    async del(ctx) {
      const file = backupFile(ctx.conf.dataDir, ctx.containerId, ctx.ifname);
      if (!existsSync(file)) return;
      try {
        const b = JSON.parse(readFileSync(file, 'utf8')) as Backup;
        await inNetnsIfExists(netlink, ctx.netns, async (ns) => {
          if (!(await ns.findLink(ctx.ifname))) return;
          const s: LinkSettings = {};
          if (b.mac) s.mac = b.mac;
          if (b.promisc !== undefined) s.promisc = b.promisc;
          if (b.mtu) s.mtu = b.mtu;
          if (b.allmulti !== undefined) s.allmulti = b.allmulti;
          if (b.txQLen !== undefined) s.txqlen = b.txQLen;
          ns.setLink(ctx.ifname, s);
        });
      } catch (e) {
        // DEL must succeed; a link that cannot be restored is about to be deleted anyway.
        ctx.log(`tuning: restoring ${ctx.ifname} failed: ${String(e)}`);
      }
      rmSync(file, { force: true });
    },
  };
}
