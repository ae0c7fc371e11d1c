// The cni-kit entry's wiring: pluginMain and runPlugin with ctx.ipam ready to use. The skel
// (src/plugin) stays below ipam and delegate and takes an IPAM factory; this is the one place that
// builds the default one: host-local and static in-process, any other type exec'd from CNI_PATH
// through cni-kit/delegate. Nothing here loads the runtime, Kubernetes or whereabouts code.
import { cniKitBinaryType, lookPath } from './delegate/find.js';
import { delegateAdd, delegateCheck, delegateDel, delegateGC, delegateStatus } from './delegate/invoke.js';
import { builtinIpam, createIpamFactory, type IpamExec, type IpamRegistry } from './ipam/registry.js';
import type { IpamFactory, PluginOptions, PluginSpec } from './plugin/context.js';
import { type HostedPlugin, PLUGIN_HOST_PROTOCOL } from './plugin/host.js';
import { pluginMain as skelMain } from './plugin/main.js';
import {
  DEFAULT_SUPPORTED_VERSIONS,
  type PluginInput,
  type PluginOutcome,
  runPlugin as skelRun,
  withOptions,
} from './plugin/run.js';

/** IPAM plugins run the way a delegating plugin runs any other (Go's ipam.ExecAdd & co.). */
export const delegateIpamExec: IpamExec = {
  async locate(type, path) {
    const binary = await lookPath(type, path);
    if (!binary) return undefined;
    const cniKitType = await cniKitBinaryType(binary);
    return cniKitType ? { binary, cniKitType } : { binary };
  },
  async run({ type, binary, command, stdin, env, path, signal }) {
    const opts = { env, path, signal, ...(binary ? { binary } : {}) };
    if (command === 'ADD') return delegateAdd(type, stdin, opts);
    const verbs = { CHECK: delegateCheck, DEL: delegateDel, GC: delegateGC, STATUS: delegateStatus };
    await verbs[command](type, stdin, opts);
    return undefined;
  },
};

/**
 * The `ipam` plugin option: allocators of `registry` in-process (default: host-local and static)
 * where exec would have found cni-kit's own binary or none, any other type exec'd from CNI_PATH.
 */
export function ipamFactory(registry: IpamRegistry = builtinIpam()): IpamFactory {
  return createIpamFactory({ registry, exec: delegateIpamExec });
}

/**
 * Runs a plugin as a CNI binary: env and stdin in, one JSON document on stdout, exit status 0 or 1.
 * `options` (or the spec) may carry `ipam: ipamFactory(registry)`; the default serves host-local
 * and static in-process.
 */
export function pluginMain<C>(spec: PluginSpec<C>, options: PluginOptions<C> = {}): void {
  const merged = withOptions(spec, options);
  skelMain({ ...merged, ipam: merged.ipam ?? ipamFactory() });
}

/** Runs one CNI call in-process (tests, a daemon): the pure core of pluginMain, with the default IPAM. */
export function runPlugin<C>(spec: PluginSpec<C>, call: PluginInput): Promise<PluginOutcome> {
  return skelRun({ ...spec, ipam: spec.ipam ?? ipamFactory() }, call);
}

/**
 * A plugin as the daemon (cni-kit/daemon `startDaemon`) serves it, with the default IPAM wired in as
 * pluginMain does: `startDaemon({ plugins: { mine: hostedPlugin(createMyPlugin(deps)) } })`.
 */
export function hostedPlugin<C>(spec: PluginSpec<C>, options: PluginOptions<C> = {}): HostedPlugin {
  const merged = withOptions(spec, options);
  const full = { ...merged, ipam: merged.ipam ?? ipamFactory() };
  return {
    protocol: PLUGIN_HOST_PROTOCOL,
    supportedVersions: full.supportedVersions ?? DEFAULT_SUPPORTED_VERSIONS,
    run: (input) => skelRun(full, input),
  };
}
