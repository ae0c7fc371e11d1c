// The tap binary against the real kernel (this one has tun/tap), with both netlink engines: the
// device's flags, owner and group read back through sysfs inside the container netns, IPAM, a
// bridge port, CHECK, DEL; and, natively, the same ioctls `ip tuntap add` makes without a child
// process. Only the container netns is touched: no host links.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { labeledTapCreator } from '../../examples/tap/selinux.js';
import { engineCaller } from '../helpers/engine-call.js';
import { DAEMON_MODE } from '../helpers/mode.js';
import { TestNetnses } from '../helpers/netns.js';
import { BIN_DIR } from '../helpers/plugin.js';

const tag = `tpi${process.pid % 100000}`;
let work: string;
const netnses = new TestNetnses();
let seq = 0;
const hasTun = existsSync('/dev/net/tun');

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
/** A file of /sys/class/net/<dev> as seen from inside `ns` (ip netns exec mounts its own sysfs). */
const sys = (ns: string, dev: string, leaf: string) =>
  execFileSync('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/${leaf}`], {
    encoding: 'utf8',
  }).trim();
const linkJson = (ns: string, dev: string) =>
  (JSON.parse(ip('-d', '-j', '-n', ns, 'link', 'show', dev)) as Array<Record<string, unknown>>)[0]!;
const names = (ns: string) =>
  (JSON.parse(ip('-j', '-n', ns, 'link', 'show')) as Array<{ ifname: string }>).map((l) => l.ifname);

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  if (!hasTun) ctx.skip('this kernel has no tap link kind (no /dev/net/tun)');
}

function container(): { ns: string; path: string } {
  const ns = netnses.add(`${tag}-${++seq}`);
  return { ns, path: `/var/run/netns/${ns}` };
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterAll(() => {
  netnses.removeAll();
  rmSync(work, { recursive: true, force: true });
});

const IFF_TAP = 0x2;
const IFF_MULTI_QUEUE = 0x100;
const IFF_PERSIST = 0x800;
const IFF_NO_PI = 0x1000;

describe.each(['native', 'iproute2'] as const)('tap binary (%s engine)', (engine) => {
  const run = engineCaller({
    type: 'tap',
    engine,
    ifname: 'tap0',
    base: { cniVersion: '1.1.0', name: 'tapnet', type: 'tap' },
    containerId: () => `ctr${seq}`,
  });

  it('L2: a persistent multi-queue tap with owner, group, MAC and MTU; CHECK; DEL twice', (ctx) => {
    need(ctx);
    const c = container();
    const conf = { multiQueue: true, owner: 1234, group: 4321, mac: '02:12:34:56:78:9a', mtu: 1400 };
    const add = run('ADD', c.path, conf);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.json).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'tap0', mac: '02:12:34:56:78:9a', sandbox: c.path }],
    });
    const flags = Number.parseInt(sys(c.ns, 'tap0', 'tun_flags'), 16);
    expect(flags).toBe(IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_PERSIST);
    expect(sys(c.ns, 'tap0', 'owner')).toBe('1234');
    expect(sys(c.ns, 'tap0', 'group')).toBe('4321');
    const l = linkJson(c.ns, 'tap0');
    expect(l).toMatchObject({ mtu: 1400, address: '02:12:34:56:78:9a', linkinfo: { info_kind: 'tun' } });
    expect(l.flags).toContain('UP');
    expect((l.linkinfo as { info_data: object }).info_data).toMatchObject({ type: 'tap', multi_queue: true });
    expect(run('CHECK', c.path, { ...conf, prevResult: add.json }).status).toBe(0);
    // CHECK sees a device that is not what the config says.
    const wrong = run('CHECK', c.path, { ...conf, owner: 99, prevResult: add.json });
    expect(wrong.status).toBe(1);
    expect((wrong.json as { msg: string }).msg).toContain('owner is 1234, config says 99');
    expect(run('DEL', c.path, conf).status).toBe(0);
    expect(names(c.ns)).toEqual(['lo']);
    expect(run('DEL', c.path, conf).status).toBe(0);
  });

  it('without owner and group: anyone with CAP_NET_ADMIN may attach (owner/group -1), single queue', (ctx) => {
    need(ctx);
    const c = container();
    expect(run('ADD', c.path, {}).status).toBe(0);
    expect(Number.parseInt(sys(c.ns, 'tap0', 'tun_flags'), 16)).toBe(IFF_TAP | IFF_NO_PI | IFF_PERSIST);
    expect(sys(c.ns, 'tap0', 'owner')).toBe('-1');
    expect(sys(c.ns, 'tap0', 'group')).toBe('-1');
  });

  it('L3: IPAM addresses and routes on the tap; DEL releases them', (ctx) => {
    need(ctx);
    const c = container();
    const dataDir = join(work, `ipam-${engine}`);
    const ipam = {
      type: 'host-local',
      dataDir,
      ranges: [[{ subnet: '10.72.0.0/24' }], [{ subnet: 'fd72::/64' }]],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
    };
    const add = run('ADD', c.path, { ipam });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    // No reader has the tap open, so IPv6 DAD cannot finish: ADD succeeded with fd72::2 still
    // tentative, so it did not wait for DAD (waiting gives up after 5 s and fails the ADD). This
    // replaces a wall-time bound on the exec, which a loaded machine exceeds.
    const addrs = JSON.parse(ip('-j', '-n', c.ns, 'addr', 'show', 'tap0')) as Array<{
      addr_info: Array<{ local: string; tentative?: boolean }>;
    }>;
    expect(addrs[0]!.addr_info.map((a) => a.local)).toEqual(expect.arrayContaining(['10.72.0.2', 'fd72::2']));
    expect(addrs[0]!.addr_info.find((a) => a.local === 'fd72::2')?.tentative).toBe(true);
    expect(ip('-n', c.ns, 'route', 'show', 'default')).toContain('via 10.72.0.1 dev tap0');
    expect(ip('-n', c.ns, '-6', 'route', 'show', 'default')).toContain('via fd72::1 dev tap0');
    expect(run('CHECK', c.path, { ipam, prevResult: add.json }).status).toBe(0);
    expect(run('DEL', c.path, { ipam }).status).toBe(0);
    expect(readFileSync(join(dataDir, 'tapnet', 'last_reserved_ip.0'), 'utf8')).toBe('10.72.0.2');
    expect(existsSync(join(dataDir, 'tapnet', '10.72.0.2'))).toBe(false);
    expect(names(c.ns)).toEqual(['lo']);
  });

  it('makes the tap a port of a bridge in the container; a missing bridge is code 7 and leaves nothing', (ctx) => {
    need(ctx);
    const c = container();
    ip('-n', c.ns, 'link', 'add', 'br0', 'type', 'bridge');
    const add = run('ADD', c.path, { bridge: 'br0' });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(linkJson(c.ns, 'tap0').master).toBe('br0');
    expect(run('DEL', c.path, { bridge: 'br0' }).status).toBe(0);
    const bad = run('ADD', c.path, { bridge: 'br9' });
    expect(bad.json).toMatchObject({ code: 7, msg: expect.stringContaining('bridge: link "br9" not found') });
    expect(names(c.ns)).toEqual(['lo', 'br0']);
  });

  it('refuses selinuxContext with code 7 where SELinux is not enabled, creating nothing', (ctx) => {
    need(ctx);
    if (existsSync('/sys/fs/selinux/enforce')) ctx.skip('SELinux is enabled on this host');
    const c = container();
    const out = run('ADD', c.path, { selinuxContext: 'system_u:object_r:container_t:s0' });
    expect(out.status).toBe(1);
    expect(out.json).toMatchObject({
      code: 7,
      msg: expect.stringContaining(
        'selinuxContext: "system_u:object_r:container_t:s0" cannot be applied: SELinux is not enabled',
      ),
    });
    expect(out.stderr).not.toMatch(/\n\s+at /);
    expect(names(c.ns)).toEqual(['lo']);
  });

  it('names an existing CNI_IFNAME and leaves it; DEL succeeds with the netns gone', (ctx) => {
    need(ctx);
    const c = container();
    ip('-n', c.ns, 'link', 'add', 'tap0', 'type', 'bridge');
    const out = run('ADD', c.path, {});
    expect(out.status).toBe(1);
    expect((out.json as { msg: string }).msg).toContain('"tap0" already exists');
    expect(linkJson(c.ns, 'tap0').linkinfo).toMatchObject({ info_kind: 'bridge' });
    expect(run('DEL', '/var/run/netns/does-not-exist', {}).status).toBe(0);
  });
});

describe.each(['native', 'iproute2'] as const)('tap binary without /dev/net/tun (%s engine)', (engine) => {
  it('says the tun module is missing, with code 999 and the fix, and creates nothing', (ctx) => {
    need(ctx);
    if (DAEMON_MODE) ctx.skip('the plugin runs inside the daemon in daemon mode');
    const c = container();
    // A private mount namespace hides /dev/net/tun from this one call.
    const r = spawnSync('unshare', ['-m', 'sh', '-c', `mount -t tmpfs none /dev/net && exec ${BIN_DIR}tap`], {
      env: {
        PATH: process.env.PATH ?? '',
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'ctrn',
        CNI_NETNS: c.path,
        CNI_IFNAME: 'tap0',
        CNI_PATH: BIN_DIR,
        CNI_KIT_NETLINK: engine,
      },
      input: JSON.stringify({ cniVersion: '1.1.0', name: 'tapnet', type: 'tap' }),
      encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      code: 999,
      msg: expect.stringContaining('this kernel cannot create tap devices'),
      details: expect.stringContaining('CONFIG_TUN'),
    });
    expect(names(c.ns)).toEqual(['lo']);
  });
});

describe('the SELinux creator (label written for the exec, cleared after)', () => {
  it('runs ip tuntap add in the container netns while the thread carries the label', async (ctx) => {
    need(ctx);
    const c = container();
    // Stand-ins: a file for /proc/thread-self/attr/exec and an `ip` that logs the label it sees.
    const attr = join(work, 'attr-exec');
    writeFileSync(attr, '');
    const log = join(work, 'ip-log');
    const fakeIp = join(work, 'ip');
    const realIp = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p)) ?? 'ip';
    writeFileSync(fakeIp, `#!/bin/sh\necho "$(cat ${attr}) $*" >> ${log}\nexec ${realIp} "$@"\n`);
    chmodSync(fakeIp, 0o755);
    const create = labeledTapCreator({ attrPath: attr, ipPath: fakeIp });
    await create(c.path, { kind: 'tap', name: 'tap0', multiQueue: true, owner: 7, mtu: 1400 }, 'ctx_t:s0');
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual([
      'ctx_t:s0 tuntap add mode tap name tap0 multi_queue user 7',
      'ctx_t:s0 link set dev tap0 mtu 1400',
    ]);
    expect(readFileSync(attr, 'utf8')).toBe('');
    // Made inside the container netns, not here.
    expect(Number.parseInt(sys(c.ns, 'tap0', 'tun_flags'), 16)).toBe(
      IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_PERSIST,
    );
    expect(sys(c.ns, 'tap0', 'owner')).toBe('7');
    expect(spawnSync('ip', ['link', 'show', 'tap0']).status).not.toBe(0);
    // An existing name is EEXIST, and the label is cleared on failure too.
    await expect(create(c.path, { kind: 'tap', name: 'tap0' }, 'ctx_t:s0')).rejects.toMatchObject({
      errno: 'EEXIST',
    });
    expect(readFileSync(attr, 'utf8')).toBe('');
  });
});

describe('tap binary, native engine, under strace', () => {
  const hasStrace = spawnSync('strace', ['-V']).status === 0;
  it('makes the ioctls `ip tuntap add` makes, in its order, and starts no child process', (ctx) => {
    need(ctx);
    if (!hasStrace) ctx.skip('strace is not installed (Debian package strace)');
    if (DAEMON_MODE) ctx.skip('the plugin runs inside the daemon in daemon mode');
    const c = container();
    const trace = (cmd: string, args: string[], env: Record<string, string> = {}, input = '') => {
      const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=execve,ioctl', cmd, ...args], {
        env: { PATH: process.env.PATH ?? '', ...env },
        input,
        encoding: 'utf8',
      });
      return r.stderr.split('\n');
    };
    const ioctls = (lines: string[]) =>
      lines
        .map((l) => /ioctl\(\d+, (TUN\w+), ([^)]*)\)\s*=\s*0/.exec(l))
        .filter((m) => m)
        .map((m) => `${m![1]} ${m![1] === 'TUNSETIFF' ? '' : m![2]}`.trim());
    const theirs = ioctls(
      trace('ip', [
        '-n',
        c.ns,
        'tuntap',
        'add',
        'mode',
        'tap',
        'name',
        'ref0',
        'multi_queue',
        'user',
        '1234',
        'group',
        '4321',
      ]),
    );
    const conf = {
      cniVersion: '1.1.0',
      name: 'tapnet',
      type: 'tap',
      multiQueue: true,
      owner: 1234,
      group: 4321,
    };
    const env = {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'ctrs',
      CNI_NETNS: c.path,
      CNI_IFNAME: 'tap0',
      CNI_PATH: BIN_DIR,
      CNI_KIT_NETLINK: 'native',
    };
    const lines = trace(`${BIN_DIR}tap`, [], env, JSON.stringify(conf));
    expect(ioctls(lines)).toEqual(theirs);
    expect(theirs).toEqual(['TUNSETIFF', 'TUNSETOWNER 0x4d2', 'TUNSETGROUP 0x10e1', 'TUNSETPERSIST 0x1']);
    // The script itself, then node through `#!/usr/bin/env node`: nothing else is exec'd.
    const execs = lines.filter((l) => /execve\(/.test(l) && /= 0$/.test(l.trim()));
    expect(execs.map((l) => /execve\("([^"]+)"/.exec(l)?.[1]?.split('/').pop())).toEqual(['tap', 'node']);
    expect(Number.parseInt(sys(c.ns, 'tap0', 'tun_flags'), 16)).toBe(
      Number.parseInt(sys(c.ns, 'ref0', 'tun_flags'), 16),
    );
  });
});
