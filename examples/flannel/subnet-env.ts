// /run/flannel/subnet.env, written by flanneld: the node's pod subnet and the cluster network.
import { readFile } from 'node:fs/promises';
import { CniError, ErrorCode } from 'cni-kit';
import { describeSystemError, tryParseIP } from 'cni-kit/spec';

/** What flanneld tells the plugin about this node. */
export interface FlannelEnv {
  /** Cluster-wide pod networks (FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK). */
  networks: string[];
  /** This node's pod subnets (FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET), with the gateway's host bits. */
  subnets: string[];
  mtu?: number;
  /** True when flanneld masquerades itself, so the bridge must not (FLANNEL_IPMASQ). */
  ipMasq?: boolean;
}

function cidr(file: string, key: string, v: string): string {
  const [addr = '', len = ''] = v.split('/');
  const fam = tryParseIP(addr)?.family;
  if (!fam || !/^\d+$/.test(len) || Number(len) > (fam === 4 ? 32 : 128)) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${file}: ${key}=${v} is not a CIDR; flanneld writes e.g. ${key}=10.244.1.1/24`,
    );
  }
  return v;
}

/** Parses subnet.env text; unknown keys are ignored, missing network or subnet is an error. */
export function parseSubnetEnv(text: string, file = 'subnet.env'): FlannelEnv {
  const kv = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const i = line.indexOf('=');
    if (i <= 0) continue;
    kv.set(
      line.slice(0, i).trim(),
      line
        .slice(i + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1'),
    );
  }
  const env: FlannelEnv = { networks: [], subnets: [] };
  for (const [net, sub] of [
    ['FLANNEL_NETWORK', 'FLANNEL_SUBNET'],
    ['FLANNEL_IPV6_NETWORK', 'FLANNEL_IPV6_SUBNET'],
  ] as const) {
    const n = kv.get(net);
    const s = kv.get(sub);
    if (n) env.networks.push(cidr(file, net, n));
    if (s) env.subnets.push(cidr(file, sub, s));
  }
  if (env.networks.length === 0 || env.subnets.length === 0) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${file}: needs FLANNEL_NETWORK and FLANNEL_SUBNET (or their IPv6 forms); is flanneld running on this node?`,
    );
  }
  const mtu = kv.get('FLANNEL_MTU');
  if (mtu !== undefined) {
    if (!/^\d+$/.test(mtu))
      throw new CniError(ErrorCode.InvalidNetworkConfig, `${file}: FLANNEL_MTU=${mtu} is not a number`);
    env.mtu = Number(mtu);
  }
  const masq = kv.get('FLANNEL_IPMASQ');
  if (masq !== undefined) env.ipMasq = masq.toLowerCase() === 'true';
  return env;
}

/** Reads and parses the file flanneld writes. */
export async function readSubnetEnv(file: string): Promise<FlannelEnv> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CniError(
      ErrorCode.TryAgainLater,
      `${describeSystemError(e) ?? `cannot read ${file}: ${(e as Error).message}`}; flanneld writes it once it has a lease, check that it runs on this node`,
    );
  }
  return parseSubnetEnv(text, file);
}
