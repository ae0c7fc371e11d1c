// Runs one vector and judges it: ADD (each plugin of a list with the previous result, as libcni
// does), the result valid for the config's version with its interfaces and addresses where it
// says, CHECK from 0.4.0 on, DEL twice exiting 0, and nothing left in the node, the pod or the
// state directories but what BY_DESIGN_LEFTOVERS (src/conform/allowlist.ts) allows. Vectors whose
// link kind this kernel lacks run in-process on the memory netlink backend (vectors-memory.ts).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BY_DESIGN_LEFTOVERS } from '../../src/conform/allowlist.js';
import { type ProcOutcome, runProc } from '../../src/conform/proc.js';
import { diffFileSnapshots, diffNetSnapshots } from '../../src/conform/snapshot.js';
import { checkResult, isObj, type Json, parseSingleJson } from '../../src/conform/validate.js';
import { versionAtLeast } from '../../src/spec/index.js';
import type { FakeK8s } from './fake-k8s.js';
import { BIN_DIR } from './plugin.js';
import { type Vector, versionOf } from './vectors.js';
import type { MemoryJob, MemoryReport } from './vectors-memory.js';
import { Sandbox } from './vectors-sandbox.js';

export const GO_DIR = '/usr/lib/cni';

type Obj = Record<string, unknown>;

/** Which plugins run a vector: cni-kit's (dist/bin) or Debian's Go plugins. */
export type Impl = 'cni-kit' | 'go';

/** Everything a vector run saw; `problems` empty means every assertion held. */
export interface VectorRun {
  problems: string[];
  /** One line per step, for the test output. */
  log: string[];
  result?: Json;
}

export interface RunOptions {
  tag: string;
  k8s?: FakeK8s | undefined;
  /** Replaces the plugin command of a type (the harness's own tests run a deliberately leaky one). */
  command?: ((type: string) => [string, string[]]) | undefined;
  /** Extra assertions after ADD (while the attachment exists); return problems. */
  afterAdd?: (s: Sandbox, result: Json | undefined, impl: Impl) => Promise<string[]> | string[];
  /** Extra assertions after the last DEL; return problems. */
  afterDel?: (s: Sandbox, impl: Impl) => Promise<string[]> | string[];
}

const said = (o: ProcOutcome) =>
  `exit ${o.exitCode ?? o.signal}${o.timedOut ? ' (timed out)' : ''}: ${(o.stdout.trim() || o.stderr.trim()).slice(0, 400)}`;

function binFor(v: Vector, impl: Impl, type: string): string {
  return impl === 'go' || v.goPlugins.includes(type) ? join(GO_DIR, type) : join(BIN_DIR, type);
}

interface PluginStep {
  type: string;
  conf: Obj;
}

/** The plugins one command runs, each with the config libcni would give it (name, cniVersion). */
function steps(v: Vector): PluginStep[] {
  if (v.kind === 'conflist') {
    const plugins = (v.config.plugins ?? []) as Obj[];
    return plugins.map((p) => ({
      type: String(p.type),
      conf: {
        ...p,
        name: v.config.name,
        // libcni injects the list's cniVersion into every plugin, "" when the list has none.
        cniVersion: v.config.cniVersion ?? '',
      },
    }));
  }
  const type = v.kind === 'ipam' ? String((v.config.ipam as Obj | undefined)?.type) : String(v.config.type);
  return [{ type, conf: v.config }];
}

/** The stdin of one call: the verbatim text when nothing is injected, else the config plus prevResult. */
function stdinFor(v: Vector, step: PluginStep, prev: Json | undefined): string {
  const injected = v.header['prev-result'] ? (JSON.parse(v.header['prev-result']) as Json) : undefined;
  const p = prev ?? injected;
  if (v.kind !== 'conflist' && p === undefined) return v.text;
  return JSON.stringify(p === undefined ? step.conf : { ...step.conf, prevResult: p });
}

/** Interfaces and addresses a result names exist where it says. */
async function resultState(s: Sandbox, v: Vector, result: Json, version: string): Promise<string[]> {
  if (!isObj(result)) return [];
  const addrs = async (netns: string) => {
    const r = await runProc('ip', ['-n', netns, '-j', 'addr', 'show'], { timeoutMs: 10_000 });
    const list = JSON.parse(r.stdout || '[]') as Array<{
      ifname: string;
      address?: string;
      addr_info?: Array<{ local: string; prefixlen: number }>;
    }>;
    return new Map(list.map((l) => [l.ifname, l]));
  };
  const [pod, node] = await Promise.all([addrs(s.pod), addrs(s.node)]);
  const problems: string[] = [];
  const has = (l: { addr_info?: Array<{ local: string; prefixlen: number }> } | undefined, cidr: string) =>
    l?.addr_info?.some((a) => `${a.local}/${a.prefixlen}` === cidr) ?? false;
  if (!versionAtLeast(version, '0.3.0')) {
    // A 0.1.0/0.2.0 result names addresses only; they are on CNI_IFNAME unless the plugin is an
    // IPAM plugin or a chained one passing on what the environment invented.
    if (v.kind === 'ipam' || v.header['prev-result']) return [];
    const ifname = v.header.ifname ?? 'eth0';
    for (const k of ['ip4', 'ip6']) {
      const b = result[k];
      if (isObj(b) && typeof b.ip === 'string' && !has(pod.get(ifname), b.ip))
        problems.push(`result ${k}.ip ${b.ip} is not on ${ifname} in the pod`);
    }
    return problems;
  }
  const ifaces = Array.isArray(result.interfaces) ? result.interfaces : [];
  const where = ifaces.map((i) => {
    if (!isObj(i)) return undefined;
    const inPod = typeof i.sandbox === 'string' && i.sandbox !== '';
    if (inPod && i.sandbox !== s.podPath) {
      problems.push(
        `interface ${String(i.name)}: sandbox ${String(i.sandbox)} is not CNI_NETNS ${s.podPath}`,
      );
      return undefined;
    }
    const link = (inPod ? pod : node).get(String(i.name));
    if (!link) problems.push(`interface ${String(i.name)} is not in the ${inPod ? 'pod' : 'node'}`);
    else if (typeof i.mac === 'string' && i.mac !== '' && link.address?.toLowerCase() !== i.mac.toLowerCase())
      problems.push(`interface ${String(i.name)}: mac ${link.address} but the result says ${i.mac}`);
    return link;
  });
  if (v.header['prev-result']) return problems;
  for (const ip of Array.isArray(result.ips) ? result.ips : []) {
    if (!isObj(ip) || typeof ip.address !== 'string' || typeof ip.interface !== 'number') continue;
    const i = ifaces[ip.interface];
    const link = where[ip.interface];
    if (link && !has(link, ip.address))
      problems.push(`address ${ip.address} is not on ${isObj(i) ? String(i.name) : '?'}`);
  }
  return problems;
}

/** Runs ADD, CHECK (>= 0.4.0), DEL and DEL again in a fresh sandbox; the sandbox is removed after. */
export async function runVector(v: Vector, impl: Impl, opts: RunOptions): Promise<VectorRun> {
  const run: VectorRun = { problems: [], log: [] };
  const version = versionOf(v.config);
  const s = Sandbox.open(v, opts.tag);
  try {
    let cniArgs: string | undefined;
    if (v.kubeconfigs.length) {
      if (!opts.k8s) throw new Error(`${v.id}: needs the fake API server`);
      await s.connectK8s(opts.k8s, v.kubeconfigs);
      // The pod and the vector's `default` NADs live in a namespace of the run's own, so runs side
      // by side on the one fake API server never see each other's NADs of the same name.
      const ns = s.k8sNamespace;
      const podName = s.podName;
      const annotations: Record<string, string> = {};
      if (v.header['pod-networks']) annotations['k8s.v1.cni.cncf.io/networks'] = v.header['pod-networks'];
      opts.k8s.putPod({ metadata: { name: podName, namespace: ns, annotations } });
      for (const n of v.nads) opts.k8s.putNad(n.namespace === 'default' ? ns : n.namespace, n.name, n.config);
      const uid = String(opts.k8s.getPod(ns, podName)?.metadata.uid ?? '');
      cniArgs = `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${podName};K8S_POD_INFRA_CONTAINER_ID=${s.containerId};K8S_POD_UID=${uid}`;
    }
    const env = (command: string): NodeJS.ProcessEnv => ({
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      TMPDIR: '/tmp',
      CNI_COMMAND: command,
      CNI_CONTAINERID: s.containerId,
      CNI_NETNS: s.podPath,
      CNI_IFNAME: v.header.ifname ?? 'eth0',
      CNI_PATH: impl === 'go' ? GO_DIR : cniPath,
      ...(cniArgs ? { CNI_ARGS: cniArgs } : {}),
    });
    // cni-kit's binaries first; a plugin cni-kit lacks (portmap) from a directory that holds only
    // the Go one, so a delegating plugin cannot pick up any other Go plugin by accident.
    let cniPath = BIN_DIR.replace(/\/$/, '');
    if (v.goPlugins.length) {
      for (const t of v.goPlugins) s.link(`/run/cni-go-plugins/${t}`, join(GO_DIR, t));
      cniPath += ':/run/cni-go-plugins';
    }
    const before = await s.snapshot();
    const plugins = steps(v);
    const call = async (command: string, step: PluginStep, prev: Json | undefined) => {
      const [file, args] = opts.command?.(step.type) ?? [binFor(v, impl, step.type), []];
      const out = await s.exec(file, args, env(command), stdinFor(v, step, prev));
      run.log.push(`${command} ${step.type}: ${said(out)}`);
      return out;
    };

    // ADD: each plugin of a list gets the previous plugin's result, as libcni does. `expect:
    // refused <field>` wants a CNI error naming the field; `refused-or-ok <field>` allows that
    // error instead of success (the reference itself refuses the docs' value, see the header).
    const [expectKind, expectField = ''] = (v.header.expect ?? '').split(' ');
    let result: Json | undefined;
    let added = true;
    let refused = false;
    for (const step of plugins) {
      const out = await call('ADD', step, result);
      if (out.exitCode !== 0) {
        added = false;
        if (expectKind === 'refused' || expectKind === 'refused-or-ok') {
          refused = true;
          const parsed = parseSingleJson(out.stdout);
          const text = 'value' in parsed ? JSON.stringify(parsed.value) : out.stdout;
          if (!('value' in parsed) || !isObj(parsed.value) || typeof parsed.value.code !== 'number')
            run.problems.push(`ADD refused, but stdout is not a CNI error: ${out.stdout.slice(0, 200)}`);
          else if (!text.includes(expectField))
            run.problems.push(`ADD refused without naming ${expectField}: ${text}`);
        } else run.problems.push(`ADD ${step.type} failed: ${said(out)}`);
        break;
      }
      const parsed = parseSingleJson(out.stdout);
      if (!('value' in parsed)) {
        run.problems.push(`ADD ${step.type}: ${parsed.why}`);
        added = false;
        break;
      }
      result = parsed.value;
    }
    if (added && expectKind === 'refused')
      run.problems.push(`ADD succeeded, but ${expectField} must be refused`);
    if (added && result !== undefined) {
      run.result = result;
      for (const p of checkResult(result, version)) run.problems.push(`result (${version}): ${p}`);
      run.problems.push(...(await resultState(s, v, result, version)));
      if (opts.afterAdd) run.problems.push(...(await opts.afterAdd(s, result, impl)));
      if (versionAtLeast(version, '0.4.0')) {
        for (const step of plugins) {
          const out = await call('CHECK', step, result);
          if (out.exitCode !== 0) run.problems.push(`CHECK ${step.type} failed: ${said(out)}`);
        }
      } else run.log.push(`CHECK not run: ${version} has no CHECK (spec >= 0.4.0)`);
    }
    // DEL in reverse order; from 0.4.0 on each plugin gets the ADD result as prevResult.
    const prev = versionAtLeast(version, '0.4.0') ? result : undefined;
    for (const round of ['DEL', 'second DEL']) {
      for (const step of [...plugins].reverse()) {
        const out = await call('DEL', step, prev);
        // A config refused as invalid may be refused on DEL too (Go does): only leftovers count.
        if (out.exitCode !== 0 && !refused) run.problems.push(`${round} ${step.type} failed: ${said(out)}`);
      }
    }
    if (opts.afterDel) run.problems.push(...(await opts.afterDel(s, impl)));
    const after = await s.snapshot();
    const shared = new Set(plugins.flatMap((p) => BY_DESIGN_LEFTOVERS.sharedLinks(p.conf)));
    const ctx = { kitLinks: new Set<string>(), sharedLinks: shared, runTag: s.containerId };
    run.problems.push(
      ...diffNetSnapshots(before.node, after.node, ctx).map((p) => `after DEL, node: ${p}`),
      ...diffNetSnapshots(before.pod, after.pod, { ...ctx, sharedLinks: new Set() }).map(
        (p) => `after DEL, pod: ${p}`,
      ),
      ...diffFileSnapshots(before.files, after.files).map(
        (p) => `after DEL: ${p.replace(s.root, '<sandbox>')}`,
      ),
    );
    return run;
  } finally {
    s.close();
  }
}

let memoryBundle: Promise<string> | undefined;

/** test/helpers/vectors-memory.ts bundled once per process (esbuild; cni-kit resolves to src). */
function bundleMemoryRunner(): Promise<string> {
  memoryBundle ??= (async () => {
    const { build } = await import('esbuild');
    const outfile = join(mkdtempSync(join(tmpdir(), 'vec-mem-')), 'vectors-memory.cjs');
    await build({
      entryPoints: [fileURLToPath(new URL('./vectors-memory.ts', import.meta.url))],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      logLevel: 'error',
      external: ['koffi', '@kubernetes/client-node', 'etcd3'],
    });
    return outfile;
  })();
  return memoryBundle;
}

/** Removes the bundle (for the test file's afterAll). */
export async function removeMemoryRunner(): Promise<void> {
  if (!memoryBundle) return;
  const f = await memoryBundle.catch(() => undefined);
  if (f) rmSync(dirname(f), { recursive: true, force: true });
  memoryBundle = undefined;
}

/**
 * Runs a vector in-process on the memory netlink backend (the kernel lacks its link kind), with
 * the same assertions as runVector as far as a simulated kernel allows: a valid result, its
 * interfaces and addresses in the simulated pod, CHECK (>= 0.4.0), two DELs exiting 0, and nothing
 * left in the simulated pod and host nor in the state directories.
 */
export async function runMemoryVector(v: Vector, opts: RunOptions): Promise<VectorRun> {
  const run: VectorRun = {
    problems: [],
    log: [`backend: memory netlink (${v.header.backend ?? ''}); runs in-process, not on this kernel`],
  };
  const version = versionOf(v.config);
  const runner = await bundleMemoryRunner();
  const s = Sandbox.open({ ...v, header: { ...v.header, node: '', pod: '' } }, opts.tag);
  try {
    s.write('/run/vectors-memory.cjs', readFileSync(runner, 'utf8'));
    const before = await s.snapshot();
    const job: MemoryJob = {
      type: String(v.config.type),
      text: v.text,
      version,
      containerId: s.containerId,
      ifname: v.header.ifname ?? 'eth0',
      pod: s.podPath,
      cniPath: BIN_DIR.replace(/\/$/, ''),
    };
    const out = await s.exec(
      process.execPath,
      ['/run/vectors-memory.cjs'],
      { PATH: process.env.PATH ?? '/usr/bin:/bin', TMPDIR: '/tmp' },
      JSON.stringify(job),
      false,
    );
    if (out.exitCode !== 0) {
      run.problems.push(`memory runner failed: ${said(out)}`);
      return run;
    }
    const rep = JSON.parse(out.stdout) as MemoryReport;
    for (const c of rep.calls)
      run.log.push(
        `${c.command} ${job.type}: exit ${c.exitCode}: ${(c.stdout.trim() || c.stderr.trim()).slice(0, 400)}`,
      );
    const [add, ...rest] = rep.calls;
    if (add?.exitCode !== 0)
      run.problems.push(`ADD ${job.type} failed: exit ${add?.exitCode}: ${add?.stdout.trim()}`);
    else {
      const parsed = parseSingleJson(add.stdout);
      if (!('value' in parsed)) run.problems.push(`ADD ${job.type}: ${parsed.why}`);
      else {
        run.result = parsed.value;
        for (const p of checkResult(parsed.value, version)) run.problems.push(`result (${version}): ${p}`);
        run.problems.push(...memoryResultState(parsed.value, version, rep, job));
      }
    }
    for (const c of rest) {
      if (c.exitCode !== 0)
        run.problems.push(`${c.command} ${job.type} failed: exit ${c.exitCode}: ${c.stdout.trim()}`);
    }
    if (!versionAtLeast(version, '0.4.0'))
      run.log.push(`CHECK not run: ${version} has no CHECK (spec >= 0.4.0)`);
    const shared = new Set(BY_DESIGN_LEFTOVERS.sharedLinks(v.config));
    const names = (l: LinkViewLike[]) => l.map((x) => `${x.name} (${x.kind || 'device'})`).sort();
    const hostLeft = names(rep.hostAfterDel.filter((l) => !shared.has(l.name))).filter(
      (n) => !names(rep.hostBefore).includes(n),
    );
    for (const n of hostLeft) run.problems.push(`after DEL, simulated node: link ${n} left behind`);
    for (const l of rep.podAfterDel)
      if (l.name !== 'lo')
        run.problems.push(`after DEL, simulated pod: link ${l.name} (${l.kind}) left behind`);
    const after = await s.snapshot();
    run.problems.push(
      ...diffFileSnapshots(before.files, after.files)
        .filter((p) => !p.endsWith('/vectors-memory.cjs'))
        .map((p) => `after DEL: ${p.replace(s.root, '<sandbox>')}`),
    );
    return run;
  } finally {
    s.close();
  }
}

type LinkViewLike = MemoryReport['podAfterAdd'][number];

function memoryResultState(result: Json, version: string, rep: MemoryReport, job: MemoryJob): string[] {
  if (!isObj(result)) return [];
  const problems: string[] = [];
  const pod = new Map(rep.podAfterAdd.map((l) => [l.name, l]));
  const kind = ({ ipvlan: 'ipvlan', vlan: 'vlan', bridge: 'veth' } as Record<string, string>)[job.type];
  const made = pod.get(job.ifname)?.kind;
  if (kind && made !== undefined && made !== kind)
    problems.push(`${job.ifname} in the simulated pod is a ${made} link, not ${kind}`);
  if (!versionAtLeast(version, '0.3.0')) {
    for (const k of ['ip4', 'ip6']) {
      const b = result[k];
      if (isObj(b) && typeof b.ip === 'string' && !pod.get(job.ifname)?.addresses.includes(b.ip))
        problems.push(`result ${k}.ip ${b.ip} is not on ${job.ifname} in the simulated pod`);
    }
    if (!pod.has(job.ifname)) problems.push(`${job.ifname} is not in the simulated pod`);
    return problems;
  }
  const ifaces = Array.isArray(result.interfaces) ? result.interfaces : [];
  for (const [n, i] of ifaces.entries()) {
    if (!isObj(i) || typeof i.sandbox !== 'string' || i.sandbox === '') continue;
    const link = pod.get(String(i.name));
    if (!link) problems.push(`interface ${String(i.name)} is not in the simulated pod`);
    for (const ip of Array.isArray(result.ips) ? result.ips : []) {
      if (
        isObj(ip) &&
        ip.interface === n &&
        typeof ip.address === 'string' &&
        !link?.addresses.includes(ip.address)
      )
        problems.push(`address ${ip.address} is not on ${String(i.name)} in the simulated pod`);
    }
  }
  return problems;
}
