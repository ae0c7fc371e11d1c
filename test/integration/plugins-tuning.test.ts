// tuning binaries (ours and, where 1.1.1 has the feature, the Go reference) in real network
// namespaces with the same assertions: args.cni overrides, a failed ADD leaving nothing (F3), JSON
// null (F4), lo's MTU of 65536 (F5), and our sysctl allowlist under a private mount namespace.
// The container interface is a veth whose both ends live in the test's own netns: no host links.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { DAEMON_MODE, pluginDir } from '../helpers/mode.js';
import { execPlugin } from '../helpers/plugin.js';

const tag = `ptu${process.pid % 100000}`;
const GO = '/usr/lib/cni/tuning';
const impls = [
  { impl: 'ours', bin: `${pluginDir()}tuning` },
  ...(existsSync(GO) ? [{ impl: 'go', bin: GO }] : []),
];
let work: string;
const netnses: string[] = [];
let seq = 0;

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
interface JLink {
  ifname: string;
  address: string;
  mtu: number;
  flags: string[];
  txqlen?: number;
}
const linkOf = (ns: string, dev = 'eth0') => {
  const l = (JSON.parse(ip('-j', '-n', ns, 'link', 'show', dev)) as JLink[])[0];
  if (!l) throw new Error(`${dev} missing in ${ns}`);
  return {
    mac: l.address,
    mtu: l.mtu,
    promisc: l.flags.includes('PROMISC'),
    allmulti: l.flags.includes('ALLMULTI'),
    txqlen: l.txqlen,
  };
};
const sysctl = (ns: string, key: string) =>
  execFileSync('ip', ['netns', 'exec', ns, 'cat', `/proc/sys/${key}`], { encoding: 'utf8' }).trim();

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

/** A fresh container netns with eth0 (a veth whose peer stays in the same netns). */
function container(): { ns: string; path: string; dataDir: string } {
  const ns = `${tag}-${++seq}`;
  spawnSync('ip', ['netns', 'del', ns]);
  ip('netns', 'add', ns);
  netnses.push(ns);
  ip('-n', ns, 'link', 'add', 'name', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
  return { ns, path: `/var/run/netns/${ns}`, dataDir: join(work, ns) };
}

const env = (cmd: string, path: string, ifname = 'eth0', extra: Record<string, string> = {}) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: `${tag}-c`,
  CNI_NETNS: path,
  CNI_IFNAME: ifname,
  CNI_PATH: '/usr/lib/cni',
  ...extra,
});
const prev = (path: string, ifname = 'eth0') => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: ifname, sandbox: path }],
});

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterEach(() => {
  for (const n of netnses.splice(0)) spawnSync('ip', ['netns', 'del', n]);
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.each(impls)('tuning ($impl)', ({ bin }) => {
  it('args.cni overrides sysctl, mac, promisc, mtu and allmulti; CHECK; DEL restores', (ctx) => {
    need(ctx);
    const c = container();
    const before = linkOf(c.ns);
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}args`,
      type: 'tuning',
      dataDir: c.dataDir,
      mtu: 1400,
      promisc: false,
      mac: 'c2:00:00:00:00:01',
      sysctl: { 'net.ipv4.conf.eth0.arp_notify': '0', 'net.ipv4.conf.eth0.arp_ignore': '0' },
      args: {
        cni: {
          sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '2' },
          mac: 'c2:00:00:00:00:02',
          promisc: true,
          mtu: 1300,
          allmulti: true,
        },
      },
      prevResult: prev(c.path),
    };
    const add = execPlugin(bin, env('ADD', c.path), JSON.stringify(conf));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(linkOf(c.ns)).toMatchObject({
      mac: 'c2:00:00:00:00:02',
      mtu: 1300,
      promisc: true,
      allmulti: true,
    });
    expect(sysctl(c.ns, 'net/ipv4/conf/eth0/arp_ignore')).toBe('2');
    expect(sysctl(c.ns, 'net/ipv4/conf/eth0/arp_notify')).toBe('0');
    expect((add.json as { interfaces: Array<{ mac: string }> }).interfaces[0]?.mac).toBe('c2:00:00:00:00:02');
    const check = execPlugin(bin, env('CHECK', c.path), JSON.stringify({ ...conf, prevResult: add.json }));
    expect(check.status, check.stdout).toBe(0);
    const del = execPlugin(bin, env('DEL', c.path), JSON.stringify(conf));
    expect(del.status, del.stdout).toBe(0);
    expect(linkOf(c.ns)).toEqual(before);
    expect(existsSync(c.dataDir) ? readdirSync(c.dataDir) : []).toEqual([]);
  });

  it('mac precedence: args.cni > runtimeConfig > CNI_ARGS MAC > the config', (ctx) => {
    need(ctx);
    const c = container();
    const run = (extra: object, args?: string) => {
      const conf = {
        cniVersion: '1.0.0',
        name: `${tag}mac`,
        type: 'tuning',
        dataDir: c.dataDir,
        sysctl: {},
        mac: '02:00:00:00:00:01',
        prevResult: prev(c.path),
        ...extra,
      };
      const e = env('ADD', c.path, 'eth0', args ? { CNI_ARGS: `IgnoreUnknown=1;MAC=${args}` } : {});
      const add = execPlugin(bin, e, JSON.stringify(conf));
      expect(add.status, add.stdout).toBe(0);
      const mac = linkOf(c.ns).mac;
      expect(execPlugin(bin, env('DEL', c.path), JSON.stringify(conf)).status).toBe(0);
      return mac;
    };
    expect(run({})).toBe('02:00:00:00:00:01');
    expect(run({}, '02:00:00:00:00:0e')).toBe('02:00:00:00:00:0e');
    expect(run({ runtimeConfig: { mac: '02:00:00:00:00:0f' } }, '02:00:00:00:00:0e')).toBe(
      '02:00:00:00:00:0f',
    );
    expect(
      run(
        { runtimeConfig: { mac: '02:00:00:00:00:0f' }, args: { cni: { mac: '02:00:00:00:00:0a' } } },
        '02:00:00:00:00:0e',
      ),
    ).toBe('02:00:00:00:00:0a');
  });

  it('F3: an ADD failing on a bad sysctl leaves the link and the backup dir as they were; a retry and DEL restore all', (ctx) => {
    need(ctx);
    const c = container();
    const before = linkOf(c.ns);
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}f3`,
      type: 'tuning',
      dataDir: c.dataDir,
      mtu: 1280,
      mac: 'c2:00:00:00:00:03',
      promisc: true,
      sysctl: { 'net.ipv4.conf.eth0.arp_ignore': 'not-a-number' },
      prevResult: prev(c.path),
    };
    const bad = execPlugin(bin, env('ADD', c.path), JSON.stringify(conf));
    expect(bad.status).not.toBe(0);
    expect(linkOf(c.ns)).toEqual(before);
    expect(existsSync(c.dataDir) ? readdirSync(c.dataDir) : []).toEqual([]);
    const fixed = { ...conf, sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '1' } };
    expect(execPlugin(bin, env('ADD', c.path), JSON.stringify(fixed)).status).toBe(0);
    expect(linkOf(c.ns)).toMatchObject({ mtu: 1280, mac: 'c2:00:00:00:00:03', promisc: true });
    expect(execPlugin(bin, env('DEL', c.path), JSON.stringify(fixed)).status).toBe(0);
    expect(linkOf(c.ns)).toEqual(before);
  });

  it('F4: promisc, allmulti, mtu, mac, txQLen and sysctl null are "not set" on ADD, CHECK and DEL', (ctx) => {
    need(ctx);
    const c = container();
    const before = linkOf(c.ns);
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}f4`,
      type: 'tuning',
      dataDir: c.dataDir,
      promisc: null,
      allmulti: null,
      mtu: null,
      mac: null,
      txQLen: null,
      sysctl: { 'net.ipv4.conf.eth0.arp_notify': '1' },
      args: { cni: { promisc: null, allmulti: null, mtu: null, mac: null } },
      prevResult: prev(c.path),
    };
    const add = execPlugin(bin, env('ADD', c.path), JSON.stringify(conf));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(linkOf(c.ns)).toEqual(before);
    const check = execPlugin(bin, env('CHECK', c.path), JSON.stringify({ ...conf, prevResult: add.json }));
    expect(check.status, check.stdout).toBe(0);
    expect(execPlugin(bin, env('DEL', c.path), JSON.stringify(conf)).status).toBe(0);
    expect(linkOf(c.ns)).toEqual(before);
    expect(existsSync(c.dataDir) ? readdirSync(c.dataDir) : []).toEqual([]);
  });

  it('F5: tuning lo (MTU 65536): DEL puts back the MTU and promisc', async (ctx) => {
    need(ctx);
    const c = container();
    const before = linkOf(c.ns, 'lo');
    expect(before.mtu).toBe(65536);
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}f5`,
      type: 'tuning',
      dataDir: c.dataDir,
      mtu: 1500,
      promisc: true,
      prevResult: prev(c.path, 'lo'),
    };
    const add = execPlugin(bin, env('ADD', c.path, 'lo'), JSON.stringify(conf));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(linkOf(c.ns, 'lo')).toMatchObject({ mtu: 1500, promisc: true });
    const del = execPlugin(bin, env('DEL', c.path, 'lo'), JSON.stringify(conf));
    expect(del.status, del.stdout).toBe(0);
    expect(linkOf(c.ns, 'lo').promisc).toBe(false);
    expect(linkOf(c.ns, 'lo')).toEqual(before);
    expect(readdirSync(c.dataDir)).toEqual([]);
  });
});

describe('tuning (ours only: features Go 1.1.1 lacks)', () => {
  const bin = `${pluginDir()}tuning`;

  it("a MAC for lo is refused with code 7 before anything changes: the kernel takes lo's all-zero MAC back from nobody", (ctx) => {
    need(ctx);
    const c = container();
    const before = linkOf(c.ns, 'lo');
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}lomac`,
      type: 'tuning',
      dataDir: c.dataDir,
      mac: '02:00:00:00:1a:03',
      promisc: true,
      prevResult: prev(c.path, 'lo'),
    };
    const add = execPlugin(bin, env('ADD', c.path, 'lo'), JSON.stringify(conf));
    expect(add.status).not.toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({
      code: 7,
      msg: expect.stringContaining('mac: lo has the MAC address'),
    });
    expect(linkOf(c.ns, 'lo')).toEqual(before);
    expect(existsSync(c.dataDir) ? readdirSync(c.dataDir) : []).toEqual([]);
    expect(execPlugin(bin, env('DEL', c.path, 'lo'), JSON.stringify(conf)).status).toBe(0);
    expect(linkOf(c.ns, 'lo')).toEqual(before);
  });

  it('SIGKILL at points spread over ADD, then DEL: the link is as before and no file is left', async (ctx) => {
    need(ctx);
    for (const delayMs of [0, 100, 150, 180, 200, 220, 240, 260, 290, 330]) {
      const c = container();
      const before = linkOf(c.ns);
      const conf = {
        cniVersion: '1.0.0',
        name: `${tag}kill`,
        type: 'tuning',
        dataDir: c.dataDir,
        mtu: 1280,
        mac: 'c2:00:00:00:00:05',
        promisc: true,
        allmulti: true,
        txQLen: 77,
        sysctl: { 'net.ipv4.conf.eth0.arp_notify': '1' },
        prevResult: prev(c.path),
      };
      const child = spawn(bin, [], { env: env('ADD', c.path), stdio: ['pipe', 'ignore', 'ignore'] });
      child.stdin.on('error', () => {}); // a plugin killed before it read its config
      child.stdin.end(JSON.stringify(conf));
      const done = new Promise((r) => child.on('exit', r));
      await new Promise((r) => setTimeout(r, delayMs));
      child.kill('SIGKILL');
      await done;
      const del = execPlugin(bin, env('DEL', c.path), JSON.stringify(conf));
      expect(del.status, `after a kill at ${delayMs} ms: ${del.stdout}`).toBe(0);
      expect(linkOf(c.ns), `after a kill at ${delayMs} ms`).toEqual(before);
      expect(existsSync(c.dataDir) ? readdirSync(c.dataDir) : []).toEqual([]);
      for (const n of netnses.splice(0)) spawnSync('ip', ['netns', 'del', n]);
    }
  }, 60_000);

  it('txQLen from the config and from args.cni; DEL restores it', (ctx) => {
    need(ctx);
    const c = container();
    const before = linkOf(c.ns);
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}txq`,
      type: 'tuning',
      dataDir: c.dataDir,
      txQLen: 100,
      args: { cni: { txQLen: 321 } },
      prevResult: prev(c.path),
    };
    expect(execPlugin(bin, env('ADD', c.path), JSON.stringify(conf)).status).toBe(0);
    expect(linkOf(c.ns).txqlen).toBe(321);
    expect(execPlugin(bin, env('DEL', c.path), JSON.stringify(conf)).status).toBe(0);
    expect(linkOf(c.ns)).toEqual(before);
  });

  it('F3: the sysctls written before the failing one are put back', (ctx) => {
    need(ctx);
    const c = container();
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}f3b`,
      type: 'tuning',
      dataDir: c.dataDir,
      sysctl: { 'net.ipv4.conf.eth0.arp_notify': '1', 'net.ipv4.conf.eth0.arp_ignore': 'x' },
      prevResult: prev(c.path),
    };
    const bad = execPlugin(bin, env('ADD', c.path), JSON.stringify(conf));
    expect(bad.json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('net.ipv4.conf.eth0.arp_ignore'),
    });
    expect(sysctl(c.ns, 'net/ipv4/conf/eth0/arp_notify')).toBe('0');
  });

  it('the allowlist file (private mount namespace over /etc/cni): names the sysctl and the file', (ctx) => {
    need(ctx);
    if (!existsSync('/etc/cni')) ctx.skip('no /etc/cni to mount a private tmpfs over');
    // The file is mounted for the plugin process only; in daemon mode the daemon, not that process,
    // reads it (test/unit/plugins-tuning.test.ts covers the allowlist in-process).
    if (DAEMON_MODE) ctx.skip('daemon mode: the daemon does not see the private mount of the shim process');
    const c = container();
    const list = join(work, 'allowlist.conf');
    writeFileSync(list, '^net\\.ipv4\\.conf\\.IFNAME\\.arp_.*\n');
    const run = (sysctls: Record<string, string>) => {
      const conf = {
        cniVersion: '1.0.0',
        name: `${tag}allow`,
        type: 'tuning',
        dataDir: c.dataDir,
        sysctl: sysctls,
        prevResult: prev(c.path),
      };
      // unshare gives the plugin its own mount namespace; the machine's /etc is never written.
      const script =
        'mount --make-rprivate / && mount -t tmpfs none /etc/cni && mkdir /etc/cni/tuning && ' +
        `cp ${list} /etc/cni/tuning/allowlist.conf && exec ${bin}`;
      const env2 = { ...env('ADD', c.path), PATH: process.env.PATH ?? '' };
      const r = spawnSync('unshare', ['-m', 'sh', '-c', script], {
        env: env2,
        input: JSON.stringify(conf),
        encoding: 'utf8',
      });
      return {
        status: r.status,
        json: r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined,
      };
    };
    const forward = sysctl(c.ns, 'net/ipv4/ip_forward');
    const denied = run({ 'net.ipv4.ip_forward': forward === '1' ? '0' : '1' });
    expect(denied.status).toBe(1);
    expect(denied.json).toMatchObject({
      code: 7,
      msg: expect.stringMatching(/"net\.ipv4\.ip_forward".*\/etc\/cni\/tuning\/allowlist\.conf/),
    });
    expect(sysctl(c.ns, 'net/ipv4/ip_forward')).toBe(forward);
    expect(run({ 'net.ipv4.conf.IFNAME.arp_notify': '1' }).status).toBe(0);
    expect(sysctl(c.ns, 'net/ipv4/conf/eth0/arp_notify')).toBe('1');
  });
});
