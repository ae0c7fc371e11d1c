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
