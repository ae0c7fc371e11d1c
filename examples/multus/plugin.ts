// multus: attaches a pod to its cluster network (eth0) and to the networks its annotation selects
// (net1, net2 ...), through a libcni-equivalent runtime; writes network-status. As a binary (thin
// mode) every read is a GET; inside `cni-kit daemon --multus-config` (thick mode) pods and NADs come
// from the daemon's informer caches first, and `chrootDir` runs delegates inside the host's root.
import { stat } from 'node:fs/promises';
import {
  type AnyResult,
  CniError,
  ErrorCode,
  type PluginContext,
  type PluginSpec,
  type PodRef,
  podRef,
  type Result,
  toCurrentResult,
} from 'cni-kit';
import { SyncBatch } from 'cni-kit/fs';
import {
  buildNetworkStatuses,
  cachedKubeClient,
  cachedKubeConnect,
  connectKube,
  DEVICE_INFO_DIR,
  type DeviceInformation,
  formatNetworkStatus,
  isKubeNotFound,
  KUBELET_POD_RESOURCES_SOCKET,
  type KubeClient,
  NETWORK_STATUS_ANNOTATION,
  type NetworkStatus,
  type Pod,
  type SharedKubeCache,
  sharedKubeCache,
} from 'cni-kit/k8s';
import { linuxNetlink, type Netlink } from 'cni-kit/netlink';
import { CniRuntime, type RuntimeConf } from 'cni-kit/runtime';
import { describeSystemError, ipFamily, versionAtLeast } from 'cni-kit/spec';
import { addedInterface, checkAuxiliaryChain } from './add-extras.js';
import { type MultusConf, multusConfig } from './config.js';
import { type Delegate, loadDelegates, planDelegates, removeDelegates, saveDelegates } from './delegates.js';
import {
  assignDevices,
  collectDeviceInfo,
  defaultPodResources,
  dropDeviceInfo,
  type PodResourcesConnect,
  prepareDeviceInfo,
} from './devices.js';
import { appendRotated, type LogRotation, MULTUS_LOG_ROTATION } from './log.js';
import { applyDefaultRoutes, recordDefaultRoutes } from './routes.js';

type Ctx = PluginContext<MultusConf>;

const devInfoDir = (c: MultusConf) => c.deviceInfoDir ?? DEVICE_INFO_DIR;

/** Injectable edges, so the plugin runs in-process in tests. */
export interface MultusDeps {
  /** Builds the API client; default: the kubeconfig file through @kubernetes/client-node. */
  kubeClient?: (kubeconfig: string, timeoutMs: number) => Promise<KubeClient>;
  netlink?: () => Netlink;
  /** How long ADD waits for the readiness indicator file; default 45 s. */
  readinessTimeoutMs?: number;
  /** Per-request API timeout for ADD (default 10 s) and DEL (default 2.5 s). */
  apiTimeoutMs?: { add: number; del: number };
  /** Delay between GETs of a pod the API does not know yet; default 250 ms, 10 tries. */
  podRetry?: { delayMs: number; tries: number };
  /**
   * The informer caches for a kubeconfig; default: what the daemon this plugin runs in offers
   * (`cni-kit daemon --multus-config`), none in a plugin process of its own (thin mode).
   */
  sharedCache?: (kubeconfig: string) => SharedKubeCache | undefined;
  /** Opens kubelet's PodResources API (NADs with a resourceName); default gRPC on the socket. */
  podResources?: PodResourcesConnect;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One log line: to stderr (the runtime's log) unless logToStderr is false, and to logFile if set,
 * rotated as multus rotates it (logOptions over multus's defaults).
 */
function say(ctx: Ctx, message: string): void {
  if (ctx.conf.logToStderr !== false) ctx.log(message);
  if (ctx.conf.logFile) {
    const o = ctx.conf.logOptions ?? {};
    const rot: LogRotation = {
      maxSize: o.maxSize ?? MULTUS_LOG_ROTATION.maxSize,
      maxAge: o.maxAge ?? MULTUS_LOG_ROTATION.maxAge,
      maxBackups: o.maxBackups ?? MULTUS_LOG_ROTATION.maxBackups,
      compress: o.compress ?? MULTUS_LOG_ROTATION.compress,
    };
    try {
      appendRotated(ctx.conf.logFile, `${new Date().toISOString()} [${ctx.containerId}] ${message}\n`, rot);
    } catch {
      // a log file we cannot write must not fail the attachment
    }
  }
}

/** Waits for the event posts; a failed one is logged, never fails the call (events are best effort). */
async function settle(ctx: Ctx, events: Array<Promise<void>>): Promise<void> {
  const done = await Promise.allSettled(events.splice(0));
  for (const r of done) {
    if (r.status === 'rejected') say(ctx, `multus: cannot post event: ${(r.reason as Error).message}`);
  }
}

async function waitReadiness(file: string, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await stat(file);
      return true;
    } catch {
      if (Date.now() >= end) return false;
      await sleep(Math.min(1000, Math.max(1, end - Date.now())));
    }
  }
}

/** The multus plugin: handlers plus options for pluginMain/runPlugin. */
export function multusPlugin(deps: MultusDeps = {}): PluginSpec<MultusConf> {
  const timeouts = deps.apiTimeoutMs ?? { add: 10_000, del: 2_500 };
  // One client per kubeconfig for the life of the process: a daemon reuses it (and its keep-alive
  // connections) for every call; a plugin process makes one call anyway.
  const sharedKube = cachedKubeConnect(connectKube);
  const makeKube = deps.kubeClient ?? ((path: string, timeoutMs: number) => sharedKube(path, { timeoutMs }));
  const netlink = deps.netlink ?? (() => linuxNetlink());

  function runtime(ctx: Ctx, syncBatch?: SyncBatch): CniRuntime {
    return new CniRuntime({
      pluginDirs: [ctx.conf.binDir, ...ctx.path],
      cacheDir: ctx.conf.cniDir,
      env: ctx.env,
      ...(ctx.conf.chrootDir ? { chroot: ctx.conf.chrootDir } : {}),
      ...(syncBatch ? { syncBatch } : {}),
      warn: (m) => say(ctx, `multus: ${m}`),
    });
  }

  function rtConf(ctx: Ctx, d: Delegate): RuntimeConf {
    // Kubernetes runtimes send K8S_* args without IgnoreUnknown at times; plugins must not choke.
    const args: Array<[string, string]> = ctx.args.some(([k]) => k === 'IgnoreUnknown')
      ? [...ctx.args]
      : [['IgnoreUnknown', 'true'], ...ctx.args];
    return {
      containerId: ctx.containerId,
      netns: ctx.netns,
      ifname: d.ifname,
      args,
      ...(d.capabilityArgs ? { capabilityArgs: d.capabilityArgs } : {}),
    };
  }

  const isList = (d: Delegate) => Array.isArray(d.conf.plugins);
  const label = (ctx: Ctx, pod: PodRef | undefined, d: Delegate) =>
    `[${pod ? `${pod.namespace}/${pod.name}/${pod.uid ?? ''}` : ctx.containerId}:${d.name}]`;

  async function delOne(rt: CniRuntime, ctx: Ctx, d: Delegate): Promise<void> {
    const json = JSON.stringify(d.conf);
    if (isList(d)) await rt.delNetworkList(json, rtConf(ctx, d), { signal: ctx.signal });
    else await rt.delNetwork(json, rtConf(ctx, d), { signal: ctx.signal });
  }

  /**
   * Takes down attached delegates in reverse order; a failure is logged, the next one still runs
   * (and every plugin of a list runs its DEL, see CniRuntime). The delegate cache goes too, so a
   * failed ADD leaves no file behind: a later DEL rebuilds the list from the config and the pod.
   */
  async function rollback(rt: CniRuntime, ctx: Ctx, attached: Delegate[]): Promise<void> {
    for (const done of [...attached].reverse()) {
      await delOne(rt, ctx, done).catch((e) =>
        say(ctx, `multus: rollback DEL of ${done.name} failed: ${(e as Error).message}`),
      );
      await dropDeviceInfo(done, ctx.containerId, devInfoDir(ctx.conf), (m) => say(ctx, m));
    }
    await removeDelegates(ctx.conf.cniDir, ctx.containerId).catch((e) =>
      say(ctx, `multus: cannot remove the delegate cache after the rollback: ${(e as Error).message}`),
    );
  }

  /**
   * The API client of the config's kubeconfig. Inside a daemon that keeps informer caches, pods
   * and NADs are read from them first and a miss is a GET (thick mode); otherwise every read is a GET.
   */
  async function kubeFor(ctx: Ctx, timeoutMs: number, pod?: PodRef): Promise<KubeClient | undefined> {
    const path = ctx.conf.kubeconfig;
    if (!path) return undefined;
    const base = await makeKube(path, timeoutMs);
    const cache = (deps.sharedCache ?? sharedKubeCache)(path);
    return cache ? cachedKubeClient(base, cache, pod?.uid) : base;
  }

  /** GETs the pod, retrying a 404 briefly (the API may lag the kubelet); undefined when it is gone. */
  async function getPod(kube: KubeClient, pod: PodRef, tries: number): Promise<Pod | undefined> {
    const retry = deps.podRetry ?? { delayMs: 250, tries: 10 };
    for (let i = 1; ; i++) {
      try {
        return await kube.getPod(pod.namespace, pod.name);
      } catch (err) {
        if (!isKubeNotFound(err)) throw err;
        if (i >= Math.min(tries, retry.tries)) return undefined;
        await sleep(retry.delayMs);
      }
    }
  }

  /** Delegates for DEL/CHECK: the cache, else rebuilt from the pod, else from the config alone. */
  async function delegatesFor(ctx: Ctx, pod: PodRef | undefined): Promise<Delegate[]> {
    const c = ctx.conf;
    const cached = await loadDelegates(c.cniDir, ctx.containerId, ctx.ifname);
    if (cached.status === 'ok') return cached.delegates;
    if (cached.status === 'corrupt') {
      say(
        ctx,
        `multus: cache file ${cached.path} is unusable (${cached.reason}); rebuilding the delegates from the config and the API`,
      );
    }
    let kube: KubeClient | undefined;
    let podObject: Pod | undefined;
    try {
      kube = await kubeFor(ctx, timeouts.del, pod);
      if (kube && pod) podObject = await getPod(kube, pod, 1);
    } catch (err) {
      say(
        ctx,
        `multus: cannot read pod ${pod?.namespace}/${pod?.name} (${(err as Error).message}); deleting the networks the config names`,
      );
    }
    const base = { conf: c, ifname: ctx.ifname, ...(pod ? { pod } : {}), ...(kube ? { kube } : {}) };
    if (podObject) {
      try {
        return await planDelegates({ ...base, podObject });
      } catch (err) {
        say(
          ctx,
          `multus: cannot resolve the pod's networks (${(err as Error).message}); deleting the cluster network only`,
        );
      }
    }
    try {
      return await planDelegates({ ...base, configOnly: true });
    } catch (err) {
      // Nothing left to learn the networks from: never block sandbox removal (reference behaviour).
      say(
        ctx,
        `multus: no cached delegates for ${ctx.containerId} and ${(err as Error).message}; cannot properly delete`,
      );
      return [];
    }
  }

  return {
    about: 'multus: attaches pods to a cluster network and to NetworkAttachmentDefinitions (thin mode)',
    config: multusConfig,

    async add(ctx) {
      const c = ctx.conf;
      if (
        c.readinessindicatorfile &&
        !(await waitReadiness(c.readinessindicatorfile, deps.readinessTimeoutMs ?? 45_000))
      ) {
        throw new CniError(
          ErrorCode.TryAgainLater,
          `readiness indicator file ${c.readinessindicatorfile} did not appear; the cluster network is not ready yet`,
        );
      }
      await checkAuxiliaryChain(c);
      const pod = podRef(ctx.args);
      const kube = await kubeFor(ctx, timeouts.add, pod);
      let podObject: Pod | undefined;
      if (kube && pod) {
        podObject = await getPod(kube, pod, Number.POSITIVE_INFINITY);
        if (!podObject) {
          say(
            ctx,
            `multus: pod ${pod.namespace}/${pod.name} not found; returning an empty result without attaching`,
          );
          return {
            cniVersion: '1.1.0',
            interfaces: [{ name: ctx.ifname, sandbox: ctx.netns }],
            ips: [{ address: '0.0.0.0/0', gateway: '0.0.0.0' }],
          };
        }
        if (!pod.uid && podObject.metadata.uid) pod.uid = podObject.metadata.uid;
      }
      const delegates = await planDelegates({
        conf: c,
        ifname: ctx.ifname,
        ...(pod ? { pod } : {}),
        ...(kube ? { kube } : {}),
        ...(podObject ? { podObject } : {}),
      });
      await assignDevices(delegates, pod, {
        socket: c.kubeletSocket ?? KUBELET_POD_RESOURCES_SOCKET,
        connect: deps.podResources ?? defaultPodResources,
        containerId: ctx.containerId,
        deviceInfoDir: devInfoDir(c),
      });
      const gws = delegates.flatMap((d) => d.defaultRoute ?? []);
      if (
        gws.filter((g) => ipFamily(g) === 4).length > 1 ||
        gws.filter((g) => ipFamily(g) === 6).length > 1
      ) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          'multus does not support ECMP for default-route; give one gateway per family',
        );
      }
      const nl = netlink();
      const existing = new Set((await nl.open(ctx.netns).links()).map((l) => l.name));
      for (const d of delegates) {
        if (existing.has(d.ifname)) {
          throw new CniError(
            ErrorCode.InvalidNetworkConfig,
            `validateIfName: interface name ${d.ifname} already exists in ${ctx.netns}; request another name for ${d.name}`,
          );
        }
      }
      // The delegate cache and every result cache this ADD writes are in place as soon as each is
      // written (a DEL after a crash of this process finds them) and made durable together, once,
      // before the answer: one flush instead of two fsyncs per file, each waiting for the disk.
      const durable = new SyncBatch();
      await saveDelegates(c.cniDir, ctx.containerId, delegates, durable);

      const rt = runtime(ctx, durable);
      const results: Result[] = [];
      const deviceInfos: Array<DeviceInformation | undefined> = [];
      const events: Array<Promise<void>> = [];
      for (const [i, d] of delegates.entries()) {
        try {
          await prepareDeviceInfo(d, devInfoDir(c), (m) => say(ctx, m));
          const json = JSON.stringify(d.conf);
          const r: AnyResult = isList(d)
            ? await rt.addNetworkList(json, rtConf(ctx, d), { signal: ctx.signal })
            : await rt.addNetwork(json, rtConf(ctx, d), { signal: ctx.signal });
          results.push(toCurrentResult(r));
          deviceInfos.push(await collectDeviceInfo(d, (m) => say(ctx, m)));
          if (kube && podObject) events.push(addedInterface(ctx.containerId, kube, podObject, d, r));
        } catch (err) {
          await settle(ctx, events);
          // Spec §7.2: stop at the first failure and take down what was attached, this one included.
          await rollback(rt, ctx, delegates.slice(0, i + 1));
          const e = CniError.from(err);
          throw new CniError(
            e.code,
            `${label(ctx, pod, d)}: error adding container to network "${d.name}": ${e.message}`,
            e.details,
            { cause: err },
          );
        }
      }
      if (gws.length) {
        // The move and the cache records that describe it succeed together or ADD fails with
        // nothing attached: a half-moved route would make every later CHECK fail.
        try {
          const changed = await applyDefaultRoutes(nl, ctx.netns, delegates, results);
          await recordDefaultRoutes(rt, (d) => rtConf(ctx, d), delegates, results, changed);
        } catch (err) {
          await settle(ctx, events);
          await rollback(rt, ctx, delegates);
          const e = CniError.from(err);
          const owner = delegates.find((d) => d.defaultRoute) as Delegate;
          throw new CniError(e.code, `${label(ctx, pod, owner)}: ${e.message}`, e.details, { cause: err });
        }
      }

      const statuses: NetworkStatus[] = delegates.flatMap((d, i) =>
        buildNetworkStatuses(d.name, results[i], {
          isDefault: d.master,
          ...(deviceInfos[i] ? { deviceInfo: deviceInfos[i] } : {}),
        }),
      );
      // The caches' flush runs while the network-status PATCH is on the wire; ADD answers after both.
      const flushed = durable.flush().then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      // With no entry at all (no network reported an interface) multus writes nothing either.
      if (kube && pod && podObject && statuses.length > 0) {
        try {
          await kube.updatePodAnnotations(pod.namespace, pod.name, {
            [NETWORK_STATUS_ANNOTATION]: formatNetworkStatus(statuses),
          });
        } catch (err) {
          await settle(ctx, events);
          if (isKubeNotFound(err)) {
            // The pod was deleted meanwhile: multus tolerates this, the runtime DELs next.
            say(ctx, `multus: pod ${pod.namespace}/${pod.name} is gone; network status not written`);
          } else {
            // As multus: a pod without its network-status fails ADD (consumers rely on it); here
            // nothing stays attached.
            await flushed;
            await rollback(rt, ctx, delegates);
            const e = CniError.from(err);
            throw new CniError(
              e.code,
              `${label(ctx, pod, delegates[0] as Delegate)}: error setting the networks status: ${e.message}`,
              e.details,
              { cause: err },
            );
          }
        }
      }
      const unsaved = await flushed;
      if (unsaved) {
        // The runtime would be told of attachments that a power loss could make DEL unable to find.
        await settle(ctx, events);
        await rollback(rt, ctx, delegates);
        throw new CniError(
          ErrorCode.IOFailure,
          `${label(ctx, pod, delegates[0] as Delegate)}: error saving the delegate and result caches in ${c.cniDir}: ${describeSystemError(unsaved) ?? unsaved.message}; nothing stays attached, check the disk and try again`,
          undefined,
          { cause: unsaved },
        );
      }
      await settle(ctx, events);
      const masterIdx = delegates.findIndex((d) => d.master);
      return (results[masterIdx] ?? results.find(Boolean)) as Result;
    },

    async del(ctx) {
      const c = ctx.conf;
      const pod = podRef(ctx.args);
      const delegates = await delegatesFor(ctx, pod);
      const rt = runtime(ctx);
      const errors: string[] = [];
      let codes = 0;
      for (const d of [...delegates].reverse()) {
        try {
          await delOne(rt, ctx, d);
          await dropDeviceInfo(d, ctx.containerId, devInfoDir(c), (m) => say(ctx, m));
        } catch (err) {
          const e = CniError.from(err);
          codes ||= e.code;
          errors.push(
            `${label(ctx, pod, d)}: error deleting container from network "${d.name}": ${e.message}`,
          );
        }
      }
      const keep =
        c.retryDeleteOnError &&
        errors.length > 0 &&
        !errors.every((m) => m.includes('no such file or directory'));
      if (!keep) await removeDelegates(c.cniDir, ctx.containerId);
      if (errors.length) throw new CniError(codes || ErrorCode.Internal, `errors: ${errors.join(' / ')}`);
    },

    async check(ctx) {
      const delegates = await delegatesFor(ctx, podRef(ctx.args));
      const rt = runtime(ctx);
      for (const d of delegates) {
        const version = typeof d.conf.cniVersion === 'string' ? d.conf.cniVersion : '';
        if (!versionAtLeast(version || '0.1.0', '0.4.0')) {
          // CHECK came with 0.4.0; an older network cannot answer it, so it is skipped (as multus).
          say(
            ctx,
            `multus: skipping CHECK of network ${d.name}: its cniVersion ${version || '(none)'} predates 0.4.0`,
          );
          continue;
        }
        const json = JSON.stringify(d.conf);
        if (isList(d)) await rt.checkNetworkList(json, rtConf(ctx, d), { signal: ctx.signal });
        else await rt.checkNetwork(json, rtConf(ctx, d), { signal: ctx.signal });
      }
    },

    async status(ctx) {
      const f = ctx.conf.readinessindicatorfile;
      if (f && !(await waitReadiness(f, 0))) {
        throw new CniError(
          ErrorCode.PluginNotAvailable,
          `readiness indicator file ${f} is missing; the cluster network is not ready`,
        );
      }
    },
  };
}
