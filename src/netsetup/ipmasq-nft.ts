// IP masquerade through nftables (`ipMasqBackend: "nftables"`), in the layout of the reference
// (plugins 1.5+), so either implementation finds and removes the other's rules: table
// `inet cni_plugins_masquerade`, a `postrouting` nat chain that skips multicast and jumps to
// `masq_checks`, and in `masq_checks` one rule per container address whose comment starts with a
// hash of (network, ifname, containerId). Like the reference (which drives the `nft` command), it
// needs the nft binary; `nftAvailable` lets a plugin refuse the config before changing anything.

import { formatSubnet, ipFamily, parseCIDR } from '../spec/addr.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import { type IptablesRunner, spawnIptables } from './ipmasq.js';

// node:crypto costs ~2 ms to load: only calls that hash pay for it.
const crypto = () => process.getBuiltinModule('node:crypto');

/** The reference's table and chain names. */
export const NFT_MASQ_TABLE = 'cni_plugins_masquerade';
const CHECKS = 'masq_checks';
const COMMENT_MAX = 128;

const hash16 = (s: string): string => crypto().createHash('sha512').update(s).digest('hex').slice(0, 16);

/** The comment prefix of every rule of one attachment: hash(network) "-" hash(ifname:containerId). */
export function nftMasqTag(network: string, ifname: string, containerId: string): string {
  return `${hash16(network)}-${hash16(`${ifname}:${containerId}`)}`;
}

/** The full rule comment: the tag, then a readable (possibly truncated) description. */
export function nftMasqComment(network: string, ifname: string, containerId: string): string {
  const strip = (s: string) => s.replaceAll('"', '');
  const c = `${nftMasqTag(network, ifname, containerId)}, net: ${strip(network)}, if: ${strip(ifname)}, id: ${strip(containerId)}`;
  return c.slice(0, COMMENT_MAX);
}

/** Options for the nftables masquerade functions. */
export interface NftMasqOptions {
  runner?: IptablesRunner | undefined;
}

/** Whether the nft command runs here (the reference's backend needs it too). */
export async function nftAvailable(opts: NftMasqOptions = {}): Promise<boolean> {
  const r = await (opts.runner ?? spawnIptables)('nft', ['--version']);
  return r.code === 0;
}

interface NftRule {
  handle: number;
  comment?: string;
}

/** The rules of masq_checks whose comment starts with `prefix`; none when the table is missing. */
async function findRules(runner: IptablesRunner, prefix: string): Promise<NftRule[] | undefined> {
  const r = await runner('nft', ['-j', 'list', 'chain', 'inet', NFT_MASQ_TABLE, CHECKS]);
  if (r.code === 127) return undefined;
  if (r.code !== 0) {
    if (/No such file or directory|does not exist/i.test(r.stderr)) return [];
    throw new CniError(
      ErrorCode.Internal,
      `ipMasq: nft list chain inet ${NFT_MASQ_TABLE} ${CHECKS} failed (exit ${r.code}): ${r.stderr.trim()}`,
    );
  }
  const doc = JSON.parse(r.stdout || '{"nftables":[]}') as { nftables?: Array<{ rule?: NftRule }> };
  return (doc.nftables ?? [])
    .map((o) => o.rule)
    .filter((x): x is NftRule => x !== undefined && (x.comment ?? '').startsWith(prefix));
}

async function apply(runner: IptablesRunner, script: string[]): Promise<void> {
  const r = await runner('nft', ['-f', '-'], `${script.join('\n')}\n`);
  if (r.code !== 0) {
    throw new CniError(
      ErrorCode.Internal,
      `ipMasq: nft -f failed (exit ${r.code}): ${r.stderr.trim()}`,
      'is nftables usable here (kernel nf_tables, root)?',
    );
  }
}

const quote = (s: string): string => `"${s.replace(/[\\"]/g, '')}"`;

/**
 * Masquerades traffic from each of `addresses` (CIDRs with host bits) to anything outside its
 * subnet, replacing the attachment's earlier rules in one transaction.
 */
export async function setupNftMasq(
  addresses: readonly string[],
  network: string,
  ifname: string,
  containerId: string,
  opts: NftMasqOptions = {},
): Promise<void> {
  const runner = opts.runner ?? spawnIptables;
  const stale = await findRules(runner, nftMasqTag(network, ifname, containerId));
  if (stale === undefined) throw nftMissing();
  const t = `inet ${NFT_MASQ_TABLE}`;
  const comment = quote(nftMasqComment(network, ifname, containerId));
  const script = [
    `add table ${t} { comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }`,
    `add chain ${t} ${CHECKS} { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority 100 ; }`,
    `flush chain ${t} postrouting`,
    `add rule ${t} postrouting ip daddr 224.0.0.0/4 return`,
    `add rule ${t} postrouting ip6 daddr ff00::/8 return`,
    `add rule ${t} postrouting goto ${CHECKS}`,
    ...stale.map((r) => `delete rule ${t} ${CHECKS} handle ${r.handle}`),
  ];
  for (const a of addresses) {
    const { subnet } = parseCIDR(a);
    const fam = ipFamily(a) === 6 ? 'ip6' : 'ip';
    const addr = a.split('/')[0] ?? a;
    script.push(
      `add rule ${t} ${CHECKS} ${fam} saddr ${addr} ${fam} daddr != ${formatSubnet(subnet)} masquerade comment ${comment}`,
    );
  }
  await apply(runner, script);
}

/** Removes the attachment's masquerade rules; nothing to do when nft or the table is missing. */
export async function teardownNftMasq(
  network: string,
  ifname: string,
  containerId: string,
  opts: NftMasqOptions = {},
): Promise<void> {
  const runner = opts.runner ?? spawnIptables;
  const rules = await findRules(runner, nftMasqTag(network, ifname, containerId));
  if (!rules?.length) return;
  await apply(
    runner,
    rules.map((r) => `delete rule inet ${NFT_MASQ_TABLE} ${CHECKS} handle ${r.handle}`),
  );
}

/** The refusal of `ipMasqBackend: "nftables"` where nft cannot run. */
export function nftMissing(): CniError {
  return new CniError(
    ErrorCode.InvalidNetworkConfig,
    'ipMasqBackend: "nftables" needs the nft command, which is not available on this node',
    'install nftables, or set "ipMasqBackend": "iptables" (or drop it)',
  );
}
