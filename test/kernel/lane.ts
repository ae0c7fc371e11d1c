// Shared by the kernel lane's test files (scripts/kernel-lane.ts runs them in Debian's kernel under
// qemu; run anywhere else they skip with a message naming the link kind the kernel lacks). Every
// test works in a node network namespace of its own: the plugins run there (nsenter), so "the host"
// of a plugin call is that namespace and nothing lands on the machine's interfaces.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LinkKind, linuxNetlink } from 'cni-kit/netlink';
import type { TestContext } from 'vitest';
import { BIN_DIR } from '../helpers/plugin.js';

export const GO_DIR = '/usr/lib/cni';
export const inVm = process.env.CNI_KIT_IN_VM === '1';

let probe: Promise<{ kinds: ReadonlySet<LinkKind>; bridgeVlans: boolean }> | undefined;
async function kernel(): Promise<{ kinds: ReadonlySet<LinkKind>; bridgeVlans: boolean }> {
  probe ??= (async () => {
    const nl = linuxNetlink();
    return { kinds: await nl.supportedLinkKinds(), bridgeVlans: await nl.supportsBridgeVlans() };
  })();
  return probe;
}

/** Skips unless root with iproute2, the given link kinds and (when asked) bridge VLAN filtering. */
export async function needKernel(
  ctx: TestContext,
  kinds: readonly LinkKind[],
  opts: { bridgeVlans?: boolean; go?: string } = {},
): Promise<void> {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  const k = await kernel();
  const lacking = kinds.filter((x) => !k.kinds.has(x));
  if (lacking.length) ctx.skip(`kernel has no ${lacking.join('/')} link type (the kernel lane has it)`);
  if (opts.bridgeVlans && !k.bridgeVlans)
    ctx.skip('kernel has no bridge VLAN filtering (the kernel lane has it)');
  if (opts.go && !existsSync(join(GO_DIR, opts.go))) ctx.skip(`the Go ${opts.go} plugin is not in ${GO_DIR}`);
}

export const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });
export const ip = (...args: string[]): string => sh('ip', ...args);
export const ipj = <T>(...args: string[]): T => JSON.parse(ip('-j', ...args)) as T;

export interface JLink {
  ifname: string;
  address?: string;
  flags?: string[];
  link?: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

export interface Call {
  status: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
}

/**
 * A test's own namespaces and scratch directory; `dispose()` removes them all (afterEach).
 * `impl` picks whose plugin runs: ours from dist/bin, or Go's from /usr/lib/cni with ours after it
 * on CNI_PATH (for the IPAM types Go 1.1.1 lacks, such as whereabouts).
 */
export class Scene {
  readonly tag: string;
  readonly node: string;
  readonly work: string;
  private readonly netnses: string[] = [];

  constructor(prefix: string) {
    this.tag = `${prefix}${process.pid % 100000}${Math.floor(Math.random() * 1000)}`;
    this.work = mkdtempSync(join(tmpdir(), `${this.tag}-`));
    this.node = this.netns('node');
    ip('-n', this.node, 'link', 'set', 'lo', 'up');
  }

  /** Creates a network namespace `<tag>-<suffix>` and returns its name. */
  netns(suffix: string): string {
    const name = `${this.tag}-${suffix}`;
    ip('netns', 'add', name);
    this.netnses.push(name);
    return name;
  }

  /** Removes a namespace `netns()` made (and with it whatever links are in it). */
  dropNetns(name: string): void {
    const i = this.netnses.indexOf(name);
    if (i < 0) return;
    this.netnses.splice(i, 1);
    spawnSync('ip', ['netns', 'del', name]);
  }

  /** `ip` inside the node namespace. */
  nodeIp(...args: string[]): string {
    return ip('-n', this.node, ...args);
  }

  /** `ip` inside another namespace of the scene (a switch, a pod). */
  swIp(netns: string, ...args: string[]): string {
    return ip('-n', netns, ...args);
  }
  podIp(netns: string, ...args: string[]): string {
    return ip('-n', netns, ...args);
  }

  /** Runs a plugin in the node namespace for container `netns` (a name from `netns()`). */
  call(
    impl: 'ours' | 'go',
    type: string,
    cmd: string,
    netns: string,
    conf: object,
    ifname = 'eth0',
    cid = `${netns}-c`,
  ): Call {
    const bin = impl === 'ours' ? join(BIN_DIR, type) : join(GO_DIR, type);
    const path = impl === 'ours' ? BIN_DIR : `${GO_DIR}:${BIN_DIR}`;
    const r = spawnSync('nsenter', [`--net=/run/netns/${this.node}`, bin], {
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: cid,
        CNI_NETNS: `/var/run/netns/${netns}`,
        CNI_IFNAME: ifname,
        CNI_PATH: path,
      },
      input: JSON.stringify(conf),
      encoding: 'utf8',
      timeout: 90_000,
    });
    let json: Record<string, unknown> | undefined;
    try {
      json = r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
    } catch {
      json = undefined;
    }
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, json };
  }

  /** The container's `ifname` as `ip -d -j link` shows it, or undefined when it is gone. */
  link(netns: string, ifname = 'eth0'): JLink | undefined {
    const r = spawnSync('ip', ['-n', netns, '-d', '-j', 'addr', 'show', 'dev', ifname], { encoding: 'utf8' });
    if (r.status !== 0) return undefined;
    return (JSON.parse(r.stdout) as JLink[])[0];
  }

  /** Exit status of one ping from `netns` to `addr`. */
  ping(netns: string, addr: string): number | null {
    return spawnSync('ip', ['netns', 'exec', netns, 'ping', '-c1', '-W3', addr]).status;
  }

  dispose(): void {
    for (const n of this.netnses.reverse()) spawnSync('ip', ['netns', 'del', n]);
    rmSync(this.work, { recursive: true, force: true });
  }
}

/** The first address of a CNI result, without its prefix length. */
export function firstIp(result: Record<string, unknown> | undefined): string {
  const ips = (result?.ips ?? []) as Array<{ address: string }>;
  return ips[0]?.address.split('/')[0] ?? '';
}

/** Addresses an IPAM store under `dir` holds: host-local and whereabouts' file store name a file by each. */
export function heldAddresses(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (/^\d+\.\d+\.\d+\.\d+$/.test(e.name)) out.push(e.name);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort();
}
