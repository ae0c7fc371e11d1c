// Linux-backend specifics, for both engines: /proc/<pid>/ns/net paths (Docker style), what a
// flush costs in child processes (native: none; iproute2: one), kernel errors that name the
// object, the link-kind probe, and host-side sysctl reads without a spawn.
import * as childProcess from 'node:child_process';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type LinuxNetlink, linuxNetlink, NetlinkError, probeLinkKinds } from 'cni-kit/netlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const PID = process.pid;
const isRoot = process.getuid?.() === 0;

/** Counts every child process started in this process while `fn` runs (all spawns go through here). */
async function childrenDuring(fn: () => Promise<void>): Promise<number> {
  const proto = childProcess.ChildProcess.prototype as unknown as { spawn: (...a: unknown[]) => unknown };
  const orig = proto.spawn;
  let n = 0;
  proto.spawn = function (this: unknown, ...a: unknown[]) {
    n++;
    return orig.apply(this, a);
  };
  try {
    await fn();
  } finally {
    proto.spawn = orig;
  }
  return n;
}

describe.each(['native', 'iproute2'] as const)('linux netlink backend (%s engine)', (kernelPath) => {
  let nl: LinuxNetlink;
  let sleeper: ChildProcess | undefined;
  const made: string[] = [];

  const NS = `nlli${PID}${kernelPath[0]}`;
  beforeAll(() => {
    if (!isRoot) return;
    execFileSync('ip', ['netns', 'add', NS]);
    made.push(NS);
    nl = linuxNetlink({ hostNetns: `/var/run/netns/${NS}`, kernelPath });
  });
  afterAll(() => {
    sleeper?.kill();
    for (const n of made) {
      try {
        execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      } catch {}
    }
  });
  const need = (ctx: { skip(m: string): void }) => {
    if (!isRoot) ctx.skip('needs root for network namespaces');
  };

  it('works on a /proc/<pid>/ns/net path', async (ctx) => {
    need(ctx);
    const n = `nllp${PID}${kernelPath[0]}`;
    execFileSync('ip', ['netns', 'add', n]);
    made.push(n);
    sleeper = spawn('ip', ['netns', 'exec', n, 'sleep', '60'], { stdio: 'ignore' });
    // `ip netns exec` execs sleep in place, so the child's pid is the process inside the netns.
    const path = `/proc/${sleeper.pid}/ns/net`;
    for (let i = 0; i < 50 && readFileSync(`/proc/${sleeper.pid}/cmdline`, 'utf8').startsWith('ip'); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await nl.netnsExists(path)).toBe(true);
    await nl.inNetns(path, async (ns) => {
      ns.createLink({ kind: 'bridge', name: 'brp' });
      ns.setSysctl('net/ipv6/conf/brp/accept_ra', 0);
      expect(await ns.getSysctl('net/ipv6/conf/brp/accept_ra')).toBe('0');
    });
    const seen = execFileSync('ip', ['-n', n, '-j', 'link', 'show', 'brp'], { encoding: 'utf8' });
    expect(JSON.parse(seen)[0].ifname).toBe('brp');
  });

  it(`runs a whole container-side configuration in ${kernelPath === 'native' ? 'no child process' : 'one process'}`, async (ctx) => {
    need(ctx);
    const c = await nl.createNetns(`nllc${PID}${kernelPath[0]}`);
    made.push(c.name);
    const before = nl.spawnCount();
    const per = kernelPath === 'native' ? 0 : 1;
    const children = await childrenDuring(() =>
      nl.inNetns(c.path, async (ns) => {
        ns.createLink({ kind: 'veth', name: 'tmp0', peerName: 'vx0' });
        ns.setSysctl('net/ipv4/conf/tmp0/arp_notify', 1);
        ns.renameLink('tmp0', 'eth0');
        ns.addAddress('eth0', '10.66.0.2/24');
        ns.setLink('eth0', { up: true });
        ns.addRoute({ dst: 'default', gw: '10.66.0.1' });
        const l = await ns.getLink('eth0');
        expect(l.up).toBe(true);
      }),
    );
    expect(nl.spawnCount() - before).toBe(per);
    expect(children).toBe(per);
    expect(await nl.open(c.path).getSysctl('net/ipv4/conf/eth0/arp_notify')).toBe('1');
    const again = nl.spawnCount();
    const more = await childrenDuring(() =>
      nl.inNetns(c.path, (ns) => {
        ns.deleteLink('eth0', { missingOk: true });
        ns.deleteLink('eth0', { missingOk: true });
        ns.createLink({ kind: 'bridge', name: 'br9' }, { existsOk: true });
        ns.createLink({ kind: 'bridge', name: 'br9' }, { existsOk: true });
      }),
    );
    expect(nl.spawnCount() - again).toBe(per);
    expect(more).toBe(per);
    expect(await nl.engine()).toBe(kernelPath);
  });

  it('names the operation, the object and the netns in kernel errors', async (ctx) => {
    need(ctx);
    const ns = nl.open();
    ns.createLink({ kind: 'veth', name: 'ea0', peerName: 'ea1' });
    ns.addRoute({ dst: '10.200.0.0/16', gw: '10.201.0.1', dev: 'ea0' });
    const e = (await ns.flush().catch((x: unknown) => x)) as NetlinkError;
    expect(e).toBeInstanceOf(NetlinkError);
    expect(e.message).toContain('add route 10.200.0.0/16 via 10.201.0.1 dev ea0');
    expect(e.message).toContain(nl.hostNetns);
    expect(e.code).toBe(999);
    expect(e.details).toMatch(/gateway/i);
  });

  it('probes link kinds in a throwaway netns and leaves nothing behind', async (ctx) => {
    need(ctx);
    const kinds = await probeLinkKinds();
    expect(kinds.has('veth')).toBe(true);
    expect(kinds.has('bridge')).toBe(true);
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(left).not.toMatch(new RegExp(`cnikit-probe-${PID}-`));
  });

  it('probes tap, tun and vrf as the kernel answers ip tuntap / ip link add', async (ctx) => {
    need(ctx);
    const kinds = await linuxNetlink({ kernelPath }).supportedLinkKinds();
    const probe = `nlpk${PID}${kernelPath[0]}`;
    execFileSync('ip', ['netns', 'add', probe]);
    try {
      const works = (...args: string[]) => {
        try {
          execFileSync('ip', ['-n', probe, ...args], { stdio: 'ignore' });
          return true;
        } catch {
          return false;
        }
      };
      expect(kinds.has('tap')).toBe(works('tuntap', 'add', 'mode', 'tap', 'name', 'pt0'));
      expect(kinds.has('tun')).toBe(works('tuntap', 'add', 'mode', 'tun', 'name', 'pt1'));
      expect(kinds.has('vrf')).toBe(works('link', 'add', 'pv0', 'type', 'vrf', 'table', '9'));
      expect(kinds.has('dummy')).toBe(works('link', 'add', 'pd0', 'type', 'dummy'));
    } finally {
      execFileSync('ip', ['netns', 'del', probe]);
    }
    // Both probes (in-process and one `ip -batch`) agree.
    expect([...(await probeLinkKinds())].sort()).toEqual([...kinds].sort());
  });

  it('reads sysctls of its own netns in-process, without spawning', async (ctx) => {
    need(ctx);
    const own = linuxNetlink({ kernelPath });
    const v = await own.open().getSysctl('net/ipv4/ip_forward');
    expect(v).toBe(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim());
    expect(own.spawnCount()).toBe(0);
  });
});
