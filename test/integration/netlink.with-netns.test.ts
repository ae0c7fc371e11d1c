// withNetns: the netns-entry primitive of the native engine, as users call it. The thread really
// is in the target netns while fn runs (its /proc/thread-self/ns/net names the target's inode),
// and is back in its own however fn ends; bad paths and async callbacks are refused clearly.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linuxNetlink, NetlinkError, withNetns } from 'cni-kit/netlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const PID = process.pid;
const NS = `nlwn${PID}`;
const PATH = `/var/run/netns/${NS}`;
const isRoot = process.getuid?.() === 0;
const here = () => readlinkSync('/proc/thread-self/ns/net');
let dir = '';

beforeAll(() => {
  if (!isRoot) return;
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  dir = mkdtempSync(join(tmpdir(), `cnikit-withnetns-${PID}-`));
});
afterAll(() => {
  spawnSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('withNetns', () => {
  it('runs fn inside the netns, returns its value, and comes back', async (ctx) => {
    if (!isRoot) ctx.skip('needs root for network namespaces');
    const own = here();
    const out = await withNetns(PATH, () => ({
      ns: here(),
      forward: readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(),
    }));
    expect(out.ns).toBe(`net:[${statSync(PATH).ino}]`);
    expect(out.forward).toBe('1');
    expect(here()).toBe(own);
  });

  it('comes back when fn throws, and refuses an async fn after coming back', async (ctx) => {
    if (!isRoot) ctx.skip('needs root for network namespaces');
    const own = here();
    await expect(
      withNetns(PATH, () => {
        throw new Error('inside');
      }),
    ).rejects.toThrow('inside');
    expect(here()).toBe(own);
    await expect(withNetns(PATH, async () => 1)).rejects.toThrow(/must be synchronous/);
    expect(here()).toBe(own);
  });

  it('refuses a missing path and a file that is not a netns with ENOENT naming the path', async (ctx) => {
    if (!isRoot) ctx.skip('needs root for network namespaces');
    const plain = join(dir, 'not-a-netns');
    writeFileSync(plain, '');
    for (const p of [`/var/run/netns/${NS}-missing`, plain]) {
      const e = await withNetns(p, () => 1).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NetlinkError);
      expect((e as NetlinkError).errno).toBe('ENOENT');
      expect((e as NetlinkError).message).toContain(p);
    }
  });

  it('creates and removes named namespaces in-process that iproute2 sees', async (ctx) => {
    if (!isRoot) ctx.skip('needs root for network namespaces');
    const nl = linuxNetlink({ kernelPath: 'native' });
    const ns = await nl.createNetns(`nlwc${PID}`);
    try {
      expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).toContain(`nlwc${PID}`);
      const lo = execFileSync('ip', ['-n', ns.name, '-j', 'link', 'show', 'lo'], { encoding: 'utf8' });
      expect(JSON.parse(lo)[0].ifname).toBe('lo');
      expect(await withNetns(ns.path, here)).not.toBe(here());
      expect((await nl.createNetns(ns.name).catch((x: unknown) => x)) as NetlinkError).toMatchObject({
        errno: 'EEXIST',
      });
    } finally {
      await ns.remove();
    }
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(`nlwc${PID}`);
    await ns.remove();
  });
});
