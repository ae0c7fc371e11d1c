import type { CniArgs } from '../spec/args.js';
import type { Env, HandlerCommand } from '../spec/call.js';
import type { Attachment, NetConf } from '../spec/config.js';
import type { AddResult, Result } from '../spec/result/types.js';
import type { Schema } from '../spec/schema.js';

/** The facts of one call, as the skel read them: what handlers and the IPAM factory see. */
export interface CallInfo {
  command: HandlerCommand;
  /**
   * The request config as the runtime sent it (unknown keys kept, nothing added); `prevResult` is
   * converted to the current result type. The plugin's typed fields are in `ctx.conf`.
   */
  config: NetConf;
  /** The stdin bytes exactly as received: what a delegated or exec'd IPAM plugin gets. */
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
  env: Env;
  /** Aborted when the plugin is asked to stop (SIGTERM): roll back and return. */
  signal: AbortSignal;
  /** GC only: the attachments that are still valid. */
  validAttachments?: Attachment[];
  /** Writes one log line to stderr (never stdout). */
  log(message: string): void;
}

/**
 * IPAM for the current call (`ctx.ipam`): the config's `ipam.type`, run in-process when it is a
 * built-in allocator and exec'ing it would have found cni-kit's own binary (or none), else exec'd
 * from CNI_PATH with the runtime's stdin byte for byte. Each verb uses the call's config and env.
 */
export interface IpamClient {
  /** `ipam.type` of the config; undefined when the config has no `ipam` block. */
  readonly type: string | undefined;
  /** IPAM ADD: the addresses for this attachment (current result type). */
  add(): Promise<Result>;
  /** IPAM CHECK against the config's prevResult. */
  check(): Promise<void>;
  /** IPAM DEL; missing state is success. */
  del(): Promise<void>;
  /** IPAM GC: frees what the call's valid attachments do not hold. */
  gc(): Promise<void>;
  /** IPAM STATUS: throws CniError 50/51 when ADD cannot succeed now. */
  status(): Promise<void>;
}

/** Builds `ctx.ipam` for one call; injected through the plugin options (see `PluginOptions.ipam`). */
export type IpamFactory = (call: CallInfo) => IpamClient;

/** What every handler receives: the validated call plus the plugin's typed config and IPAM. */
export interface PluginContext<C = unknown> extends CallInfo {
  /** The plugin's own fields, parsed by its `config` schema (the wire config itself without one). */
  conf: C;
  /** IPAM for this call (see IpamClient). */
  ipam: IpamClient;
}

/** GC's context: the attachments that are still valid; everything else may be collected. */
export interface GcContext<C = unknown> extends PluginContext<C> {
  validAttachments: Attachment[];
}

/** The callbacks of a plugin. Only `add` is required; see docs/getting-started.md for the others. */
export interface PluginHandlers<C = unknown> {
  /**
   * Creates the attachment and returns its result. `cniVersion` may be left out: the SDK stamps the
   * current version, validates the result and converts it to the config's version.
   */
  add(ctx: PluginContext<C>): Promise<AddResult> | AddResult;
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
  /** Spec versions the plugin accepts; default: every version, 0.1.0 through 1.1.0. */
  supportedVersions?: readonly string[] | undefined;
  /** One line printed to stderr when the binary runs without CNI_COMMAND. */
  about?: string | undefined;
  /** The plugin's own config fields (`conf.object({...})`); parsed into `ctx.conf`, errors are code 7. */
  config?: Schema<C> | undefined;
  /** Builds `ctx.ipam`; the `cni-kit` entry's pluginMain supplies host-local and static in-process. */
  ipam?: IpamFactory | undefined;
}

/** Everything pluginMain needs in one object: handlers plus options. */
export type PluginSpec<C = unknown> = PluginHandlers<C> & PluginOptions<C>;
