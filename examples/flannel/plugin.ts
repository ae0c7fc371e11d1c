// flannel: builds the delegate config (bridge + host-local by default) from flanneld's
// subnet.env, keeps it per container so DEL frees exactly what ADD took, and delegates.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type NetConf,
  type PluginContext,
  type PluginSpec,
} from 'cni-kit';
import { delegateAdd, delegateCheck, delegateDel } from 'cni-kit/delegate';
import { removeStaleTempFiles, writeFileAtomic } from 'cni-kit/fs';
import { formatSubnet, parseCIDR } from 'cni-kit/spec';
import { type FlannelEnv, readSubnetEnv } from './subnet-env.js';

/** The flannel plugin's own config fields, with the reference's defaults. */
export const flannelConfig = conf.object({
  subnetFile: conf.string().default('/run/flannel/subnet.env'),
  dataDir: conf.string().default('/var/lib/cni/flannel'),
  /** Overrides for the delegate (type, hairpinMode, isDefaultGateway, mtu, ipMasq ...). */
  delegate: conf.json().fix('use an object such as {"hairpinMode": true}').default({}),
});

/** The flannel plugin's config, parsed. */
export type FlannelConf = Infer<typeof flannelConfig>;

type Ctx = PluginContext<FlannelConf>;

const network = (cidr: string, field: string) => formatSubnet(parseCIDR(cidr, field).subnet);

/**
 * The delegate config the reference builds: `delegate` overrides first; then type bridge,
 * ipMasq the opposite of flanneld's (it masquerades already), flannel's MTU, isGateway for a
 * bridge, and a host-local IPAM over the node subnet with a route to the cluster network.
 */
export function buildDelegate(
  config: NetConf,
  flannel: FlannelConf,
  env: FlannelEnv,
): Record<string, unknown> {
  const d: Record<string, unknown> = {
    ...flannel.delegate,
    name: config.name,
    cniVersion: config.cniVersion,
  };
  d.type ??= 'bridge';
  if (d.ipMasq === undefined) d.ipMasq = !(env.ipMasq ?? false);
  if (d.mtu === undefined && env.mtu !== undefined) d.mtu = env.mtu;
  if (d.type === 'bridge' && d.isGateway === undefined) d.isGateway = true;
  const ipam: Record<string, unknown> = { ...(config.ipam ?? {}) };
  ipam.type ??= 'host-local';
  ipam.ranges = env.subnets.map((s) => [{ subnet: network(s, 'FLANNEL_SUBNET') }]);
  const routes = Array.isArray(ipam.routes) ? [...(ipam.routes as unknown[])] : [];
  for (const n of env.networks) routes.push({ dst: network(n, 'FLANNEL_NETWORK') });
  ipam.routes = routes;
  delete ipam.subnet;
  d.ipam = ipam;
  if (config.runtimeConfig !== undefined) d.runtimeConfig = config.runtimeConfig;
  return d;
}

/**
 * Refuses delegate fields flannel sets itself (`name`, `ipam`) and a non-string `type`, as the
 * reference does: they would otherwise be overwritten without a word.
 */
export function checkDelegate(delegate: Record<string, unknown>): void {
  if (delegate.type !== undefined && typeof delegate.type !== 'string') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `delegate.type: ${JSON.stringify(delegate.type)} is not a plugin name; use a string such as "bridge"`,
    );
  }
  for (const key of ['name', 'ipam'] as const) {
    if (delegate[key] !== undefined) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `delegate.${key}: flannel sets it itself and must not be given it; ${key === 'ipam' ? 'move the IPAM settings to the top-level "ipam" of the flannel config' : "remove it (the delegate runs under the network's name)"}`,
      );
    }
  }
}

/** The flannel meta plugin. */
export function flannelPlugin(): PluginSpec<FlannelConf> {
  const scratch = (ctx: Ctx) => join(ctx.conf.dataDir, ctx.containerId);
  const opts = (ctx: Ctx) => ({ env: ctx.env, signal: ctx.signal });

  async function stored(ctx: Ctx): Promise<Record<string, unknown> | undefined> {
    let text: string;
    try {
      text = await readFile(scratch(ctx), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      ctx.log(
        `flannel: ${scratch(ctx)} is unusable (${(e as Error).message}); rebuilding the delegate from ${ctx.conf.subnetFile}`,
      );
      return undefined;
    }
  }

  return {
    about: 'flannel: bridge + host-local over the node subnet flanneld leased (subnet.env)',
    config: flannelConfig,
    async add(ctx) {
      checkDelegate(ctx.conf.delegate as Record<string, unknown>);
      const env = await readSubnetEnv(ctx.conf.subnetFile);
      const d = buildDelegate(ctx.config, ctx.conf, env);
      // Kept before the delegate runs: if this process dies mid-ADD, DEL still knows what to free.
      await writeFileAtomic(scratch(ctx), JSON.stringify(d), { mode: 0o600, dirMode: 0o700 });
      try {
        return await delegateAdd(d.type as string, d, opts(ctx));
      } catch (err) {
        await rm(scratch(ctx), { force: true });
        throw err;
      }
    },
    async del(ctx) {
      let d = await stored(ctx);
      if (!d) {
        // No scratch file (ADD never ran, or the file was lost): the current subnet.env still
        // tells host-local which range to release from; without it there is nothing to do.
        try {
          d = buildDelegate(ctx.config, ctx.conf, await readSubnetEnv(ctx.conf.subnetFile));
        } catch {
          return;
        }
      }
      await delegateDel(d.type as string, d, opts(ctx));
      // Only after the delegate succeeded, so a failed DEL can be retried (the reference removes it first).
      await rm(scratch(ctx), { force: true });
      // A scratch write killed between its temp file and the rename leaves `.tmp.*` behind.
      removeStaleTempFiles(ctx.conf.dataDir);
    },
    async check(ctx) {
      const d = await stored(ctx);
      if (!d) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `flannel: no delegate config kept for container ${ctx.containerId} in ${ctx.conf.dataDir}`,
        );
      }
      await delegateCheck(d.type as string, { ...d, prevResult: ctx.config.prevResult }, opts(ctx));
    },
  };
}
