// The shared plugin lifecycle helpers of src/netsetup (addWithRollback, checkAttachment, delAttachment,
// ipamPassthrough, resolveMaster, addSubLinkAttachment, inNetnsIfExists) on the in-memory netlink
// backend, through runPlugin as a plugin author would use them, with in-process host-local IPAM.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError, ErrorCode, type PluginSpec } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import {
  addSubLinkAttachment,
  addWithRollback,
  checkAttachment,
  delAttachment,
  inNetnsIfExists,
  ipamPassthrough,
  resolveMaster,
} from 'cni-kit/netsetup';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createMacvlanPlugin, type MacvlanConf } from '../../examples/macvlan/plugin.js';
import { callInProcess } from '../helpers/plugin.js';

const dataDir = mkdtempSync(join(tmpdir(), `plugins-lifecycle-${process.pid}-`));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

let nl: MemoryNetlink;
const NS = `/var/run/netns/lc-${process.pid}`;
beforeEach(() => {
  nl = memoryNetlink({ hostLinks: ['eth0', 'eth1'] });
  nl.addNetns(NS);
});

async function call<C>(plugin: PluginSpec<C>, cmd: string, conf: object, netns = NS) {
  return callInProcess(plugin, cmd, conf, { CNI_NETNS: netns, CNI_IFNAME: 'eth0' });
}

/** The addresses host-local holds for network `name`. */
const held = (name: string): string[] => {
  const dir = join(dataDir, name);
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/.test(f) && f.includes('.')) : [];
};

const ipam = (subnet: string) => ({ type: 'host-local', subnet, dataDir });

describe('addWithRollback', () => {
  it('undoes newest first, logs an undo step that fails and still runs the rest, and keeps the ADD error', async () => {
    const order: string[] = [];
    const plugin: PluginSpec = {
      add: (ctx) =>
        addWithRollback(ctx, 'demo', async (tx) => {
          tx.onRollback(() => order.push('first'));
          tx.onRollback(() => {
            throw new Error('undo broke');
          });
          tx.onRollback(async () => order.push('third'));
          throw new CniError(ErrorCode.TryAgainLater, 'body failed');
        }),
    };
    const out = await call(plugin, 'ADD', { cniVersion: '1.1.0', name: 'lc-a', type: 'demo' });
    expect(out.json).toMatchObject({ code: 11, msg: 'body failed' });
    expect(order).toEqual(['third', 'first']);
    expect(out.stderr).toContain('demo: rollback after failed ADD: Error: undo broke');
  });

  it('runs no undo step when the ADD succeeds', async () => {
    let undone = false;
    const plugin: PluginSpec = {
      add: (ctx) =>
        addWithRollback(ctx, 'demo', async (tx) => {
          tx.onRollback(() => {
            undone = true;
          });
          return { cniVersion: '1.1.0' };
        }),
    };
    expect((await call(plugin, 'ADD', { cniVersion: '1.1.0', name: 'lc-b', type: 'demo' })).exitCode).toBe(0);
    expect(undone).toBe(false);
  });

  it('releases the IPAM addresses when a later step fails, and skips IPAM without an ipam block', async () => {
    let got: string[] | undefined;
    const plugin: PluginSpec = {
      add: (ctx) =>
        addWithRollback(ctx, 'demo', async (tx) => {
          const r = await tx.ipamAdd();
          got = r?.ips?.map((ip) => ip.address);
          // The address is held while the ADD runs.
          expect(held('lc-ipam')).toEqual(r ? ['10.91.0.2'] : []);
          throw new Error('veth failed');
        }),
    };
    const conf = { cniVersion: '1.1.0', name: 'lc-ipam', type: 'demo', ipam: ipam('10.91.0.0/24') };
    const out = await call(plugin, 'ADD', conf);
    expect(out.json).toMatchObject({ code: 999, msg: expect.stringContaining('veth failed') });
    expect(got).toEqual(['10.91.0.2/24']);
    expect(held('lc-ipam')).toEqual([]);
    got = undefined;
    const { ipam: _drop, ...noIpam } = conf;
    expect((await call(plugin, 'ADD', noIpam)).exitCode).toBe(1);
    expect(got).toBeUndefined();
  });
});

describe('addSubLinkAttachment', () => {
  it('deletes the link and releases the address when configuring the interface fails', async () => {
    const p = createMacvlanPlugin({ netlink: nl });
    // The kernel refuses a route through a gateway that is not on-link: the last step of ADD fails.
    const conf = {
      cniVersion: '1.1.0',
      name: 'lc-fail',
      type: 'macvlan',
      master: 'eth0',
      ipam: { ...ipam('10.90.0.0/24'), routes: [{ dst: '10.200.0.0/16', gw: '192.168.250.1' }] },
    };
    const out = await call(p, 'ADD', conf);
    expect(out.exitCode).toBe(1);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
    expect(
      nl
        .inspect()
        .links.map((l) => l.name)
        .sort(),
    ).toEqual(['eth0', 'eth1', 'lo']);
    expect(out.json.msg).toContain('10.200.0.0/16');
    expect(held('lc-fail')).toEqual([]);
  });

  it('brings an L2-only link up with no ips in the result, and passes addresses through without ipam', async () => {
    const plugin: PluginSpec<{ withAddrs?: boolean }> = {
      add: (ctx) =>
        addSubLinkAttachment(
          ctx,
          nl,
          { kind: 'macvlan', parent: 'eth1', mode: 'bridge' },
          ctx.config.withAddrs
            ? {
                addresses: {
                  cniVersion: '1.1.0',
                  ips: [{ address: '10.92.0.5/24' }],
                  routes: [{ dst: '10.93.0.0/16' }],
                },
              }
            : {},
        ),
    };
    const l2 = await call(plugin, 'ADD', { cniVersion: '1.1.0', name: 'lc-l2', type: 'demo' });
    expect(l2.exitCode, l2.stdout).toBe(0);
    expect(l2.json.ips).toBeUndefined();
    expect(nl.inspect(NS).links.find((l) => l.name === 'eth0')).toMatchObject({ kind: 'macvlan', up: true });
    await nl.inNetns(NS, (ns) => ns.deleteLink('eth0'));
    const l3 = await call(plugin, 'ADD', {
      cniVersion: '1.1.0',
      name: 'lc-l3',
      type: 'demo',
      withAddrs: true,
    });
    expect(l3.json.ips).toEqual([{ interface: 0, address: '10.92.0.5/24' }]);
    expect(l3.json.routes).toEqual([{ dst: '10.93.0.0/16' }]);
    const addrs = await nl.inNetns(NS, (ns) => ns.addresses({ link: 'eth0' }));
    expect(addrs.map((a) => a.cidr)).toContain('10.92.0.5/24');
  });
});

describe('resolveMaster', () => {
  it('takes the default route interface, and rejects a missing master or a too large MTU with code 7', async () => {
    await nl.inNetns(undefined, (ns) => {
      ns.addAddress('eth1', '192.0.2.10/24');
      ns.addRoute({ dst: 'default', gw: '192.0.2.1', dev: 'eth1' });
    });
    expect(await resolveMaster(nl, NS, {})).toBe('eth1');
    expect(await resolveMaster(nl, NS, { master: 'eth0', mtu: 1500 })).toBe('eth0');
    await expect(resolveMaster(nl, NS, { master: 'nope0' })).rejects.toMatchObject({
      code: 7,
      message: expect.stringContaining('master: link "nope0" not found'),
    });
    await expect(resolveMaster(nl, NS, { master: 'eth0', mtu: 9000 })).rejects.toMatchObject({
      code: 7,
      message: expect.stringMatching(/mtu: 9000 .* use at most 1500/),
    });
    // linkInContainer looks in the container, which has no eth0.
    await expect(resolveMaster(nl, NS, { master: 'eth0', linkInContainer: true })).rejects.toMatchObject({
      code: 7,
    });
  });
});

describe('checkAttachment', () => {
  const conf = {
    cniVersion: '1.1.0',
    name: 'lc-chk',
    type: 'macvlan',
    master: 'eth0',
    ipam: ipam('10.94.0.0/24'),
  };

  async function added() {
    const p = createMacvlanPlugin({ netlink: nl });
    const add = await call(p, 'ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    return { p, prev: add.json };
  }

  it('needs prevResult and the interface in it (code 7)', async () => {
    const { p, prev } = await added();
    expect((await call(p, 'CHECK', conf)).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('prevResult'),
    });
    const other = { ...prev, interfaces: [{ ...prev.interfaces[0], name: 'net9' }] };
    expect((await call(p, 'CHECK', { ...conf, prevResult: other })).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('no interface eth0'),
    });
    await call(p, 'DEL', conf);
  });

  it('names the difference: kind, MAC, attribute, address, route (code 999)', async () => {
    const { p, prev } = await added();
    const wrongKind: PluginSpec<MacvlanConf> = {
      add: () => ({ cniVersion: '1.1.0' }),
      check: async (ctx) => {
        await checkAttachment(ctx, nl, { kind: 'veth' });
      },
    };
    // Without ipam in the CHECK config, IPAM CHECK (which would object first) stays out of the way.
    const { ipam: _drop, ...live } = conf;
    const cases: Array<[PluginSpec<MacvlanConf>, object, string]> = [
      [wrongKind, { ...live, prevResult: prev }, 'is a macvlan link, not a veth'],
      [
        p,
        {
          ...live,
          prevResult: { ...prev, interfaces: [{ ...prev.interfaces[0], mac: '02:00:00:00:00:99' }] },
        },
        'has MAC',
      ],
      [p, { ...live, mode: 'private', prevResult: prev }, 'has macvlanMode bridge, config says private'],
      [
        p,
        { ...live, prevResult: { ...prev, ips: [{ interface: 0, address: '10.94.0.99/24' }] } },
        'lacks address 10.94.0.99/24',
      ],
      [
        p,
        { ...live, prevResult: { ...prev, routes: [{ dst: '10.99.0.0/16', gw: '10.94.0.1' }] } },
        'route to 10.99.0.0/16',
      ],
    ];
    for (const [plugin, c, msg] of cases) {
      const out = await call(plugin, 'CHECK', c);
      expect(out.json, msg).toMatchObject({ code: 999, msg: expect.stringContaining(msg) });
    }
    // The unchanged prevResult passes; a link gone afterwards is named as missing.
    expect((await call(p, 'CHECK', { ...conf, prevResult: prev })).exitCode).toBe(0);
    await nl.inNetns(NS, (ns) => ns.deleteLink('eth0'));
    expect((await call(p, 'CHECK', { ...conf, prevResult: prev })).json.msg).toContain(
      'is missing (expected a macvlan)',
    );
    await call(p, 'DEL', conf);
  });
});

describe('delAttachment, inNetnsIfExists and ipamPassthrough', () => {
  it('DEL releases IPAM and the link, and succeeds again without the netns', async () => {
    const plugin: PluginSpec = { add: () => ({ cniVersion: '1.1.0' }), del: (ctx) => delAttachment(ctx, nl) };
    const p = createMacvlanPlugin({ netlink: nl });
    const conf = {
      cniVersion: '1.1.0',
      name: 'lc-del',
      type: 'macvlan',
      master: 'eth0',
      ipam: ipam('10.95.0.0/24'),
    };
    expect((await call(p, 'ADD', conf)).exitCode).toBe(0);
    expect(held('lc-del')).toEqual(['10.95.0.2']);
    expect((await call(plugin, 'DEL', conf)).exitCode).toBe(0);
    expect(held('lc-del')).toEqual([]);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
    expect((await call(plugin, 'DEL', conf, '')).exitCode).toBe(0);
    expect((await call(plugin, 'DEL', conf, '/var/run/netns/lc-gone')).exitCode).toBe(0);
  });

  it('inNetnsIfExists runs only in a netns that exists', async () => {
    expect(await inNetnsIfExists(nl, NS, (ns) => ns.findLink('lo').then((l) => l?.name))).toBe('lo');
    expect(await inNetnsIfExists(nl, '', () => 'ran')).toBeUndefined();
    expect(await inNetnsIfExists(nl, '/var/run/netns/lc-gone', () => 'ran')).toBeUndefined();
  });

  it('GC and STATUS pass through to IPAM, and are no-ops without an ipam block', async () => {
    const plugin: PluginSpec = { add: () => ({ cniVersion: '1.1.0' }), ...ipamPassthrough() };
    const p = createMacvlanPlugin({ netlink: nl });
    const conf = {
      cniVersion: '1.1.0',
      name: 'lc-gc',
      type: 'macvlan',
      master: 'eth0',
      ipam: ipam('10.96.0.0/24'),
    };
    expect((await call(p, 'ADD', conf)).exitCode).toBe(0);
    expect((await call(plugin, 'STATUS', conf)).exitCode).toBe(0);
    const keep = { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'ctr1', ifname: 'eth0' }] };
    expect((await call(plugin, 'GC', keep)).exitCode).toBe(0);
    expect(held('lc-gc')).toEqual(['10.96.0.2']);
    expect((await call(plugin, 'GC', { ...conf, 'cni.dev/valid-attachments': [] })).exitCode).toBe(0);
    expect(held('lc-gc')).toEqual([]);
    const { ipam: _drop, ...noIpam } = conf;
    expect((await call(plugin, 'GC', { ...noIpam, 'cni.dev/valid-attachments': [] })).exitCode).toBe(0);
    expect((await call(plugin, 'STATUS', noIpam)).exitCode).toBe(0);
  });
});
