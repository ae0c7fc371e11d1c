import type { PluginInput, PluginOutcome } from './run.js';

// A plugin bundle is a program that calls pluginMain at its top level. A long-lived host (the
// cni-kit daemon) loads such bundles into its own process: before loading one it sets this global,
// and pluginMain then hands the plugin over instead of reading stdin and exiting. The key is a
// registered symbol and the entry a plain object, so a bundle carrying its own copy of the SDK
// meets a host built from another copy (or another version speaking the same protocol).

/** The global under which a host offers to take plugins (`Symbol.for`, shared by every SDK copy). */
export const PLUGIN_HOST_KEY: unique symbol = Symbol.for('cni-kit.plugin-host') as never;

/** The version of the hand-over below; a host refuses entries of a protocol it does not know. */
export const PLUGIN_HOST_PROTOCOL = 1;

/** One plugin as a host serves it: a call is a function of its input, as in runPlugin. */
export interface HostedPlugin {
  protocol: typeof PLUGIN_HOST_PROTOCOL;
  /** The versions its VERSION call reports. */
  supportedVersions: readonly string[];
  /** Runs one call; never throws (errors are in the outcome), like runPlugin. */
  run(input: PluginInput): Promise<PluginOutcome>;
}

/** What a host sets under PLUGIN_HOST_KEY while it loads a bundle. */
export interface PluginHost {
  register(plugin: HostedPlugin): void;
}

/** The host that is loading this code, if any. */
export function currentPluginHost(): PluginHost | undefined {
  const host = (globalThis as Record<symbol, unknown>)[PLUGIN_HOST_KEY];
  return host && typeof (host as PluginHost).register === 'function' ? (host as PluginHost) : undefined;
}

/**
 * Delegates a host can run in its own process. A meta plugin served by the daemon execs its
 * delegates from CNI_PATH; when the binary found is a shim that would forward the call to this
 * very daemon, running the plugin in-process gives the same result without the exec, the socket
 * round trip and the HTTP parsing. Hosts add a lookup here; src/delegate asks before it spawns.
 */
export const LOCAL_PLUGINS_KEY: unique symbol = Symbol.for('cni-kit.local-plugins') as never;

/** A plugin call run in-process, as HostedPlugin.run. */
export type LocalRun = HostedPlugin['run'];

/** Given the binary exec would run and its environment: the in-process run, if a host has one. */
export type LocalLookup = (path: string, env: Readonly<Record<string, string>>) => LocalRun | undefined;

const lookupSlot = () => globalThis as Record<symbol, Set<LocalLookup> | undefined>;

/** The lookups hosts of this process registered (none in a plugin process). */
export function localPluginLookups(): ReadonlySet<LocalLookup> {
  return lookupSlot()[LOCAL_PLUGINS_KEY] ?? new Set();
}

/** Adds a host's lookup (a Set under a registered symbol, shared by SDK copies); returns its removal. */
export function addLocalPluginLookup(lookup: LocalLookup): () => void {
  const slot = lookupSlot();
  slot[LOCAL_PLUGINS_KEY] ??= new Set();
  const set = slot[LOCAL_PLUGINS_KEY];
  set.add(lookup);
  return () => set.delete(lookup);
}
