// The libcni equivalent: run a network configuration (list) against a container. One class, one
// method per verb; the chain rules (order, injection, cache) follow libcni, see docs/runtime.md.
// Over the 400-line guideline on purpose: the verbs share private helpers that would otherwise
// have to be exported.

import { type ExecOptions, execPlugin, execPluginResult, PluginExecError } from '../delegate/exec.js';
import { findInPath } from '../delegate/find.js';
import { getVersionInfo, type PluginVersionInfo } from '../delegate/version-info.js';
import type { SyncBatch } from '../fs/index.js';
import type { CniArgs } from '../spec/args.js';
import { buildCniEnv, type Command, type Env } from '../spec/call.js';
import type { Attachment, NetConf, NetConfList, PluginConf } from '../spec/config.js';
import { attachmentsJson, confListFromConf, parseNetConf, parseNetConfList } from '../spec/config.js';
import { CniError, describeSystemError, ErrorCode } from '../spec/errors.js';
import { validateContainerId, validateIfName, validateNetworkName } from '../spec/identifiers.js';
import { convertResult, parseResult, toCurrentResult } from '../spec/result/convert.js';
import type { AnyResult, Result } from '../spec/result/types.js';
import { type CapabilityArgs, injectRuntimeConfig } from '../spec/runtime-config.js';
import { versionAtLeast } from '../spec/version.js';
import { type AttachmentKey, type CachedAttachment, DEFAULT_CACHE_DIR, ResultCache } from './cache.js';

/** What a runtime knows about one attachment (libcni's RuntimeConf). */
export interface RuntimeConf {
  containerId: string;
  /** Path of the network namespace; may be empty on DEL when it is gone. */
  netns?: string | undefined;
  ifname: string;
  /** CNI_ARGS pairs, e.g. [["K8S_POD_NAME","web"]]. */
  args?: CniArgs | undefined;
  /** Capability values; each plugin receives those it declares in `capabilities`. */
  capabilityArgs?: CapabilityArgs | undefined;
}

/** Construction options of CniRuntime. */
export interface CniRuntimeOptions {
  /** Directories searched for plugin binaries, in order (CNI_PATH). */
  pluginDirs: string[];
  /** Cache root shared with libcni; default /var/lib/cni (files under `results/`). */
  cacheDir?: string | undefined;
  /** Per plugin call; default none (pass an AbortSignal per call or set this). */
  timeoutMs?: number | undefined;
  killGraceMs?: number | undefined;
  /** Base environment of plugins; default process.env. CNI_* variables are always overridden. */
  env?: Env | undefined;
  /** Where plugin stderr is copied; default process.stderr, null drops it. */
  stderr?: NodeJS.WritableStream | null | undefined;
  busyRetries?: number | undefined;
  busyRetryDelayMs?: number | undefined;
  /** Receives non-fatal problems, e.g. a corrupt cache file skipped on DEL; default: a line on stderr. */
  warn?: ((message: string) => void) | undefined;
  /**
   * Find and run plugins inside this root (multus thick mode's `chrootDir`): pluginDirs are paths
   * inside it, and each plugin is exec'd chrooted there (see ExecOptions.chroot).
   */
  chroot?: string | undefined;
  /**
   * Result cache writes join this batch: in place at once, durable when its owner flushes it
   * (a meta plugin running several networks flushes once, before it answers) instead of each
   * before its ADD returns. Default: every write is durable before it returns.
   */
  syncBatch?: SyncBatch | undefined;
}

/** Per-call options. */
export interface CallOptions {
  signal?: AbortSignal | undefined;
}

/** A network configuration list: parsed, or the JSON text/bytes of a .conflist. */
export type NetworkListInput = NetConfList | string | Uint8Array;
/** A single-plugin network configuration: parsed, or the JSON text/bytes of a .conf. */
export type NetworkInput = NetConf | string | Uint8Array;

/** GC arguments: the attachments still in use; everything else of the network is collected. */
export interface GCArgs {
  validAttachments: Attachment[];
}

/** Several errors of one operation (GC and DEL continue on error); `code` is the first error's. */
export class CniAggregateError extends CniError {
  /** Every error, in the order they happened. */
  readonly errors: CniError[];
  constructor(message: string, errors: CniError[]) {
    super(errors[0]?.code ?? ErrorCode.Internal, `${message}: ${errors.map((e) => e.message).join('; ')}`);
    this.errors = errors;
  }
}

interface Net {
  name: string;
  cniVersion: string;
  disableCheck: boolean;
  disableGC: boolean;
  plugins: PluginConf[];
  /** Config text cached with the result, as libcni keeps `list.Bytes`. */
  text: string;
  /** Single-plugin config: libcni neither wraps its errors nor honours disableCheck. */
  single: boolean;
}

const dec = new TextDecoder();

function toNetFromList(input: NetworkListInput): Net {
  const list = typeof input === 'string' || input instanceof Uint8Array ? parseNetConfList(input) : input;
  const text =
    typeof input === 'string'
      ? input
      : input instanceof Uint8Array
        ? dec.decode(input)
        : JSON.stringify(list.raw);
  return {
    name: list.name,
    cniVersion: list.cniVersion,
    disableCheck: list.disableCheck,
    disableGC: list.disableGC,
    plugins: list.plugins,
    text,
    single: false,
  };
}

function toNetFromConf(input: NetworkInput): Net {
  const conf = typeof input === 'string' || input instanceof Uint8Array ? parseNetConf(input) : input;
  const list = confListFromConf(conf);
  const text =
    typeof input === 'string'
      ? input
      : input instanceof Uint8Array
        ? dec.decode(input)
        : JSON.stringify(conf);
  return { ...toNetFromList(list), text, single: true, cniVersion: conf.cniVersion ?? '' };
}

/** Runs CNI network configurations against containers: ADD/CHECK/DEL/GC/STATUS with libcni's rules and cache. */
export class CniRuntime {
  readonly pluginDirs: string[];
  private readonly cache: ResultCache;
  private readonly opts: CniRuntimeOptions;

  constructor(opts: CniRuntimeOptions) {
    this.opts = opts;
    this.pluginDirs = [...opts.pluginDirs];
    this.cache = new ResultCache(opts.cacheDir ?? DEFAULT_CACHE_DIR, opts.syncBatch);
  }

  /** Runs ADD through the list in order and caches the final result; returns it in the list's version. */
  async addNetworkList(list: NetworkListInput, rt: RuntimeConf, call: CallOptions = {}): Promise<AnyResult> {
    return this.add(toNetFromList(list), rt, call);
  }

  /** Runs CHECK through the list (cniVersion >= 0.4.0) against the cached result, unless disableCheck. */
  async checkNetworkList(list: NetworkListInput, rt: RuntimeConf, call: CallOptions = {}): Promise<void> {
    return this.check(toNetFromList(list), rt, call);
  }

  /**
   * Runs DEL through the list in reverse with the cached result as prevResult, then drops the
   * cache. Every plugin's DEL runs even when one fails or is missing; a single failure is thrown
   * as is, several as a CniAggregateError (code of the first), and the cache is then kept.
   */
  async delNetworkList(list: NetworkListInput, rt: RuntimeConf, call: CallOptions = {}): Promise<void> {
    return this.del(toNetFromList(list), rt, call);
  }

  /** ADD for a single-plugin config. */
  async addNetwork(conf: NetworkInput, rt: RuntimeConf, call: CallOptions = {}): Promise<AnyResult> {
    return this.add(toNetFromConf(conf), rt, call);
  }

  /** CHECK for a single-plugin config. */
  async checkNetwork(conf: NetworkInput, rt: RuntimeConf, call: CallOptions = {}): Promise<void> {
    return this.check(toNetFromConf(conf), rt, call);
  }

  /** DEL for a single-plugin config. */
  async delNetwork(conf: NetworkInput, rt: RuntimeConf, call: CallOptions = {}): Promise<void> {
    return this.del(toNetFromConf(conf), rt, call);
  }

  /**
   * Garbage-collects a network: DELs every cached attachment of it that is not in
   * `validAttachments`, then (cniVersion >= 1.1.0) sends GC to each plugin. Continues on error
   * and throws a CniAggregateError at the end. `validAttachments` is required: libcni's nil
   * argument deletes every attachment, which is never what a caller means.
   */
  async gcNetworkList(list: NetworkListInput, args: GCArgs, call: CallOptions = {}): Promise<void> {
    const net = toNetFromList(list);
    if (net.disableGC) return;
    const valid = new Set(args.validAttachments.map((a) => `${a.containerId}\u0000${a.ifname}`));
    const errors: CniError[] = [];
    let cached: CachedAttachment[] = [];
    try {
      cached = await this.cache.list();
    } catch (err) {
      this.warn(
        `GC of network "${net.name}": cannot list cached attachments in ${this.cache.dir}: ${String(err)}`,
      );
    }
    for (const a of cached) {
      if (a.networkName !== net.name || valid.has(`${a.containerId}\u0000${a.ifname}`)) continue;
      const rt: RuntimeConf = { containerId: a.containerId, ifname: a.ifname };
      if (a.netns) rt.netns = a.netns;
      if (a.cniArgs) rt.args = a.cniArgs;
      if (a.capabilityArgs) rt.capabilityArgs = a.capabilityArgs;
      try {
        await this.del(net, rt, call);
      } catch (err) {
        const e = CniError.from(err);
        errors.push(
          new CniError(
            e.code,
            `failed to delete stale attachment ${a.containerId} ${a.ifname}: ${e.message}`,
            e.details,
            {
              cause: err,
            },
          ),
        );
      }
    }
    if (versionAtLeast(net.cniVersion, '1.1.0')) {
      for (const plugin of net.plugins) {
        const conf = {
          ...plugin,
          name: net.name,
          cniVersion: net.cniVersion,
          'cni.dev/valid-attachments': attachmentsJson(args.validAttachments),
          'cni.dev/attachments': attachmentsJson(args.validAttachments),
        };
        try {
          await this.execNoResult(net, plugin, 'GC', conf, undefined, call);
        } catch (err) {
          errors.push(CniError.from(err));
        }
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new CniAggregateError(`GC of network "${net.name}" failed`, errors);
  }

  /** Sends STATUS to each plugin (cniVersion >= 1.1.0); the first error is thrown with its code (50/51). */
  async getStatusNetworkList(list: NetworkListInput, call: CallOptions = {}): Promise<void> {
    const net = toNetFromList(list);
    if (!versionAtLeast(net.cniVersion, '1.1.0')) return;
    for (const plugin of net.plugins) {
      const conf = { ...plugin, name: net.name, cniVersion: net.cniVersion };
      await this.execNoResult(net, plugin, 'STATUS', conf, undefined, call);
    }
  }

  /** The cached result of an attachment in the list's version, or undefined when there is none. */
  async getNetworkListCachedResult(list: NetworkListInput, rt: RuntimeConf): Promise<AnyResult | undefined> {
    const net = toNetFromList(list);
    return this.cachedResult(net, rt, 'strict');
  }

  /** The config and runtime values an attachment was added with, or undefined when not cached. */
  async getNetworkListCachedConfig(
    list: NetworkListInput,
    rt: RuntimeConf,
  ): Promise<{ config: string; rt: RuntimeConf } | undefined> {
    const net = toNetFromList(list);
    const r = await this.cache.read(this.key(net, rt));
    if (r.status === 'missing') return undefined;
    if (r.status === 'corrupt') throw corruptError(r.path, r.reason);
    if (!r.record) return undefined;
    const out: RuntimeConf = { ...rt };
    if (r.record.cniArgs) out.args = r.record.cniArgs;
    if (r.record.capabilityArgs) out.capabilityArgs = r.record.capabilityArgs;
    return { config: r.record.config, rt: out };
  }

  /** The cached result of a single-plugin config's attachment, or undefined. */
  async getNetworkCachedResult(conf: NetworkInput, rt: RuntimeConf): Promise<AnyResult | undefined> {
    return this.cachedResult(toNetFromConf(conf), rt, 'strict');
  }

  /**
   * Rewrites the cached result of an attachment (a meta plugin that changed the netns after ADD,
   * e.g. moved a default route): `update` gets the result as the current type and returns the new
   * one, which is stored in the record's own version, atomically. Throws when nothing is cached.
   */
  async updateCachedResult(
    input: { list: NetworkListInput } | { conf: NetworkInput },
    rt: RuntimeConf,
    update: (result: Result) => Result,
  ): Promise<void> {
    const net = 'list' in input ? toNetFromList(input.list) : toNetFromConf(input.conf);
    const key = this.key(net, rt);
    const r = await this.cache.read(key);
    if (r.status !== 'ok' || !r.record?.result) {
      throw new CniError(
        ErrorCode.IOFailure,
        `cached result of network "${net.name}" (${this.cache.path(key)}) is ${r.status === 'corrupt' ? `unusable (${r.reason})` : 'missing'}; run ADD first`,
      );
    }
    const prev = parseResult(r.record.result, net.cniVersion, { what: 'cached result' });
    const next = convertResult(update(toCurrentResult(prev)), prev.cniVersion);
    await this.cache.write({ ...r.record, result: next as unknown as Record<string, unknown> });
  }

  /** Cached attachments (all, or of one container), as libcni's GetCachedAttachments. */
  async getCachedAttachments(containerId?: string): Promise<CachedAttachment[]> {
    return this.cache.list(containerId);
  }

  /** What a plugin binary answers to VERSION. */
  async getVersionInfo(type: string, call: CallOptions = {}): Promise<PluginVersionInfo> {
    const path = await this.locate(type);
    return getVersionInfo(path, { ...this.execOpts(call), env: this.opts.env ?? process.env, type });
  }

  /**
   * Checks that every plugin exists and supports the list's version (exact match, "" = 0.1.0);
   * returns the sorted union of enabled capabilities.
   */
  async validateNetworkList(list: NetworkListInput, call: CallOptions = {}): Promise<string[]> {
    return this.validate(toNetFromList(list), call);
  }

  /** validateNetworkList for a single-plugin config. */
  async validateNetwork(conf: NetworkInput, call: CallOptions = {}): Promise<string[]> {
    return this.validate(toNetFromConf(conf), call);
  }

  // ---- verbs ----

  private async add(net: Net, rt: RuntimeConf, call: CallOptions): Promise<AnyResult> {
    let result: AnyResult | undefined;
    for (const plugin of net.plugins) {
      try {
        // No length limit here (libcni has none; the cache names are bounded): plugins built with
        // the SDK refuse IDs too long for their own file names themselves.
        validateContainerId(rt.containerId, Number.POSITIVE_INFINITY);
        validateNetworkName(net.name);
        validateIfName(rt.ifname);
      } catch (err) {
        throw this.wrap(net, plugin, 'ADD', err);
      }
      const conf = this.buildConf(net, plugin, result, rt);
      const path = await this.find(net, plugin, 'ADD');
      result = await execPluginResult(
        {
          path,
          type: plugin.type,
          name: net.name,
          command: 'ADD',
          stdin: JSON.stringify(conf),
          env: this.env('ADD', rt),
        },
        net.cniVersion,
        this.execOpts(call),
      );
    }
    if (!result)
      throw new CniError(ErrorCode.InvalidNetworkConfig, `network "${net.name}": no plugins to run`);
    const final = this.toListVersion(net, result, `final result of network "${net.name}"`);
    try {
      await this.cache.write({
        containerId: rt.containerId,
        ifname: rt.ifname,
        networkName: net.name,
        config: net.text,
        ...(rt.netns ? { netns: rt.netns } : {}),
        ...(rt.args ? { cniArgs: rt.args } : {}),
        ...(rt.capabilityArgs ? { capabilityArgs: rt.capabilityArgs } : {}),
        result: final as unknown as Record<string, unknown>,
      });
    } catch (err) {
      throw new CniError(
        ErrorCode.IOFailure,
        `failed to set network "${net.name}" cached result in ${this.cache.dir}: ${describeSystemError(err) ?? (err as Error).message}; the attachment exists, call DEL to remove it`,
        undefined,
        { cause: err },
      );
    }
    return final;
  }

  private async check(net: Net, rt: RuntimeConf, call: CallOptions): Promise<void> {
    if (!versionAtLeast(net.cniVersion, '0.4.0')) {
      throw new CniError(
        ErrorCode.IncompatibleCNIVersion,
        `configuration version "${net.cniVersion}" does not support the CHECK command; CHECK needs cniVersion 0.4.0 or later`,
      );
    }
    if (net.disableCheck && !net.single) return;
    const prev = await this.cachedResult(net, rt, 'strict');
    for (const plugin of net.plugins) {
      await this.execNoResult(net, plugin, 'CHECK', this.buildConf(net, plugin, prev, rt), rt, call);
    }
  }

  private async del(net: Net, rt: RuntimeConf, call: CallOptions): Promise<void> {
    const prev = versionAtLeast(net.cniVersion, '0.4.0')
      ? await this.cachedResult(net, rt, 'lenient')
      : undefined;
    // Unlike libcni, which stops at the first failure, every plugin's DEL runs: a missing or
    // failing plugin late in the list must not keep the interface and address of the ones
    // before it. The failures are reported together and the cache is kept for a retry.
    const errors: CniError[] = [];
    for (const plugin of [...net.plugins].reverse()) {
      try {
        await this.execNoResult(net, plugin, 'DEL', this.buildConf(net, plugin, prev, rt), rt, call);
      } catch (err) {
        if (call.signal?.aborted) throw err;
        errors.push(CniError.from(err));
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) {
      throw new CniAggregateError(
        `DEL of network "${net.name}": ${errors.length} of ${net.plugins.length} plugins failed`,
        errors,
      );
    }
    try {
      await this.cache.remove(this.key(net, rt));
    } catch (err) {
      this.warn(
        `DEL of network "${net.name}": cannot remove cache file ${this.cache.path(this.key(net, rt))}: ${String(err)}`,
      );
    }
  }

  private async validate(net: Net, call: CallOptions): Promise<string[]> {
    const want = net.cniVersion === '' ? '0.1.0' : net.cniVersion;
    const errors: CniError[] = [];
    const caps = new Set<string>();
    for (const plugin of net.plugins) {
      for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) if (on) caps.add(cap);
      try {
        const info = await this.getVersionInfo(plugin.type, call);
        if (!info.supportedVersions.includes(want)) {
          errors.push(
            new CniError(
              ErrorCode.IncompatibleCNIVersion,
              `plugin ${plugin.type} does not support config version "${want}"; it supports ${JSON.stringify(info.supportedVersions)}`,
            ),
          );
        }
      } catch (err) {
        errors.push(CniError.from(err));
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new CniAggregateError(`network "${net.name}" is not valid`, errors);
    return [...caps].sort();
  }

  // ---- helpers ----

  /**
   * The request config of one plugin: its own object with `name` and `cniVersion` of the list,
   * `prevResult` in the list's version (libcni passes the previous plugin's own version; a
   * plugin whose output version differs would then break the next one's parsing), and
   * `runtimeConfig` holding only the capabilities it declares.
   */
  private buildConf(
    net: Net,
    plugin: PluginConf,
    prev: AnyResult | undefined,
    rt: RuntimeConf,
  ): Record<string, unknown> {
    const conf: Record<string, unknown> = {
      ...injectRuntimeConfig(plugin, rt.capabilityArgs),
      name: net.name,
      cniVersion: net.cniVersion,
    };
    if (prev) conf.prevResult = this.toListVersion(net, prev, `prevResult for plugin "${plugin.type}"`);
    else delete conf.prevResult;
    return conf;
  }

  private toListVersion(net: Net, r: AnyResult, what: string): AnyResult {
    if (r.cniVersion === net.cniVersion) return r;
    try {
      return convertResult(r, net.cniVersion);
    } catch (err) {
      const e = CniError.from(err);
      throw new CniError(
        e.code,
        `${what}: cannot convert to config version "${net.cniVersion}": ${e.message}`,
        e.details,
        {
          cause: err,
        },
      );
    }
  }

  /** strict (CHECK, getters): a corrupt file is an error naming it; lenient (DEL): a warning, no prevResult. */
  private async cachedResult(
    net: Net,
    rt: RuntimeConf,
    mode: 'strict' | 'lenient',
  ): Promise<AnyResult | undefined> {
    const r = await this.cache.read(this.key(net, rt));
    if (r.status === 'missing') return undefined;
    let problem: string | undefined;
    let result: AnyResult | undefined;
    if (r.status === 'corrupt') problem = r.reason;
    else if (r.result) {
      try {
        result = convertResult(
          parseResult(r.result, net.cniVersion, { what: 'cached result' }),
          net.cniVersion,
        );
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    if (problem === undefined) return result;
    if (mode === 'strict') {
      throw new CniError(
        ErrorCode.IOFailure,
        `failed to get network "${net.name}" cached result: ${corruptError(r.path, problem).message}`,
      );
    }
    this.warn(
      `DEL of network "${net.name}" proceeds without prevResult: ${corruptError(r.path, problem).message}`,
    );
    return undefined;
  }

  private async execNoResult(
    net: Net,
    plugin: PluginConf,
    command: Command,
    conf: Record<string, unknown>,
    rt: RuntimeConf | undefined,
    call: CallOptions,
  ): Promise<void> {
    const path = await this.find(net, plugin, command);
    await execPlugin(
      {
        path,
        type: plugin.type,
        name: net.name,
        command,
        stdin: JSON.stringify(conf),
        env: this.env(command, rt),
      },
      this.execOpts(call),
    );
  }

  /** The plugin's path: on pluginDirs, or, with a chroot, on them inside it (as seen from inside). */
  private async locate(type: string): Promise<string> {
    const root = this.opts.chroot?.replace(/\/+$/, '');
    if (!root) return findInPath(type, this.pluginDirs);
    return (
      await findInPath(
        type,
        this.pluginDirs.map((d) => `${root}${d}`),
      )
    ).slice(root.length);
  }

  private async find(net: Net, plugin: PluginConf, command: Command): Promise<string> {
    try {
      return await this.locate(plugin.type);
    } catch (err) {
      throw this.wrap(net, plugin, command, err);
    }
  }

  /** libcni's `plugin type="X" name="Y" failed (add): …`, keeping the code; exec errors already read so. */
  private wrap(net: Net, plugin: PluginConf, command: Command, err: unknown): CniError {
    if (err instanceof PluginExecError) return err;
    const e = CniError.from(err);
    return new CniError(
      e.code,
      `plugin type=${JSON.stringify(plugin.type)} name=${JSON.stringify(net.name)} failed (${command.toLowerCase()}): ${e.message}`,
      e.details,
      { cause: err },
    );
  }

  private key(net: Net, rt: RuntimeConf): AttachmentKey {
    return { networkName: net.name, containerId: rt.containerId, ifname: rt.ifname };
  }

  private env(command: Command, rt: RuntimeConf | undefined): Record<string, string> {
    return buildCniEnv(this.opts.env ?? process.env, {
      command,
      path: this.pluginDirs,
      ...(rt
        ? { containerId: rt.containerId, ifname: rt.ifname, netns: rt.netns ?? '', args: rt.args ?? [] }
        : {}),
    });
  }

  private execOpts(call: CallOptions): ExecOptions {
    const o = this.opts;
    return {
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.killGraceMs !== undefined ? { killGraceMs: o.killGraceMs } : {}),
      ...(o.stderr !== undefined ? { stderr: o.stderr } : {}),
      ...(o.busyRetries !== undefined ? { busyRetries: o.busyRetries } : {}),
      ...(o.busyRetryDelayMs !== undefined ? { busyRetryDelayMs: o.busyRetryDelayMs } : {}),
      ...(call.signal ? { signal: call.signal } : {}),
      ...(o.chroot ? { chroot: o.chroot } : {}),
    };
  }

  private warn(message: string): void {
    if (this.opts.warn) this.opts.warn(message);
    else process.stderr.write(`cni-kit: ${message}\n`);
  }
}

function corruptError(path: string, reason: string): CniError {
  return new CniError(
    ErrorCode.IOFailure,
    `cache file ${path} is unusable (${reason}); delete it or run DEL, which proceeds without it`,
  );
}
