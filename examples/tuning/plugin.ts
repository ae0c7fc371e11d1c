import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
import type { Link, LinkSettings, Netlink, NetnsOps } from 'cni-kit/netlink';
import { inNetnsIfExists, mtuField } from 'cni-kit/netsetup';

/** Where the reference reads its sysctl allowlist from. */
export const DEFAULT_ALLOWLIST = '/etc/cni/tuning/allowlist.conf';

/** The largest MTU the kernel stores (dev->mtu is an int; each driver narrows it further). */
export const KERNEL_MAX_MTU = 2 ** 31 - 1;
/** The largest transmit queue length the kernel stores (IFLA_TXQLEN is a u32). */
export const KERNEL_MAX_TXQLEN = 2 ** 32 - 1;

const sysctlMap = conf
  .record(
    conf.custom((v, path) => {
      if (typeof v === 'string' || typeof v === 'number') return String(v);
      throw new CniError(ErrorCode.InvalidNetworkConfig, `${path}: ${JSON.stringify(v)} must be a string`);
    }),
  )
  .fix('use an object of key: value strings');
const txQLen = conf.int(0, KERNEL_MAX_TXQLEN).optional();

/** The tuning plugin's own config fields; JSON null is "not set" everywhere, as in the reference. */
export const tuningConfig = conf.object({
  /** Keys under net. (IFNAME stands for the container interface) and their values. */
  sysctl: sysctlMap.default({}),
  mac: conf.mac().optional(),
  promisc: conf.bool().optional(),
  mtu: mtuField,
  txQLen,
  allmulti: conf.bool().optional(),
  dataDir: conf.string().default('/run/cni/tuning'),
  runtimeConfig: conf.object({ mac: conf.mac().optional() }).optional(),
  /** Per-attachment overrides (multus and NADs pass them): they win over the fields above. */
  args: conf
    .object({
      cni: conf
        .object({
          sysctl: sysctlMap.optional(),
          mac: conf.mac().optional(),
          promisc: conf.bool().optional(),
          mtu: mtuField,
          allmulti: conf.bool().optional(),
          txQLen,
        })
        .optional(),
    })
    .optional(),
});

/** The tuning plugin's config, parsed. */
export type TuningConf = Infer<typeof tuningConfig>;

/** What the plugin needs from the outside world. */
export interface TuningDeps {
  netlink: Netlink;
  /** Regex allowlist file for sysctl keys (default {@link DEFAULT_ALLOWLIST}; used when present). */
  allowlistFile?: string;
}

/** The backup of what ADD changed, in the reference's JSON layout. */
export interface TuningBackup {
  mac?: string;
  promisc?: boolean;
  mtu?: number;
  allmulti?: boolean;
  txQLen?: number;
}

/** What one ADD, CHECK or DEL asks for once `args.cni` and the MAC sources are merged. */
export interface TuningRequest {
  sysctl: Record<string, string>;
  link: LinkSettings;
}

/**
 * Merges the config with its overrides as the reference does: the MAC is the config's, replaced by
 * CNI_ARGS MAC, then runtimeConfig.mac, then args.cni.mac; args.cni's sysctls are added to (and
 * replace keys of) `sysctl`; args.cni's promisc, mtu, allmulti and txQLen replace the config's
 * (an args.cni mtu of 0 clears the config's, as 0 means "leave it" in the reference).
 */
export function tuningRequest(
  c: TuningConf,
  config: Record<string, unknown>,
  args: ReadonlyArray<readonly [string, string]>,
): TuningRequest {
  const a = c.args?.cni;
  const fromEnv = [...args].reverse().find(([k]) => k === 'MAC')?.[1];
  const mac =
    a?.mac ??
    c.runtimeConfig?.mac ??
    (fromEnv ? conf.mac().parse(fromEnv, { path: 'CNI_ARGS MAC' }) : undefined) ??
    c.mac;
  const rawCni = (config.args as { cni?: Record<string, unknown> } | null | undefined)?.cni;
  const link: LinkSettings = {};
  if (mac) link.mac = mac;
  const promisc = a?.promisc ?? c.promisc;
  if (promisc !== undefined) link.promisc = promisc;
  const mtu = typeof rawCni?.mtu === 'number' ? a?.mtu : c.mtu;
  if (mtu !== undefined) link.mtu = mtu;
  const allmulti = a?.allmulti ?? c.allmulti;
  if (allmulti !== undefined) link.allmulti = allmulti;
  const txqlen = a?.txQLen ?? c.txQLen;
  if (txqlen !== undefined) link.txqlen = txqlen;
  return { sysctl: { ...c.sysctl, ...(a?.sysctl ?? {}) }, link };
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

/**
 * Reads the allowlist (one regex per line, as the reference; blank lines and lines starting with #
 * are skipped) and refuses any key no line matches. A missing file allows everything.
 */
export function checkAllowlist(file: string, keys: string[]): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new CniError(ErrorCode.IOFailure, `sysctl allowlist ${file}: cannot be read: ${String(e)}`);
  }
  const patterns = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l, i) => {
      try {
        return new RegExp(l);
      } catch {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `sysctl allowlist ${file}: line ${JSON.stringify(l)} (entry ${i + 1}) is not a valid regular expression; fix or remove it`,
        );
      }
    });
  for (const k of keys) {
    if (!patterns.some((re) => re.test(k)))
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `sysctl: ${JSON.stringify(k)} is not allowed by the allowlist ${file}; add a line matching it there or drop the key`,
      );
  }
}

/** The backup's path: the reference's `<containerID>_<ifname>.json`, bounded to a file name's length. */
export function backupFile(dir: string, cid: string, ifname: string): string {
  return join(dir, boundedFileName(`${cid}_${ifname}.json`));
}

const isInt = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/**
 * Parses a backup file's JSON, keeping each value the kernel could have held (MTU up to 2^31-1, as on
 * `lo`; txqlen up to 2^32-1) and dropping, with a note, any value no kernel holds.
 */
export function parseBackup(text: string, note: (msg: string) => void = () => {}): TuningBackup {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const b: TuningBackup = {};
  if (raw === null || typeof raw !== 'object') return b;
  const bad = (k: string) =>
    note(`backup field ${k}: ${JSON.stringify(raw[k])} is not a value a link can hold; left as is`);
  if (raw.mac !== undefined && raw.mac !== null && raw.mac !== '') {
    if (typeof raw.mac === 'string' && /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(raw.mac)) b.mac = raw.mac;
    else bad('mac');
  }
  if (raw.mtu !== undefined && raw.mtu !== null) {
    if (isInt(raw.mtu, KERNEL_MAX_MTU)) b.mtu = raw.mtu;
    else bad('mtu');
  }
  if (raw.txQLen !== undefined && raw.txQLen !== null) {
    if (isInt(raw.txQLen, KERNEL_MAX_TXQLEN)) b.txQLen = raw.txQLen;
    else bad('txQLen');
  }
  for (const k of ['promisc', 'allmulti'] as const) {
    if (raw[k] === undefined || raw[k] === null) continue;
    if (typeof raw[k] === 'boolean') b[k] = raw[k];
    else bad(k);
  }
  return b;
}

/** The live values of the attributes `set` changes, in the backup's layout. */
function snapshot(l: Link, set: LinkSettings): TuningBackup {
  const b: TuningBackup = {};
  if (set.mac !== undefined) b.mac = l.mac;
  if (set.promisc !== undefined) b.promisc = l.promisc;
  if (set.mtu !== undefined) b.mtu = l.mtu;
  if (set.allmulti !== undefined) b.allmulti = l.allmulti;
  if (set.txqlen !== undefined) b.txQLen = l.txqlen;
  return b;
}

/**
 * Sets each attribute of a backup on `ifname`, one request per attribute so one the kernel refuses
 * does not keep the others from being restored. Returns the failures, each naming its attribute.
 */
export async function restoreLink(ns: NetnsOps, ifname: string, b: TuningBackup): Promise<string[]> {
  const steps: Array<[string, LinkSettings]> = [];
  if (b.mtu !== undefined) steps.push(['mtu', { mtu: b.mtu }]);
  if (b.mac !== undefined) steps.push(['mac', { mac: b.mac }]);
  if (b.promisc !== undefined) steps.push(['promisc', { promisc: b.promisc }]);
  if (b.allmulti !== undefined) steps.push(['allmulti', { allmulti: b.allmulti }]);
  if (b.txQLen !== undefined) steps.push(['txQLen', { txqlen: b.txQLen }]);
  const failed: string[] = [];
  for (const [what, s] of steps) {
    try {
      ns.setLink(ifname, s);
      await ns.flush();
    } catch (e) {
      failed.push(
        `${what} ${JSON.stringify(Object.values(s)[0])}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }
  return failed;
}

function sysctlError(key: string, value: string | undefined, e: unknown): CniError {
  const why = e instanceof Error ? e.message : String(e);
  const code =
    e instanceof CniError && e.code !== ErrorCode.Internal ? e.code : ErrorCode.InvalidNetworkConfig;
  return value === undefined
    ? new CniError(
        code,
        `sysctl: ${JSON.stringify(key)} cannot be read in the container (${why}); check the key exists in this kernel`,
      )
    : new CniError(
        code,
        `sysctl: ${JSON.stringify(key)}: writing ${JSON.stringify(value)} failed (${why}); use a value the kernel accepts for it`,
      );
}

/** Builds the tuning plugin over a netlink backend. */
export function createTuningPlugin(deps: TuningDeps): PluginSpec<TuningConf> {
  const { netlink } = deps;
  const allowlist = deps.allowlistFile ?? DEFAULT_ALLOWLIST;

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

  async function add(ctx: PluginContext<TuningConf>): Promise<Result> {
    const prev = requirePrev(ctx);
    const req = tuningRequest(ctx.conf, ctx.config, ctx.args);
    const keys = Object.keys(req.sysctl);
    checkAllowlist(allowlist, keys);
    const paths = keys.map((k) => sysctlKeyPath(k, ctx.ifname));
    const set = req.link;
    const dir = ctx.conf.dataDir;
    const file = backupFile(dir, ctx.containerId, ctx.ifname);
    const link = await netlink.inNetns(ctx.netns, async (ns) => {
      const before = await ns.getLink(ctx.ifname);
      // The kernel takes no all-zero MAC back (lo has one): DEL could never restore it.
      if (set.mac !== undefined && /^(00:){5}00$/.test(before.mac ?? '') && set.mac !== before.mac)
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `mac: ${ctx.ifname} has the MAC address 00:00:00:00:00:00, which the kernel refuses to set again, so DEL could not put it back; remove "mac" for this interface`,
        );
      // Read every sysctl first: a key this kernel lacks fails here, before anything changed.
      const old: string[] = [];
      for (const [i, p] of paths.entries()) {
        try {
          old.push(await ns.getSysctl(p));
        } catch (e) {
          throw sysctlError(keys[i] ?? p, undefined, e);
        }
      }
      // A retried ADD keeps what an earlier one recorded (the originals) and adds the new fields.
      const prior = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
      const kept = prior === undefined ? {} : safeParse(prior, ctx.log);
      const backup: TuningBackup = { ...snapshot(before, set), ...kept };
      const writeBackup = Object.keys(set).length > 0 && JSON.stringify(backup) !== JSON.stringify(kept);
      if (writeBackup) {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        writeFileAtomicSync(file, JSON.stringify(backup), { mode: 0o600 });
      }
      let written = 0;
      try {
        for (const [i, p] of paths.entries()) {
          const value = req.sysctl[keys[i] ?? ''] ?? '';
          try {
            ns.setSysctl(p, value);
            await ns.flush();
          } catch (e) {
            throw sysctlError(keys[i] ?? p, value, e);
          }
          written++;
        }
        if (Object.keys(set).length) {
          ns.setLink(ctx.ifname, set);
          await ns.flush();
        }
        return await ns.getLink(ctx.ifname);
      } catch (e) {
        // Undo in reverse: the link's attributes as this ADD found them, then the sysctls, then the backup.
        const failed = await restoreLink(ns, ctx.ifname, snapshot(before, set));
        for (let i = written - 1; i >= 0; i--) {
          try {
            ns.setSysctl(paths[i] ?? '', old[i] ?? '');
            await ns.flush();
          } catch (u) {
            failed.push(`sysctl ${keys[i]}: ${String(u)}`);
          }
        }
        for (const f of failed) ctx.log(`tuning: rollback after failed ADD: ${f}`);
        if (writeBackup) {
          if (prior === undefined) rmSync(file, { force: true });
          else writeFileAtomicSync(file, prior, { mode: 0o600 });
        }
        throw e;
      }
    });
    const out: Result = { ...prev, cniVersion: '1.1.0' };
    if (set.mac) {
      out.interfaces = (prev.interfaces ?? []).map((i) =>
        i.name === ctx.ifname && i.sandbox === ctx.netns ? { ...i, mac: link.mac } : i,
      );
    }
    return out;
  }

  return {
    about: 'tuning (cni-kit): sysctls and link attributes for a container interface',
    config: tuningConfig,
    add,
    async check(ctx) {
      requirePrev(ctx);
      const req = tuningRequest(ctx.conf, ctx.config, ctx.args);
      const set = req.link;
      await netlink.inNetns(ctx.netns, async (ns) => {
        for (const [k, want] of Object.entries(req.sysctl)) {
          const got = await ns.getSysctl(sysctlKeyPath(k, ctx.ifname));
          if (got !== want)
            throw new CniError(ErrorCode.Internal, `CHECK: sysctl ${k} is ${got}, config says ${want}`);
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
      // A backup write killed between its temp file and the rename leaves `.tmp.*` (writer gone).
      removeStaleTempFiles(dirname(file));
      if (!existsSync(file)) return;
      const b = safeParse(readFileSync(file, 'utf8'), ctx.log);
      const failed = await inNetnsIfExists(netlink, ctx.netns, async (ns) => {
        if (!(await ns.findLink(ctx.ifname))) return [];
        return restoreLink(ns, ctx.ifname, b);
      });
      if (failed?.length) {
        // As the reference: DEL succeeds (the runtime is tearing the container down either way) and
        // the backup stays, so a repeated DEL can finish the restore.
        ctx.log(`tuning: restoring ${ctx.ifname} from ${file} failed: ${failed.join('; ')}`);
        return;
      }
      rmSync(file, { force: true });
    },
  };
}

function safeParse(text: string, log: (m: string) => void): TuningBackup {
  try {
    return parseBackup(text, (m) => log(`tuning: ${m}`));
  } catch (e) {
    log(`tuning: unreadable backup ignored: ${String(e)}`);
    return {};
  }
}
