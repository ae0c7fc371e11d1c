// MAC spoof check for a bridge port: frames entering the bridge from the container's host veth must
// carry the container's MAC. One nftables bridge-family table holds a prerouting hook that jumps to
// a per-attachment chain; DEL finds both by a name derived from (containerID, ifname), so it works
// without knowing the veth or the MAC, and a retried ADD replaces instead of duplicating.
import { CniError, ErrorCode } from '../spec/errors.js';
import { type IptablesRunner, spawnIptables } from './ipmasq.js';

// node:crypto costs ~2 ms to load: only calls that hash or draw a random name pay for it.
const crypto = () => process.getBuiltinModule('node:crypto');

/** The nftables table (bridge family) the spoof check lives in. */
export const SPOOFCHK_TABLE = 'cni_kit_macspoofchk';

/** The per-attachment chain name: "c-" + 24 hex digits of sha256("<containerID>/<ifname>"). */
export function spoofChainName(containerId: string, ifname: string): string {
  return `c-${crypto().createHash('sha256').update(`${containerId}/${ifname}`).digest('hex').slice(0, 24)}`;
}

/** Handles of prerouting rules jumping to `chain`, and whether the chain exists, from `nft -a list table`. */
function scan(listing: string, chain: string): { handles: number[]; exists: boolean } {
  const handles: number[] = [];
  let exists = false;
  for (const line of listing.split('\n')) {
    if (new RegExp(`^\\s*chain ${chain} \\{`).test(line)) exists = true;
    const m = new RegExp(`jump ${chain}\\b.*# handle (\\d+)`).exec(line);
    if (m?.[1]) handles.push(Number(m[1]));
  }
  return { handles, exists };
}

async function listTable(runner: IptablesRunner): Promise<string | undefined> {
  const r = await runner('nft', ['-a', 'list', 'table', 'bridge', SPOOFCHK_TABLE]);
  return r.code === 0 ? r.stdout : undefined;
}

async function apply(runner: IptablesRunner, script: string[]): Promise<void> {
  const r = await runner('nft', ['-f', '-'], `${script.join('\n')}\n`);
  if (r.code !== 0) {
    throw new CniError(
      ErrorCode.Internal,
      `macspoofchk: nft failed (exit ${r.code}): ${r.stderr.trim()}`,
      'is nftables installed and does the kernel have nf_tables for the bridge family?',
    );
  }
}

/** Options for the spoof check (the runner seam lets unit tests avoid touching the host). */
export interface SpoofCheckOptions {
  runner?: IptablesRunner | undefined;
}

/** Drops frames from `hostVeth` whose source MAC is not `mac`. Idempotent per (containerId, ifname). */
export async function setupMacSpoofCheck(
  hostVeth: string,
  mac: string,
  containerId: string,
  ifname: string,
  opts: SpoofCheckOptions = {},
): Promise<void> {
  const runner = opts.runner ?? spawnIptables;
  const chain = spoofChainName(containerId, ifname);
  const t = `bridge ${SPOOFCHK_TABLE}`;
  const old = scan((await listTable(runner)) ?? '', chain);
  await apply(runner, [
    `add table ${t}`,
    `add chain ${t} prerouting { type filter hook prerouting priority -300; policy accept; }`,
    `add chain ${t} ${chain}`,
    `flush chain ${t} ${chain}`,
    ...old.handles.map((h) => `delete rule ${t} prerouting handle ${h}`),
    `add rule ${t} ${chain} ether saddr ${mac} return`,
    `add rule ${t} ${chain} drop`,
    `add rule ${t} prerouting iifname "${hostVeth}" jump ${chain} comment "${containerId}/${ifname}"`,
  ]);
}

/** Removes the spoof check of (containerId, ifname); nothing there is success. */
export async function teardownMacSpoofCheck(
  containerId: string,
  ifname: string,
  opts: SpoofCheckOptions = {},
): Promise<void> {
  const runner = opts.runner ?? spawnIptables;
  const listing = await listTable(runner);
  if (listing === undefined) return;
  const chain = spoofChainName(containerId, ifname);
  const { handles, exists } = scan(listing, chain);
  if (!exists && handles.length === 0) return;
  const t = `bridge ${SPOOFCHK_TABLE}`;
  await apply(runner, [
    ...handles.map((h) => `delete rule ${t} prerouting handle ${h}`),
    ...(exists ? [`delete chain ${t} ${chain}`] : []),
  ]);
}
