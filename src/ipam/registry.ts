// ctx.ipam: which allocator serves a config's `ipam.type`, and how a plugin's call reaches it.
//
// The rule follows the Go plugins (`ipam.ExecAdd(type, stdin)`) and improves on them only where it
// cannot be told apart: a type is exec'd from CNI_PATH with the runtime's stdin byte for byte,
// unless the registry has an in-process allocator for it AND exec'ing would have run cni-kit's own
// binary of that type (or nothing at all). So a user who puts the Go host-local (or any other)
// earlier on CNI_PATH gets it, and cni-kit's own host-local costs no process.
//
// This layer neither imports the delegate layer nor Kubernetes: exec is injected (`IpamExec`, the
// cni-kit entry wires in cni-kit/delegate), and there is no module-global registry.
import type { CallInfo, IpamClient, IpamFactory, PluginSpec } from '../plugin/context.js';
import { formatPodRef, podRef } from '../spec/args.js';
import type { Env, HandlerCommand } from '../spec/call.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import type { Result } from '../spec/result/types.js';
import { HostLocalAllocator } from './host-local/allocator.js';
import { StaticAllocator } from './static/allocator.js';
import type { AllocatorFactory, IpamAllocator, IpamRequest } from './types.js';

/** Maps `ipam.type` to an in-process allocator factory. */
export class IpamRegistry {
  private readonly factories = new Map<string, AllocatorFactory>();

  /** Registers (or replaces) the factory for a type. */
  register(type: string, factory: AllocatorFactory): this {
    this.factories.set(type, factory);
    return this;
  }

  /** Removes a type, so calls for it are exec'd instead. */
  unregister(type: string): boolean {
    return this.factories.delete(type);
  }

  /** The factory for a type, if registered. */
  get(type: string): AllocatorFactory | undefined {
    return this.factories.get(type);
  }

  /** Registered type names. */
  types(): string[] {
    return [...this.factories.keys()];
  }
}

/** A registry with the allocators every plugin gets in-process: host-local and static. */
export function builtinIpam(): IpamRegistry {
  return new IpamRegistry()
    .register('host-local', (c) => new HostLocalAllocator(c))
    .register('static', (c) => new StaticAllocator(c));
}

/** One exec of an IPAM plugin. */
export interface IpamExecRequest {
  type: string;
  /** The binary `locate` found; undefined makes `run` look it up (and fail naming CNI_PATH). */
  binary: string | undefined;
  command: HandlerCommand;
  /** The runtime's request config, byte for byte. */
  stdin: string;
  /** The calling plugin's environment; only CNI_COMMAND changes. */
  env: Env;
  path: readonly string[];
  signal: AbortSignal;
}

/** How IPAM types that are not served in-process run: injected (the cni-kit entry uses cni-kit/delegate). */
export interface IpamExec {
  /** The binary exec would run for `type`, and the cni-kit plugin type it carries (if any); undefined when none. */
  locate(type: string, path: readonly string[]): Promise<{ binary: string; cniKitType?: string } | undefined>;
  /** Runs the plugin; ADD returns its result as the current result type. */
  run(req: IpamExecRequest): Promise<Result | undefined>;
}

/** What `createIpamFactory` combines. */
export interface IpamFactoryOptions {
  /** In-process allocators; default `builtinIpam()`. */
  registry?: IpamRegistry | undefined;
  exec: IpamExec;
}

/** What an allocator is asked for one call: the attachment, CNI_ARGS, the pod and prevResult. */
export function ipamRequest(call: CallInfo): IpamRequest {
  const { containerId, ifname, args, config } = call;
  const req: IpamRequest = { containerId, ifname, args };
  const pod = podRef(args);
  if (pod) req.podRef = formatPodRef(pod);
  if (config.prevResult) req.prevResult = config.prevResult;
  return req;
}

/**
 * An IPAM plugin binary's handlers for an allocator: ADD allocates, DEL releases, CHECK, GC and
 * STATUS pass through (host-local, static and whereabouts binaries are this and nothing else).
 */
export function ipamPlugin(
  factory: AllocatorFactory,
  opts: Pick<PluginSpec, 'about' | 'supportedVersions'> = {},
): PluginSpec {
  const allocator = (call: CallInfo) => factory(call.config, { env: call.env, path: call.path });
  return {
    ...opts,
    add: async (ctx) => (await allocator(ctx)).allocate(ipamRequest(ctx)),
    del: async (ctx) => (await allocator(ctx)).release(ipamRequest(ctx)),
    check: async (ctx) => (await allocator(ctx)).check(ipamRequest(ctx)),
    gc: async (ctx) => {
      await (await allocator(ctx)).gc(ctx.validAttachments);
    },
    status: async (ctx) => {
      await (await allocator(ctx)).status();
    },
  };
}

type Route = { kind: 'local'; allocator: IpamAllocator } | { kind: 'exec'; type: string; binary?: string };

/** Builds the `ipam` option of a plugin: ctx.ipam for every call from a registry and an exec. */
export function createIpamFactory(opts: IpamFactoryOptions): IpamFactory {
  const registry = opts.registry ?? builtinIpam();
  return (call) => new CallIpam(call, registry, opts.exec);
}

function ipamType(call: CallInfo): string {
  const t = call.config.ipam?.type;
  if (typeof t !== 'string' || t === '') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      call.config.ipam === undefined
        ? 'ipam: missing; add "ipam": {"type": "host-local", ...} to the config'
        : `ipam.type: ${t === undefined ? 'missing' : `${JSON.stringify(t)} is not a plugin name`}; set it to an IPAM plugin such as "host-local", "static" or "dhcp"`,
    );
  }
  return t;
}

class CallIpam implements IpamClient {
  private route: Promise<Route> | undefined;

  constructor(
    private readonly call: CallInfo,
    private readonly registry: IpamRegistry,
    private readonly exec: IpamExec,
  ) {}

  get type(): string | undefined {
    return this.call.config.ipam?.type;
  }

  private resolve(): Promise<Route> {
    this.route ??= (async (): Promise<Route> => {
      const type = ipamType(this.call);
      const factory = this.registry.get(type);
      const found = await this.exec.locate(type, this.call.path);
      if (factory && (!found || found.cniKitType === type)) {
        return {
          kind: 'local',
          allocator: await factory(this.call.config, { env: this.call.env, path: this.call.path }),
        };
      }
      return { kind: 'exec', type, ...(found ? { binary: found.binary } : {}) };
    })();
    return this.route;
  }

  private request(): IpamRequest {
    return ipamRequest(this.call);
  }

  private async run<T>(
    command: HandlerCommand,
    local: (a: IpamAllocator) => Promise<T>,
  ): Promise<T | Result | undefined> {
    const route = await this.resolve();
    if (route.kind === 'local') return local(route.allocator);
    const { stdin, env, path, signal } = this.call;
    return this.exec.run({ type: route.type, binary: route.binary, command, stdin, env, path, signal });
  }

  async add(): Promise<Result> {
    const r = await this.run('ADD', (a) => a.allocate(this.request()));
    if (!r) throw new CniError(ErrorCode.Internal, `IPAM plugin "${this.type}" returned no result for ADD`);
    return r as Result;
  }

  async check(): Promise<void> {
    await this.run('CHECK', (a) => a.check(this.request()));
  }

  async del(): Promise<void> {
    await this.run('DEL', (a) => a.release(this.request()));
  }

  async gc(): Promise<void> {
    await this.run('GC', (a) => a.gc(this.call.validAttachments ?? []));
  }

  async status(): Promise<void> {
    await this.run('STATUS', (a) => a.status());
  }
}
