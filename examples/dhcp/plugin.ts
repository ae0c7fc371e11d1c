// dhcp IPAM: the plugin half. Every call goes to the DHCP daemon (`cni-kit dhcp-daemon`) over its
// Unix socket; the daemon acquires the lease in the container's netns and keeps it renewed. ADD
// returns the lease's address, gateway and routes; DEL releases it; CHECK asks the daemon whether
// it still holds the lease; GC releases this network's leases of attachments that are gone;
// STATUS says whether the daemon answers.
import { resolve } from 'node:path';
import { CniError, ErrorCode, type PluginContext, type PluginSpec } from 'cni-kit';
import {
  callDhcpDaemon,
  DEFAULT_DHCP_SOCKET,
  type DhcpCall,
  type DhcpOp,
  getDhcpDaemon,
  isGoRpcDaemon,
  parseDhcpConfig,
  START_HINT,
} from 'cni-kit/ipam';

/** What the plugin needs from the outside world: the daemon call (tests pass a fake). */
export interface DhcpPluginDeps {
  call?: typeof callDhcpDaemon;
}

function socketOf(ctx: PluginContext): string {
  return parseDhcpConfig(ctx.config).daemonSocketPath ?? DEFAULT_DHCP_SOCKET;
}

function request(ctx: PluginContext): DhcpCall {
  return {
    containerId: ctx.containerId,
    // The daemon runs elsewhere: a relative netns path means nothing to it.
    netns: ctx.netns ? resolve(ctx.netns) : '',
    ifname: ctx.ifname,
    args: ctx.env.CNI_ARGS ?? '',
    config: ctx.stdin,
    ...(ctx.config.prevResult ? { prevResult: ctx.config.prevResult } : {}),
    ...(ctx.validAttachments ? { validAttachments: ctx.validAttachments } : {}),
  };
}

/** Builds the dhcp IPAM plugin. */
export function createDhcpPlugin(deps: DhcpPluginDeps = {}): PluginSpec {
  const call = deps.call ?? callDhcpDaemon;
  const run = async (ctx: PluginContext, op: DhcpOp) => call(socketOf(ctx), op, request(ctx), ctx.signal);
  return {
    about: 'dhcp IPAM (cni-kit): addresses from a DHCP server, through the cni-kit dhcp-daemon',
    async add(ctx) {
      const { result } = await run(ctx, 'allocate');
      if (!result) throw new CniError(ErrorCode.Internal, 'dhcp: the daemon returned no result for ADD');
      return result;
    },
    async check(ctx) {
      await run(ctx, 'check');
    },
    async del(ctx) {
      try {
        socketOf(ctx);
      } catch (e) {
        // ADD cannot have succeeded with this config, so no lease can be held for it.
        if (e instanceof CniError && e.code === ErrorCode.InvalidNetworkConfig)
          return ctx.log(`dhcp: ${e.message}; nothing to release`);
        throw e;
      }
      try {
        await run(ctx, 'release');
      } catch (e) {
        // No daemon means no lease is kept any more: nothing is left to release, so DEL succeeds.
        if (!(e instanceof CniError) || e.code !== ErrorCode.TryAgainLater) throw e;
        ctx.log(`dhcp: ${e.message}; nothing to release`);
      }
    },
    async gc(ctx) {
      await run(ctx, 'gc');
    },
    async status(ctx) {
      const socket = socketOf(ctx);
      const r = await getDhcpDaemon(socket, '/healthz');
      if (r.status === 200) return;
      const go = r.status !== 0 && (await isGoRpcDaemon(socket));
      throw new CniError(
        ErrorCode.PluginNotAvailable,
        go
          ? `dhcp: the daemon at ${socket} is the Go dhcp daemon, which cni-kit's dhcp plugin cannot talk to`
          : `dhcp: no cni-kit DHCP daemon answers at ${socket}`,
        START_HINT,
      );
    },
  };
}
