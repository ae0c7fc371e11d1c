import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
import { boundedFileName, writeFileAtomicSync } from 'cni-kit/fs';
import { withFileLock } from 'cni-kit/ipam';
import { type IptablesRunner, spawnIptables } from 'cni-kit/netsetup';
import { formatIP, tryParseIP } from 'cni-kit/spec';
import { busctlFirewalld, type FirewalldClient } from './firewalld.js';
import {
  containerRules,
  createChain,
  DEFAULT_ADMIN_CHAIN,
  deleteChain,
  type Family,
  type FamilyRequest,
  FORWARD_CHAIN,
  hostMatch,
  type IngressPolicy,
  missingRules,
  mustReadFilter,
  planAdd,
  planDelete,
  readFilter,
  restore,
} from './iptables.js';

/** Where ADD records what it did, so DEL without prevResult (or after the netns is gone) finds it. */
export const DEFAULT_DATA_DIR = '/run/cni/firewall';
/**
 * The lock every firewall call takes around its read-modify-write of the node's iptables chains:
 * node-wide (the chains are), so not under a network's `dataDir`; stays, like any lock file.
 */
export const DEFAULT_LOCK_FILE = '/run/lock/cni-kit-firewall.lock';

const BUILTIN = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING']);
const TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'QUEUE', 'REJECT', 'LOG', 'MARK']);

/** Why an admin chain name cannot work (undefined: it can). iptables names hold at most 28 bytes. */
export function adminChainProblem(name: string): string | undefined {
  if (Buffer.byteLength(name) > 28) return 'is longer than the 28 characters iptables allows in a chain name';
  if (/[\s"'\\]/.test(name) || /^[-!]/.test(name))
    return 'is not a chain name (no whitespace or quotes, not starting with "-" or "!")';
  if (BUILTIN.has(name) || TARGETS.has(name)) return 'is a built-in chain or target';
  if (name === FORWARD_CHAIN) return `is the plugin's own chain ${FORWARD_CHAIN}, which would jump to itself`;
  return undefined;
}

/** The firewall plugin's config fields; "" and null mean "not set", as in the reference. */
export const firewallConfig = conf.object({
  /** Default: firewalld when it owns its name on the system bus, else iptables (the reference's rule). */
  backend: conf.enum(['iptables', 'firewalld']).optional(),
  iptablesAdminChainName: conf
    .string()
    .default(DEFAULT_ADMIN_CHAIN)
    .refine(adminChainProblem, `use a chain name such as "${DEFAULT_ADMIN_CHAIN}" (the default)`),
  firewalldZone: conf.string().default('trusted'),
  ingressPolicy: conf.enum(['open', 'same-bridge', 'isolated']).default('open'),
  /** cni-kit's own: where each attachment's record lives. */
  dataDir: conf.string().default(DEFAULT_DATA_DIR),
});

/** The firewall plugin's config, parsed. */
export type FirewallConf = Infer<typeof firewallConfig>;

/** What the plugin needs from the outside world. */
export interface FirewallDeps {
  /** Runs iptables-save/-restore (default: spawns them). */
  iptables?: IptablesRunner | undefined;
  /** Talks to firewalld (default: busctl on the system bus, or DBUS_SYSTEM_BUS_ADDRESS of the call). */
  firewalld?: FirewalldClient | undefined;
  /** The node-wide lock file (default {@link DEFAULT_LOCK_FILE}). */
  lockFile?: string | undefined;
}

/** What ADD records per attachment (`<dataDir>/<containerId>_<ifname>.json`). */
export interface FirewallRecord {
  network: string;
  containerId: string;
  ifname: string;
  backend: 'iptables' | 'firewalld';
  /** Container addresses as host matches ("10.1.0.5/32", "fd00::5/128"). */
  hosts: string[];
  zone?: string | undefined;
  admin?: string | undefined;
}

/** The record file of an attachment, bounded to a file name's length. */
export function recordFile(dir: string, containerId: string, ifname: string): string {
  return join(dir, boundedFileName(`${containerId}_${ifname}.json`));
}

function readRecord(file: string, log: (m: string) => void): FirewallRecord | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as FirewallRecord;
    if (!Array.isArray(r.hosts) || (r.backend !== 'iptables' && r.backend !== 'firewalld'))
      throw new Error('bad shape');
    return { ...r, hosts: r.hosts.filter((h) => typeof h === 'string' && hostFamily(h) !== undefined) };
  } catch (e) {
    log(`firewall: unreadable record ${file} ignored: ${String(e)}`);
    return undefined;
  }
}

/** The family of a host match, undefined when it is not one. */
function hostFamily(host: string): Family | undefined {
  const m = /^(.+)\/(32|128)$/.exec(host);
  const ip = m?.[1] ? tryParseIP(m[1]) : undefined;
  if (!ip || (ip.family === 4) !== (m?.[2] === '32')) return undefined;
  return ip.family;
}

/** prevResult's addresses as host matches, in the reference's canonical text. */
export function hostsOf(prev: Result | undefined): string[] {
  const out: string[] = [];
  for (const c of prev?.ips ?? []) {
    const ip = tryParseIP(c.address.split('/')[0] ?? '');
    if (!ip) continue;
    const h = hostMatch(formatIP(ip), ip.family);
    if (!out.includes(h)) out.push(h);
  }
  return out;
}

const byFamily = (hosts: readonly string[], f: Family) => hosts.filter((h) => hostFamily(h) === f);
const FAMILIES: Family[] = [4, 6];
const famName = (f: Family) => (f === 4 ? 'IPv4' : 'IPv6');

/** Builds the firewall plugin over an iptables runner and a firewalld client. */
export function createFirewallPlugin(deps: FirewallDeps = {}): PluginSpec<FirewallConf> {
  const ipt = deps.iptables ?? spawnIptables;
  // The bus address comes from the call's environment, as Go's dbus.SystemBus reads its own: in
  // daemon mode the daemon's environment is not the runtime's.
  const fwdFor = (env: Readonly<Record<string, string | undefined>>): FirewalldClient =>
    deps.firewalld ??
    busctlFirewalld({ runner: spawnIptables, address: env.DBUS_SYSTEM_BUS_ADDRESS || undefined });

  function requirePrev(ctx: PluginContext<FirewallConf>): Result {
    const prev = ctx.config.prevResult;
    if (!prev)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        'prevResult: missing; firewall must run chained after a plugin that gives the container its addresses (such as bridge)',
      );
    return prev;
  }

  /** The bridge of the isolation policies: prevResult's first interface, as the reference. */
  function isolationOf(ctx: PluginContext<FirewallConf>, prev: Result) {
    const policy = ctx.conf.ingressPolicy as IngressPolicy;
    if (policy === 'open') return undefined;
    const bridge = prev.interfaces?.[0]?.name;
    if (!bridge)
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `ingressPolicy: ${JSON.stringify(policy)} needs the bridge as prevResult's first interface, and prevResult has no interfaces; chain firewall after the bridge plugin or use "open"`,
      );
    return { bridge, policy };
  }

  async function backendOf(c: FirewallConf, fwd: FirewalldClient): Promise<'iptables' | 'firewalld'> {
    if (c.backend) return c.backend;
    return (await fwd.running()) ? 'firewalld' : 'iptables';
  }

  const lockPath = deps.lockFile ?? DEFAULT_LOCK_FILE;
  /** Runs `fn` holding the node-wide lock; a timeout is code 11 naming this plugin's lock. */
  async function locked<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await withFileLock(lockPath, fn);
    } catch (e) {
      if (e instanceof CniError && e.code === ErrorCode.TryAgainLater && e.message.includes(lockPath))
        throw new CniError(
          ErrorCode.TryAgainLater,
          `firewall: timed out waiting for the lock ${lockPath}; another firewall call holds it, retry`,
        );
      throw e;
    }
  }

  /** Removes the iptables rules of `hosts` in every family that has some; throws when a tool fails. */
  async function deleteHostRules(hosts: readonly string[]): Promise<void> {
    for (const f of FAMILIES) {
      const mine = byFamily(hosts, f);
      if (mine.length === 0) continue;
      // No table (or no ip6tables) means none of our rules can be there.
      const t = await readFilter(ipt, f);
      if (!t) continue;
      const rules = mine.flatMap((h) => containerRules(h).map((r) => [FORWARD_CHAIN, r] as const));
      await restore(ipt, f, planDelete(t, rules));
    }
  }

  async function removeSources(
    fwd: FirewalldClient,
    rec: Pick<FirewallRecord, 'hosts' | 'zone'>,
    zone: string,
    log: (m: string) => void,
  ) {
    for (const h of rec.hosts) {
      try {
        await fwd.removeSource(rec.zone ?? zone, h);
      } catch (e) {
        // As the reference: DEL goes on (the source may be gone, or firewalld stopped).
        log(`firewall: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  /**
   * What ADD makes (and CHECK expects) in family `f`: the container's rules with the iptables
   * backend; the isolation chains in every family prevResult has addresses of, whatever the backend.
   * Undefined when there is nothing to do in that family.
   */
  function familyRequest(
    c: FirewallConf,
    backend: 'iptables' | 'firewalld',
    hosts: string[],
    isolation: FamilyRequest['isolation'],
    f: Family,
  ): FamilyRequest | undefined {
    const mine = byFamily(hosts, f);
    const req: FamilyRequest = {
      hosts: backend === 'iptables' ? mine : [],
      admin: c.iptablesAdminChainName,
      isolation: mine.length > 0 ? isolation : undefined,
    };
    return req.hosts.length === 0 && !req.isolation ? undefined : req;
  }

  async function add(ctx: PluginContext<FirewallConf>): Promise<Result> {
    const c = ctx.conf;
    const prev = requirePrev(ctx);
    const isolation = isolationOf(ctx, prev);
    const hosts = hostsOf(prev);
    const fwd = fwdFor(ctx.env);
    const backend = await backendOf(c, fwd);
    const file = recordFile(c.dataDir, ctx.containerId, ctx.ifname);
    mkdirSync(c.dataDir, { recursive: true, mode: 0o700 });
    await locked(async () => {
      const prior = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
      const old = readRecord(file, ctx.log);
      // A repeated ADD keeps the addresses an earlier one recorded, so DEL removes them all.
      const rec: FirewallRecord = {
        network: ctx.config.name ?? '',
        containerId: ctx.containerId,
        ifname: ctx.ifname,
        backend,
        hosts: [...new Set([...(old?.backend === backend ? old.hosts : []), ...hosts])],
        ...(backend === 'firewalld' ? { zone: c.firewalldZone } : { admin: c.iptablesAdminChainName }),
      };
      // Recorded before any change: a plugin killed mid-ADD leaves what DEL needs to undo it.
      writeFileAtomicSync(file, JSON.stringify(rec), { mode: 0o600 });
      const undo: Array<() => Promise<void>> = [];
      try {
        if (backend === 'firewalld') {
          for (const h of hosts) {
            if (await fwd.addSource(c.firewalldZone, h))
              undo.push(() => fwd.removeSource(c.firewalldZone, h));
          }
        }
        for (const f of FAMILIES) {
          const req = familyRequest(c, backend, hosts, isolation, f);
          if (!req) continue;
          const plan = planAdd(await mustReadFilter(ipt, f), req);
          for (const chain of plan.newChains) await createChain(ipt, f, chain);
          undo.push(() => undoPlan(f, plan.lines, plan.newChains));
          await restore(ipt, f, plan.lines);
        }
      } catch (e) {
        for (const u of undo.reverse()) {
          try {
            await u();
          } catch (x) {
            ctx.log(`firewall: rollback after failed ADD: ${x instanceof Error ? x.message : String(x)}`);
          }
        }
        if (prior === undefined) rmSync(file, { force: true });
        else writeFileAtomicSync(file, prior, { mode: 0o600 });
        throw e;
      }
    });
    return { ...prev, cniVersion: '1.1.0' };
  }

  /** Takes back what one family's plan added (rules it inserted, chains it created). */
  async function undoPlan(f: Family, lines: readonly string[], newChains: readonly string[]): Promise<void> {
    const t = await readFilter(ipt, f);
    if (!t) return;
    const rules = lines.map((l) => {
      const m = /^-[IA] (\S+) (?:1 )?(.*)$/.exec(l);
      return [m?.[1] ?? '', m?.[2] ?? ''] as const;
    });
    await restore(ipt, f, planDelete(t, rules));
    for (const ch of [...newChains].reverse()) if (t.chains.has(ch)) await deleteChain(ipt, f, ch);
  }

  async function check(ctx: PluginContext<FirewallConf>): Promise<void> {
    const c = ctx.conf;
    const prev = requirePrev(ctx);
    const isolation = isolationOf(ctx, prev);
    const hosts = hostsOf(prev);
    const fwd = fwdFor(ctx.env);
    const backend = await backendOf(c, fwd);
    if (backend === 'firewalld') {
      for (const h of hosts)
        if (!(await fwd.querySource(c.firewalldZone, h)))
          throw new CniError(
            ErrorCode.Internal,
            `CHECK: firewalld zone ${c.firewalldZone} does not hold the source ${h}`,
          );
    }
    for (const f of FAMILIES) {
      const req = familyRequest(c, backend, hosts, isolation, f);
      if (!req) continue;
      const miss = missingRules(await mustReadFilter(ipt, f), req);
      if (miss.length)
        throw new CniError(
          ErrorCode.Internal,
          `CHECK: ${famName(f)} filter table lacks what ADD made: ${miss.join('; ')}`,
        );
    }
  }

  /** Removes one attachment's rules by its record (and prevResult's addresses), then the record. */
  async function delAttachment(
    env: PluginContext<FirewallConf>['env'],
    c: FirewallConf,
    file: string,
    rec: FirewallRecord | undefined,
    extraHosts: readonly string[],
    log: (m: string) => void,
  ): Promise<void> {
    const hosts = [...new Set([...(rec?.hosts ?? []), ...extraHosts])];
    if (hosts.length > 0) {
      const fwd = fwdFor(env);
      const backend = rec?.backend ?? (await backendOf(c, fwd));
      if (backend === 'iptables') await deleteHostRules(hosts);
      else await removeSources(fwd, { hosts, zone: rec?.zone }, c.firewalldZone, log);
    }
    rmSync(file, { force: true });
  }

  return {
    about: 'firewall (cni-kit): lets container traffic through iptables or firewalld',
    config: firewallConfig,
    add,
    check,
    async del(ctx) {
      const c = ctx.conf;
      const file = recordFile(c.dataDir, ctx.containerId, ctx.ifname);
      const prevHosts = hostsOf(ctx.config.prevResult);
      if (!existsSync(file) && prevHosts.length === 0) return;
      // The isolation chains stay, as the reference leaves them: other containers may use the bridge.
      await locked(() => delAttachment(ctx.env, c, file, readRecord(file, ctx.log), prevHosts, ctx.log));
    },
    async gc(ctx) {
      const c = ctx.conf;
      let names: string[];
      try {
        names = readdirSync(c.dataDir).filter((n) => n.endsWith('.json'));
      } catch {
        return;
      }
      const valid = new Set(ctx.validAttachments.map((a) => `${a.containerId}\0${a.ifname}`));
      await locked(async () => {
        for (const n of names) {
          const file = join(c.dataDir, n);
          const rec = readRecord(file, ctx.log);
          if (!rec || rec.network !== (ctx.config.name ?? '')) continue;
          if (valid.has(`${rec.containerId}\0${rec.ifname}`)) continue;
          await delAttachment(ctx.env, c, file, rec, [], ctx.log);
        }
      });
    },
  };
}
