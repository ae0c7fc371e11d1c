// portmap's nftables backend in the reference's layout (plugins 1.5+), so either implementation
// finds the other's rules: one table `cni_hostport` per family (ip, ip6) with
//   prerouting (nat, dstnat) and output (nat, dstnat): <conditions> fib daddr type local jump hostports_all
//   hostports_all: jump hostip_hostports; jump hostports   (hostip_hostports is kept empty, for upgrades)
//   hostports:     one DNAT rule per mapping, commented with the container ID
//   masquerading (nat, srcnat): hairpin (and IPv4 localhost) traffic to the container is masqueraded
// Rules are found again by their comment (the container ID), which is all the reference keys them on.
import { CniError, ErrorCode } from 'cni-kit';
import { type IptablesRunner, spawnIptables } from 'cni-kit/netsetup';
import { type Family, isUnspecified, mappingApplies, type PortmapRules } from './rules.js';

/** The reference's table name (in families ip and ip6). */
export const NFT_TABLE = 'cni_hostport';
const HOSTPORTS = 'hostports';
const HOSTIP_HOSTPORTS = 'hostip_hostports';
const ALL = 'hostports_all';
const MASQ = 'masquerading';

const fam = (f: Family) => (f === 6 ? 'ip6' : 'ip');
const tbl = (f: Family) => `${fam(f)} ${NFT_TABLE}`;
const q = (s: string) => `"${s.replace(/["\\]/g, '')}"`;

interface NftRule {
  chain: string;
  handle: number;
  comment?: string;
}

/** The rules of the family's table; undefined when nft is missing, [] when the table is. */
export async function listRules(runner: IptablesRunner, family: Family): Promise<NftRule[] | undefined> {
  const r = await runner('nft', ['-j', 'list', 'table', fam(family), NFT_TABLE]);
  if (r.code === 127) return undefined;
  if (r.code !== 0) {
    if (/No such file or directory|does not exist/i.test(r.stderr)) return [];
    throw new CniError(
      ErrorCode.Internal,
      `portmap: nft list table ${tbl(family)} failed (exit ${r.code}): ${r.stderr.trim()}`,
    );
  }
  const doc = JSON.parse(r.stdout || '{"nftables":[]}') as { nftables?: Array<{ rule?: NftRule }> };
  return (doc.nftables ?? []).map((o) => o.rule).filter((x): x is NftRule => x !== undefined);
}

/** The rules of the container in one family, as `nft -f` lines (without the table plumbing). */
export function planNftRules(p: PortmapRules, address: string, family: Family): string[] {
  const t = tbl(family);
  const ipX = fam(family);
  const ip = address.split('/')[0] ?? address;
  const comment = q(p.containerId);
  const dest = (port: number) => (family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`);
  const out: string[] = [];
  for (const m of p.mappings.filter((x) => mappingApplies(x, family))) {
    const daddr = m.hostIP !== undefined && !isUnspecified(m.hostIP) ? `${ipX} daddr ${m.hostIP} ` : '';
    out.push(
      `add rule ${t} ${HOSTPORTS} ${daddr}${m.protocol} dport ${m.hostPort} dnat to ${dest(m.containerPort)} comment ${comment}`,
    );
  }
  if (p.snat) {
    const src = p.masqAll ? (family === 6 ? '::/0' : '0.0.0.0/0') : ip;
    out.push(`add rule ${t} ${MASQ} ${ipX} saddr ${src} ${ipX} daddr ${ip} masquerade comment ${comment}`);
    if (family === 4 && !p.masqAll)
      out.push(
        `add rule ${t} ${MASQ} ${ipX} saddr 127.0.0.1 ${ipX} daddr ${ip} masquerade comment ${comment}`,
      );
  }
  return out;
}

/** The whole `nft -f` script of an ADD: table plumbing, the container's stale rules out, its rules in. */
export function nftScript(p: PortmapRules, address: string, family: Family, stale: NftRule[]): string {
  const t = tbl(family);
  const cond = ((family === 6 ? p.conditionsV6 : p.conditionsV4) ?? []).join(' ');
  const hook = (name: string, h: string) => [
    `add chain ${t} ${name} { type nat hook ${h} priority -100 ; }`,
    `flush chain ${t} ${name}`,
    `add rule ${t} ${name} ${cond ? `${cond} ` : ''}fib daddr type local jump ${ALL}`,
  ];
  return [
    `add table ${t} { comment "CNI portmap plugin" ; }`,
    `add chain ${t} ${HOSTPORTS}`,
    `add chain ${t} ${HOSTIP_HOSTPORTS}`,
    `add chain ${t} ${ALL}`,
    `flush chain ${t} ${ALL}`,
    `add rule ${t} ${ALL} jump ${HOSTIP_HOSTPORTS}`,
    `add rule ${t} ${ALL} jump ${HOSTPORTS}`,
    ...hook('prerouting', 'prerouting'),
    ...hook('output', 'output'),
    ...(p.snat ? [`add chain ${t} ${MASQ} { type nat hook postrouting priority 100 ; }`] : []),
    ...stale.map((r) => `delete rule ${t} ${r.chain} handle ${r.handle}`),
    ...planNftRules(p, address, family),
    '',
  ].join('\n');
}

const ours = (rules: NftRule[], containerId: string) =>
  rules.filter((r) => r.comment === containerId && [HOSTPORTS, HOSTIP_HOSTPORTS, MASQ].includes(r.chain));

async function apply(runner: IptablesRunner, script: string, what: string): Promise<void> {
  const r = await runner('nft', ['-f', '-'], script);
  if (r.code !== 0)
    throw new CniError(
      ErrorCode.Internal,
      `portmap: ${what} with nft -f failed (exit ${r.code}): ${r.stderr.trim()}`,
      'check conditionsV4/conditionsV6 are nft expressions, and that nf_tables works here',
    );
}

/** Installs one family's rules in one transaction; a repeated ADD replaces the container's rules. */
export async function forwardNft(
  p: PortmapRules,
  address: string,
  family: Family,
  runner: IptablesRunner = spawnIptables,
): Promise<void> {
  const rules = await listRules(runner, family);
  if (rules === undefined) throw nftMissing();
  await apply(runner, nftScript(p, address, family, ours(rules, p.containerId)), `ADD in ${tbl(family)}`);
}

/** Removes the container's rules from both families' tables; nothing to do without nft or tables. */
export async function unforwardNft(
  containerId: string,
  runner: IptablesRunner = spawnIptables,
): Promise<void> {
  for (const family of [4, 6] as const) {
    const rules = ours((await listRules(runner, family)) ?? [], containerId);
    if (!rules.length) continue;
    const t = tbl(family);
    await apply(
      runner,
      `${rules.map((r) => `delete rule ${t} ${r.chain} handle ${r.handle}`).join('\n')}\n`,
      `DEL in ${t}`,
    );
  }
}

/** CHECK of one family, as the reference: enough DNAT and masquerade rules carry the container ID. */
export async function checkNft(
  p: PortmapRules,
  family: Family,
  runner: IptablesRunner = spawnIptables,
): Promise<void> {
  const rules = await listRules(runner, family);
  if (rules === undefined) throw nftMissing();
  const want = {
    [HOSTPORTS]: p.mappings.filter((m) => mappingApplies(m, family)).length,
    [MASQ]: p.snat ? (family === 4 && !p.masqAll ? 2 : 1) : 0,
  };
  for (const [chain, n] of Object.entries(want)) {
    const got = rules.filter((r) => r.chain === chain && r.comment === p.containerId).length;
    if (got < n)
      throw new CniError(
        ErrorCode.Internal,
        `CHECK: ${tbl(family)} chain ${chain} has ${got} rule(s) of container ${p.containerId}, expected ${n}`,
        'run ADD again to restore the port mappings',
      );
  }
  for (const hook of ['prerouting', 'output'])
    if (!rules.some((r) => r.chain === hook))
      throw new CniError(ErrorCode.Internal, `CHECK: ${tbl(family)} chain ${hook} has no jump to ${ALL}`);
}

/** Whether the nft command runs here. */
export async function nftWorks(runner: IptablesRunner = spawnIptables): Promise<boolean> {
  return (await runner('nft', ['--version'])).code === 0;
}

/** The refusal of `backend: "nftables"` where nft cannot run. */
export function nftMissing(): CniError {
  return new CniError(
    ErrorCode.InvalidNetworkConfig,
    'backend: "nftables" needs the nft command, which is not available on this node',
    'install nftables, or set "backend": "iptables" (or drop it)',
  );
}
