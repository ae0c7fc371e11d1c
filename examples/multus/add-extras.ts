// The Kubernetes events multus posts about a pod while attaching it (AddedInterface), and the
// auxiliary chain check (auxiliaryCNIChainName): the parts of ADD that talk to the pod's owner or
// look beside the cluster network's config.
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type AnyResult, CniError, ErrorCode, toCurrentResult } from 'cni-kit';
import { type KubeClient, type Pod, podEvent } from 'cni-kit/k8s';
import { formatIP, tryParseIP } from 'cni-kit/spec';
import type { MultusConf } from './config.js';
import type { Delegate } from './delegates.js';

/** An IP as Go prints a net.IPNet: the address in Go's form and the prefix length. */
export function goCidr(address: string): string {
  const [ip = '', len] = address.split('/');
  const parsed = tryParseIP(ip);
  return `${parsed ? formatIP(parsed) : ip}${len !== undefined ? `/${len}` : ''}`;
}

/**
 * multus's `AddedInterface` event for one attached network (Normal, "Add <ifname> [<ips>] from
 * <network>"), posted in the background; only for a result that lists interfaces or IPs.
 */
export function addedInterface(
  containerId: string,
  kube: KubeClient,
  pod: Pod,
  d: Delegate,
  raw: AnyResult,
): Promise<void> {
  const r = toCurrentResult(raw);
  const listed = raw as { interfaces?: unknown; ips?: unknown; ip4?: unknown; ip6?: unknown };
  if (listed.interfaces === undefined && listed.ips === undefined && !listed.ip4 && !listed.ip6) {
    return Promise.resolve();
  }
  const ips = (r.ips ?? []).map((ip) => goCidr(ip.address));
  const message = `Add ${d.ifname} [${ips.join(' ')}]${d.name ? ` from ${d.name}` : ''}`;
  const ev = podEvent(pod, 'Normal', 'AddedInterface', message, 'multus');
  return kube.createEvent(ev.metadata.namespace, ev).catch((err) => {
    throw new Error(`AddedInterface for ${containerId} ${d.ifname}: ${(err as Error).message}`);
  });
}

/**
 * multus's `auxiliaryCNIChainName`: a chain run after every other network, made of multus's
 * `passthru` plugin plus the plugin configs in `<dir of clusterNetwork>/<name>/`, added only when
 * that directory holds any. cni-kit ships no passthru plugin, so such a chain is refused with a
 * message saying what to do; with an empty or missing directory nothing runs, as in multus.
 */
export async function checkAuxiliaryChain(c: MultusConf): Promise<void> {
  const name = c.auxiliaryCNIChainName;
  if (!name) return;
  if (!c.clusterNetwork?.includes('/')) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `auxiliaryCNIChainName: auxiliary chain used but clusterNetwork must be a path, and it is not a path: ${JSON.stringify(c.clusterNetwork ?? '')}; set clusterNetwork to the cluster network's config file or remove auxiliaryCNIChainName`,
    );
  }
  const dir = join(dirname(c.clusterNetwork), name);
  let files: string[] = [];
  try {
    files = (await readdir(dir)).filter((f) => /\.(conf|conflist|json)$/.test(f));
  } catch {
    return;
  }
  if (files.length > 0) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `auxiliaryCNIChainName ${JSON.stringify(name)}: ${dir} holds ${files.join(', ')}, but cni-kit's multus cannot run an auxiliary chain (it needs multus's passthru plugin and subdirectory chain loading); chain these plugins in the cluster network's conflist instead, or remove auxiliaryCNIChainName`,
    );
  }
}
