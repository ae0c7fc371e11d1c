import type { CniArgs } from '../spec/args.js';
import type { Attachment, NetConf } from '../spec/config.js';
import type { Result } from '../spec/result/types.js';

/** A CNI command a plugin serves (VERSION is answered by the SDK itself). */
export type PluginCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';

/** What every handler receives: the validated call, one current-version config type. */
export interface PluginContext<C = unknown> {
  command: PluginCommand;
  /** The request config; `prevResult` is already converted to the current result type. */
  config: NetConf & C;
  /** The stdin bytes exactly as received, for delegating the full config (spec §4). */
  stdin: string;
  /** CNI_CONTAINERID ("" for GC and STATUS). */
  containerId: string;
  /** CNI_NETNS ("" when not given, e.g. DEL after the netns is gone, GC, STATUS). */
  netns: string;
  /** CNI_IFNAME ("" for GC and STATUS). */
  ifname: string;
  /** CNI_ARGS parsed into pairs. */
  args: CniArgs;
  /** CNI_PATH split into directories. */
  path: string[];
  /** The whole environment of the call (read-only); delegates inherit it. */
  env: Readonly<Record<string, string | undefined>>;
  /** Aborted when the plugin is asked to stop (SIGTERM): roll back and return. */
  signal: AbortSignal;
  /** Writes one log line to stderr (never stdout). */
  log(message: string): void;
}

/** GC's context: the attachments that are still valid; everything else may be collected. */
export interface GcContext<C = unknown> extends PluginContext<C> {
  validAttachments: Attachment[];
}

/** The callbacks of a plugin. Only `add` is required; see docs/getting-started.md for the others. */
export interface PluginHandlers<C = unknown> {
  /** Creates the attachment and returns its result (converted by the SDK to the config's version). */
  add(ctx: PluginContext<C>): Promise<Result> | Result;
  /** Removes the attachment; must succeed when state is already gone. Missing: DEL succeeds. */
  del?(ctx: PluginContext<C>): Promise<void> | void;
  /** Verifies the attachment against `ctx.config.prevResult`. Missing: CHECK succeeds. */
  check?(ctx: PluginContext<C>): Promise<void> | void;
  /** Collects resources of attachments not in `validAttachments`. Missing: GC succeeds. */
  gc?(ctx: GcContext<C>): Promise<void> | void;
  /** Throws CniError 50/51 when the plugin cannot serve ADD. Missing: STATUS reports ready. */
  status?(ctx: PluginContext<C>): Promise<void> | void;
}

/** Options that describe a plugin. */
export interface PluginOptions<C = unknown> {
  /** Spec versions the plugin accepts; default: 0.3.0 through 1.1.0. */
  supportedVersions?: readonly string[];
  /** One line printed to stderr when the binary runs without CNI_COMMAND. */
  about?: string;
  /** Validates and types plugin-specific config fields; a thrown non-CniError becomes code 7. */
  parseConfig?: (config: NetConf) => C;
}

/** Everything pluginMain needs in one object: handlers plus options. */
export type PluginSpec<C = unknown> = PluginHandlers<C> & PluginOptions<C>;
