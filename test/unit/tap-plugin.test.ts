// tap plugin logic on the in-memory netlink backend, with in-process host-local IPAM. The real
// kernel runs in test/integration/tap-plugin.test.ts.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PluginSpec } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createTapPlugin, type TapConf, type TapSpec } from '../../examples/tap/plugin.js';
import { tapCommands } from '../../examples/tap/selinux.js';
import { failingAtWrite, heldAddresses } from '../helpers/fault-netlink.js';
import { callInProcess } from '../helpers/plugin.js';

const dataDir = mkdtempSync(join(tmpdir(), `tap-plugin-${process.pid}-`));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

let nl: MemoryNetlink;
const NS = '/var/run/netns/c1';
beforeEach(() => {
  nl = memoryNetlink();
  nl.addNetns(NS);
});

async function call(
  plugin: PluginSpec<TapConf>,
  cmd: string,
  conf: object,
  extra: Record<string, string> = {},
) {
  return callInProcess(plugin, cmd, conf, { CNI_NETNS: NS, CNI_IFNAME: 'tap0', ...extra });
}

const base = { cniVersion: '1.1.0', name: 'tp', type: 'tap' };
const tapLink = () => nl.inspect(NS).links.find((l) => l.name === 'tap0');
const names = () => nl.inspect(NS).links.map((l) => l.name);

describe('tap', () => {
  it('L2 ADD: a persistent multi-queue tap with owner, group, MAC and MTU, up; CHECK; DEL twice', async () => {
    const p = createTapPlugin({ netlink: nl });
    const conf = { ...base, multiQueue: true, owner: 1000, group: 100, mac: '02:aa:bb:cc:dd:01', mtu: 1400 };
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(tapLink()).toMatchObject({
      kind: 'tap',
      up: true,
      mtu: 1400,
      mac: '02:aa:bb:cc:dd:01',
      multiQueue: true,
      owner: 1000,
      group: 100,
      persist: true,
    });
    expect(add.json).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'tap0', mac: '02:aa:bb:cc:dd:01', sandbox: NS }],
    });
    expect((await call(p, 'CHECK', { ...conf, prevResult: add.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(names()).toEqual(['lo']);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
  });

  it('L3 ADD configures IPAM addresses and routes; DEL releases them', async () => {
    const p = createTapPlugin({ netlink: nl });
    const conf = {
      ...base,
      ipam: { type: 'host-local', subnet: '10.71.0.0/24', dataDir, routes: [{ dst: '0.0.0.0/0' }] },
    };
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json.ips).toEqual([{ interface: 0, address: '10.71.0.2/24', gateway: '10.71.0.1' }]);
    const addrs = await nl.inNetns(NS, (ns) => ns.addresses({ link: 'tap0' }));
    expect(addrs.map((a) => a.cidr)).toEqual(['10.71.0.2/24']);
    expect(nl.inspect(NS).routes.some((r) => r.dst === '0.0.0.0/0' && r.gw === '10.71.0.1')).toBe(true);
    expect(await nl.inNetns(NS, (ns) => ns.getSysctl('net/ipv4/conf/tap0/arp_notify'))).toBe('1');
    expect((await call(p, 'CHECK', { ...conf, prevResult: add.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(existsSync(join(dataDir, 'tp', '10.71.0.2'))).toBe(false);
    expect(names()).toEqual(['lo']);
  });

  it('IPv6 on a tap with no reader: ADD does not wait for DAD that cannot finish', async () => {
    const p = createTapPlugin({ netlink: nl });
    const conf = {
      ...base,
      ipam: { type: 'host-local', subnet: 'fd71::/64', dataDir, routes: [{ dst: '::/0' }] },
    };
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    // Success with the address still tentative shows ADD did not wait (waiting gives up after 5 s
    // and fails the ADD); no wall-time bound, which a loaded machine can exceed.
    const v6 = await nl.open(NS).addresses({ link: 'tap0', family: 6 });
    expect(v6.find((a) => a.ip === 'fd71::2')?.tentative, JSON.stringify(v6)).toBe(true);
    expect(nl.inspect(NS).routes.some((r) => r.dst === '::/0' && r.gw === 'fd71::1')).toBe(true);
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
  });

  it('enslaves the tap to a bridge in the container; a missing bridge is code 7 and creates nothing', async () => {
    await nl.inNetns(NS, (ns) => ns.createLink({ kind: 'bridge', name: 'br0' }));
    const p = createTapPlugin({ netlink: nl });
    const add = await call(p, 'ADD', { ...base, bridge: 'br0' });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(tapLink()?.master).toBe('br0');
    expect((await call(p, 'CHECK', { ...base, bridge: 'br0', prevResult: add.json })).exitCode).toBe(0);
    await nl.inNetns(NS, (ns) => ns.setLink('tap0', { master: null }));
    const check = await call(p, 'CHECK', { ...base, bridge: 'br0', prevResult: add.json });
    expect(check.json.msg).toContain('master is none, config says bridge br0');
    await call(p, 'DEL', base);
    const missing = await call(p, 'ADD', { ...base, bridge: 'nobr' });
    expect(missing.json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('bridge: link "nobr" not found'),
    });
    expect(names()).toEqual(['lo', 'br0']);
  });

  it('takes the MAC from runtimeConfig, then CNI_ARGS, then the config (the reference order)', async () => {
    const p = createTapPlugin({ netlink: nl });
    const conf = { ...base, mac: '02:00:00:00:00:01' };
    const macOf = async (c: object, args?: string) => {
      const out = await call(p, 'ADD', c, args ? { CNI_ARGS: args } : {});
      expect(out.exitCode, out.stdout).toBe(0);
      await call(p, 'DEL', c);
      return out.json.interfaces[0].mac;
    };
    expect(await macOf(conf)).toBe('02:00:00:00:00:01');
    expect(await macOf(conf, 'MAC=02:00:00:00:00:02')).toBe('02:00:00:00:00:02');
    expect(
      await macOf({ ...conf, runtimeConfig: { mac: '02:00:00:00:00:03' } }, 'MAC=02:00:00:00:00:02'),
    ).toBe('02:00:00:00:00:03');
    const bad = await call(p, 'ADD', conf, { CNI_ARGS: 'MAC=01:00:00:00:00:01' });
    expect(bad.json).toMatchObject({ code: 7, msg: expect.stringContaining('CNI_ARGS MAC') });
  });

  it('refuses selinuxContext with code 7 where SELinux is absent, before creating anything', async () => {
    const p = createTapPlugin({ netlink: nl, selinuxEnabled: () => false });
    for (const key of ['selinuxContext', 'selinuxcontext']) {
      const out = await call(p, 'ADD', { ...base, [key]: 'system_u:system_r:container_t:s0' });
      expect(out.exitCode).toBe(1);
      expect(out.json.code).toBe(7);
      expect(out.json.msg).toContain(
        `${key}: "system_u:system_r:container_t:s0" cannot be applied: SELinux is not enabled`,
      );
      expect(out.json.details).toContain(`remove ${key}`);
    }
    expect(names()).toEqual(['lo']);
  });

  it('with SELinux enabled creates the tap through the labelled creator', async () => {
    const seen: Array<{ netns: string; spec: TapSpec; label: string }> = [];
    const p = createTapPlugin({
      netlink: nl,
      selinuxEnabled: () => true,
      createLabeledTap: async (netns, spec, label) => {
        seen.push({ netns, spec, label });
        await nl.inNetns(netns, (ns) => ns.createLink(spec));
      },
    });
    const out = await call(p, 'ADD', {
      ...base,
      selinuxContext: 'system_u:object_r:tap_t:s0',
      multiQueue: true,
    });
    expect(out.exitCode, out.stdout).toBe(0);
    expect(seen).toEqual([
      {
        netns: NS,
        spec: { kind: 'tap', name: 'tap0', multiQueue: true },
        label: 'system_u:object_r:tap_t:s0',
      },
    ]);
    expect(tapLink()).toMatchObject({ kind: 'tap', up: true });
    expect(tapCommands({ kind: 'tap', name: 't', multiQueue: true, owner: 1, group: 2, mtu: 1400 })).toEqual([
      ['tuntap', 'add', 'mode', 'tap', 'name', 't', 'multi_queue', 'user', '1', 'group', '2'],
      ['link', 'set', 'dev', 't', 'mtu', '1400'],
    ]);
  });

  it('rejects bad fields with code 7 naming them', async () => {
    const p = createTapPlugin({ netlink: nl });
    const cases: Array<[object, string]> = [
      [{ mtu: 65530 }, 'mtu: 65530'],
      [{ owner: -1 }, 'owner'],
      [{ group: 'wheel' }, 'group'],
      [{ multiQueue: 'yes' }, 'multiQueue'],
      [{ mac: 'zz' }, 'mac'],
      [{ bridge: 'a/b' }, 'bridge'],
    ];
    for (const [extra, field] of cases) {
      const out = await call(p, 'ADD', { ...base, ...extra });
      expect(out.json, JSON.stringify(extra)).toMatchObject({ code: 7, msg: expect.stringContaining(field) });
    }
    expect(names()).toEqual(['lo']);
  });

  it('CHECK names multiQueue/owner/group differences and a wrong kind', async () => {
    const p = createTapPlugin({ netlink: nl });
    const conf = { ...base, owner: 1000 };
    const add = await call(p, 'ADD', conf);
    const diff = await call(p, 'CHECK', {
      ...conf,
      owner: 1001,
      group: 5,
      multiQueue: true,
      prevResult: add.json,
    });
    expect(diff.json.msg).toContain('multiQueue is false, config says true');
    expect(diff.json.msg).toContain('owner is 1000, config says 1001');
    expect(diff.json.msg).toContain('group is unset, config says 5');
    await nl.inNetns(NS, (ns) => {
      ns.deleteLink('tap0');
      ns.createLink({ kind: 'dummy', name: 'tap0' });
    });
    const kind = await call(p, 'CHECK', { ...conf, prevResult: add.json });
    expect(kind.json.msg).toContain('not a tap');
    // DEL leaves an interface of another kind alone.
    expect((await call(p, 'DEL', conf)).exitCode).toBe(0);
    expect(names()).toContain('tap0');
  });

  it('undoes the tap when IPAM fails, and DEL succeeds with the netns gone', async () => {
    const p = createTapPlugin({ netlink: nl });
    const out = await call(p, 'ADD', { ...base, ipam: { type: 'host-local' } });
    expect(out.exitCode).toBe(1);
    expect(names()).toEqual(['lo']);
    expect((await call(p, 'DEL', base, { CNI_NETNS: '/var/run/netns/gone' })).exitCode).toBe(0);
  });
});

describe('tap ADD stopped at any write', () => {
  it('leaves no link and no address held, whatever write fails', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(12), fc.boolean(), fc.boolean(), async (failAt, bridge, v6) => {
        const failing = failingAtWrite(failAt);
        nl = failing.nl;
        nl.addNetns(NS);
        if (bridge) await nl.inNetns(NS, (ns) => ns.createLink({ kind: 'bridge', name: 'br0' }));
        const ipamDir = mkdtempSync(join(dataDir, 'p-'));
        const subnet = v6 ? 'fd73::/64' : '10.73.0.0/24';
        const conf = {
          ...base,
          multiQueue: true,
          mtu: 1400,
          ...(bridge ? { bridge: 'br0' } : {}),
          ipam: {
            type: 'host-local',
            subnet,
            dataDir: ipamDir,
            routes: [{ dst: v6 ? '::/0' : '0.0.0.0/0' }],
          },
        };
        const out = await failing.armed(() => call(createTapPlugin({ netlink: nl }), 'ADD', conf));
        if (out.exitCode === 0) return;
        expect(out.stderr).not.toContain('rollback after failed ADD');
        expect(names()).toEqual(bridge ? ['lo', 'br0'] : ['lo']);
        expect(heldAddresses(ipamDir, 'tp')).toEqual([]);
      }),
      { numRuns: 80 },
    );
  });
});
