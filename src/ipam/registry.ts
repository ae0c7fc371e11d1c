// One call for plugin authors: ipamAdd(ctx, config) runs the in-process allocator registered for
// `ipam.type` (host-local and static built in) and execs any other type from CNI_PATH through the
// delegate layer. In-process host-local uses the same files and lock as the binary.
import { delegateAdd, delegateCheck, delegateDel, delegateGC, delegateStatus } from '../delegate/invoke.js';
import { CniError, ErrorCode } from '../spec/errors.js';
import type { Result } from '../spec/result/types.js';
import { HostLocalAllocator } from './host-local/allocator.js';
import { StaticAllocator } from './static/allocator.js';
import type {
  IpamAllocator,
  IpamEnv,
  IpamFactory,
  IpamNetConf,
  IpamRequest,
  ValidAttachment,
} from './types.js';
import { whereaboutsFactory } from './whereabouts/index.js';

/** Maps `ipam.type` to an in-process allocator factory. */
export class IpamRegistry {
  private readonly factories = new Map<string, IpamFactory>();

  /** Registers (or replaces) the factory for a type. */
  register(type: string, factory: IpamFactory): this {
    this.factories.set(type, factory);
    return this;
  }

  /** Removes a type, so calls for it are exec'd instead. */
  unregister(type: string): boolean {
    return this.factories.delete(type);
  }

  /** The factory for a type, if registered. */
  get(type: string): IpamFactory | undefined {
    return this.factories.get(type);
  }

  /** Registered type names. */
  types(): string[] {
    return [...this.factories.keys()];
  }
}

/**
 * A registry with the built-in types: host-local, static and whereabouts. Their code is small; the
 * heavy clients a whereabouts store may need (etcd3, Kubernetes) load only when that store is used.
 */
export function createIpamRegistry(): IpamRegistry {
  return new IpamRegistry()
    .register('host-local', (c) => new HostLocalAllocator(c))
    .register('static', (c) => new StaticAllocator(c))
    .register('whereabouts', whereaboutsFactory);
}

/** The registry ipamAdd & co. use unless given another. */
export const defaultIpamRegistry: IpamRegistry = createIpamRegistry();

/** Registers an in-process allocator type in the default registry. */
export function registerIpam(type: string, factory: IpamFactory): void {
  defaultIpamRegistry.register(type, factory);
}

/** The delegate calls used for types with no in-process allocator (shape of src/delegate's functions). */
export interface IpamExec {
  add(type: string, config: IpamNetConf, opts: IpamEnv): Promise<Result>;
  del(type: string, config: IpamNetConf, opts: IpamEnv): Promise<void>;
  check(type: string, config: IpamNetConf, opts: IpamEnv): Promise<void>;
  gc(type: string, config: IpamNetConf, opts: IpamEnv): Promise<void>;
  status(type: string, config: IpamNetConf, opts: IpamEnv): Promise<void>;
}

// Static on purpose: a dynamic import() of our own module would be bundled as a lazy initialiser that
// esbuild drops on the static path ("sideEffects": false), leaving the delegate module uninitialised.
const defaultExec: IpamExec = {
  add: (t, c, o) => delegateAdd(t, c, o),
  del: (t, c, o) => delegateDel(t, c, o),
  check: (t, c, o) => delegateCheck(t, c, o),
  gc: (t, c, o) => delegateGC(t, c, o),
  status: (t, c, o) => delegateStatus(t, c, o),
};

/** The part of a plugin context IPAM needs (a PluginContext fits). */
export interface IpamCallContext {
  containerId: string;
  ifname: string;
  args?: ReadonlyArray<readonly [string, string]>;
  env?: Readonly<Record<string, string | undefined>>;
  path?: readonly string[];
}

/** Where ipamAdd & co. look up types and how they exec unknown ones. */
export interface IpamCallOptions {
  registry?: IpamRegistry;
  exec?: IpamExec;
}

function ipamType(config: IpamNetConf): string {
  const t = config.ipam?.type;
  if (typeof t !== 'string' || t === '') {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `ipam.type: ${JSON.stringify(t)} is missing; set it to an IPAM plugin such as "host-local", "static" or "dhcp"`,
    );
  }
  return t;
}

function envOf(ctx: IpamCallContext): IpamEnv {
  const e: IpamEnv = {};
  if (ctx.env) e.env = ctx.env;
  if (ctx.path) e.path = ctx.path;
  return e;
}

function requestOf(ctx: IpamCallContext, config: IpamNetConf): IpamRequest {
  const req: IpamRequest = { containerId: ctx.containerId, ifname: ctx.ifname };
  if (ctx.args) {
    req.args = ctx.args;
    let ns: string | undefined;
    let name: string | undefined;
    for (const [k, v] of ctx.args) {
      if (k === 'K8S_POD_NAMESPACE') ns = v;
      else if (k === 'K8S_POD_NAME') name = v;
    }
    if (ns && name) req.podRef = `${ns}/${name}`;
  }
  if (config.prevResult && typeof config.prevResult === 'object')
    req.prevResult = config.prevResult as Result;
  return req;
}

/** The in-process allocator for the config's `ipam.type`, or undefined when the type must be exec'd. */
export async function ipamAllocatorFor(
  config: IpamNetConf,
  env: IpamEnv = {},
  registry: IpamRegistry = defaultIpamRegistry,
): Promise<IpamAllocator | undefined> {
  const f = registry.get(ipamType(config));
  return f ? f(config, env) : undefined;
}

async function run<T>(
  ctx: IpamCallContext,
  config: IpamNetConf,
  opts: IpamCallOptions,
  inProcess: (a: IpamAllocator) => Promise<T>,
  viaExec: (x: IpamExec, type: string, env: IpamEnv) => Promise<T>,
): Promise<T> {
  const env = envOf(ctx);
  const a = await ipamAllocatorFor(config, env, opts.registry);
  if (a) return inProcess(a);
  return viaExec(opts.exec ?? defaultExec, ipamType(config), env);
}

/** IPAM ADD for a plugin: returns the IPAM result (current type). */
export function ipamAdd(
  ctx: IpamCallContext,
  config: IpamNetConf,
  opts: IpamCallOptions = {},
): Promise<Result> {
  return run(
    ctx,
    config,
    opts,
    (a) => a.allocate(requestOf(ctx, config)),
    (x, t, e) => x.add(t, config, e),
  );
}

/** IPAM DEL for a plugin; missing state is success. */
export function ipamDel(
  ctx: IpamCallContext,
  config: IpamNetConf,
  opts: IpamCallOptions = {},
): Promise<void> {
  return run(
    ctx,
    config,
    opts,
    (a) => a.release(requestOf(ctx, config)),
    (x, t, e) => x.del(t, config, e),
  );
}

/** IPAM CHECK for a plugin (the config's prevResult is what gets checked). */
export function ipamCheck(
  ctx: IpamCallContext,
  config: IpamNetConf,
  opts: IpamCallOptions = {},
): Promise<void> {
  return run(
    ctx,
    config,
    opts,
    (a) => a.check(requestOf(ctx, config)),
    (x, t, e) => x.check(t, config, e),
  );
}

/** IPAM GC for a plugin: frees everything not held by `valid` (exec'd types read it from the config). */
export function ipamGc(
  ctx: IpamCallContext,
  config: IpamNetConf,
  valid: readonly ValidAttachment[],
  opts: IpamCallOptions = {},
): Promise<void> {
  return run(
    ctx,
    config,
    opts,
    async (a) => {
      await a.gc(valid);
    },
    (x, t, e) => x.gc(t, config, e),
  );
}

/** IPAM STATUS for a plugin: throws CniError 50 when ADD cannot currently succeed. */
export function ipamStatus(
  ctx: IpamCallContext,
  config: IpamNetConf,
  opts: IpamCallOptions = {},
): Promise<void> {
  return run(
    ctx,
    config,
    opts,
    async (a) => {
      await a.status();
    },
    (x, t, e) => x.status(t, config, e),
  );
}
