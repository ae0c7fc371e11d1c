// sbr on the in-memory kernel: a rule and a table per address with the interface's routes moved out
// of main, `table` (rules only), `gateways`, `addSourceHints`, rollback of a failed ADD, DEL that
// removes the rules (and sbr's own tables) and succeeds when the netns or the link is gone.
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { lockFile } from 'cni-kit/ipam';
import { type MemoryNetlink, memoryNetlink, type RouteEntry } from 'cni-kit/netlink';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { addressesOf, createSbrPlugin, routeBelongs } from '../../examples/sbr/plugin.js';

const NS = '/var/run/netns/c1';
let nl: MemoryNetlink;
let failOn: RegExp | undefined;
let locked: string[] = [];

const prevResult = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'net1', sandbox: NS }],
  ips: [
    { address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 0 },
    { address: 'fd01::5/64', gateway: 'fd01::1', interface: 0 },
  ],
  routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.50.0/24', gw: '10.1.0.7' }],
};

beforeEach(async () => {
  failOn = undefined;
  locked = [];
  nl = memoryNetlink({
    hostLinks: [],
    beforeOp: (what) => {
      if (failOn?.test(what)) throw new Error(`injected: ${what}`);
    },
  });
  nl.addNetns(NS);
  await nl.inNetns(undefined, (ns) =>
    ns.createLink({ kind: 'veth', name: 'vh0', peerName: 'net1', peerNetns: NS }),
  );
  // What the main plugin leaves: addresses (with their prefix routes) and the result's routes in main.
  await nl.inNetns(NS, (ns) => {
    ns.setLink('net1', { up: true });
    ns.addAddress('net1', '10.1.0.5/24');
    ns.addAddress('net1', 'fd01::5/64', { noDad: true });
    ns.addRoute({ dst: 'default', gw: '10.1.0.1', dev: 'net1' });
    ns.addRoute({ dst: '192.168.50.0/24', gw: '10.1.0.7', dev: 'net1' });
    ns.addRoute({ dst: 'default', gw: 'fd01::1', dev: 'net1' });
  });
});

async function call(cmd: string, conf: object, netns = NS) {
  const env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: 'c1',
    CNI_NETNS: netns,
    CNI_IFNAME: 'net1',
    CNI_PATH: '/x',
  };
  const plugin = createSbrPlugin({
    netlink: nl,
    lock: async (path, fn) => {
      locked.push(path);
      return fn();
    },
  });
  const out = await runPlugin(plugin, { env, stdin: JSON.stringify(conf) });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

const base = (extra: object = {}) => ({ cniVersion: '1.0.0', name: 'sb', type: 'sbr', prevResult, ...extra });
const view = (r: RouteEntry) =>
  `${r.dst}${r.gw ? ` via ${r.gw}` : ''}${r.src ? ` src ${r.src}` : ''} t${r.table}`;
const state = () =>
  nl.inNetns(NS, async (ns) => {
    const routes: string[] = [];
    for (const table of [254, 100, 101, 102])
      routes.push(...(await ns.routes({ table, dev: 'net1' })).map(view));
    const rules = [...(await ns.rules(4)), ...(await ns.rules(6))]
      .filter((r) => r.src)
      .map((r) => `${r.src}->${r.table}`);
    return { routes, rules };
  });

describe('ADD', () => {
  it('a rule and a table per address, routes moved out of main, a default route via the gateway', async () => {
    const before = await state();
    const r = await call('ADD', base());
    expect(r.exitCode).toBe(0);
    expect(r.json.ips).toEqual(prevResult.ips);
    expect(locked).toEqual([NS]);
    const s = await state();
    expect(s.rules).toEqual(['10.1.0.5/32->100', 'fd01::5/128->101']);
    // Main keeps nothing of net1; the IPv4 table has the IPv4 routes, the prefix routes with neither
    // source nor gateway (IPv6) go to every table, as in the reference.
    expect(s.routes.filter((x) => x.endsWith('t254'))).toEqual([]);
    expect(s.routes.filter((x) => x.endsWith('t100')).sort()).toEqual(
      [
        '0.0.0.0/0 via 10.1.0.1 t100',
        '10.1.0.0/24 src 10.1.0.5 t100',
        '192.168.50.0/24 via 10.1.0.7 t100',
        'fd01::/64 t100',
      ].sort(),
    );
    expect(s.routes.filter((x) => x.endsWith('t101')).sort()).toEqual([
      '::/0 via fd01::1 t101',
      'fd01::/64 t101',
    ]);
    expect(before.rules).toEqual([]);
    // The copied prefix route keeps its protocol.
    const t100 = await nl.inNetns(NS, (ns) => ns.routes({ table: 100, family: 4 }));
    expect(t100.find((x) => x.dst === '10.1.0.0/24')?.protocol).toBe('kernel');
    expect((await call('CHECK', base())).exitCode).toBe(0);
  });

  it('skips tables a rule or a route already uses', async () => {
    await nl.inNetns(NS, (ns) => {
      ns.addRule({ family: 4, src: '10.9.9.9/32', table: 100 });
      ns.addRoute({ dst: '10.8.0.0/16', gw: '10.1.0.1', table: 101 });
    });
    await call('ADD', base());
    expect((await state()).rules.sort()).toEqual([
      '10.1.0.5/32->102',
      '10.9.9.9/32->100',
      'fd01::5/128->103',
    ]);
  });

  it('table: only the rules, into that table; the routes stay where they are', async () => {
    const before = await state();
    await call('ADD', base({ table: 300 }));
    const s = await state();
    expect(s.rules).toEqual(['10.1.0.5/32->300', 'fd01::5/128->300']);
    expect(s.routes).toEqual(before.routes);
    expect((await call('CHECK', base({ table: 300 }))).exitCode).toBe(0);
    expect((await call('CHECK', base({ table: 301 }))).json.msg).toMatch(
      /no source rule for 10\.1\.0\.5\/32, fd01::5\/128 on net1 into table 301/,
    );
  });

  it("gateways replace prevResult's in the tables, one per family", async () => {
    await call('ADD', base({ gateways: ['10.1.0.9'] }));
    const s = await state();
    expect(s.routes).toContain('0.0.0.0/0 via 10.1.0.9 t100');
    expect(s.routes).not.toContain('0.0.0.0/0 via 10.1.0.1 t100');
    expect(s.routes).toContain('::/0 via fd01::1 t101');
  });

  it('addSourceHints: subnet routes stay in main with the address as source; gateway routes leave', async () => {
    await call('ADD', base({ addSourceHints: true }));
    const main = (await state()).routes.filter((x) => x.endsWith('t254'));
    expect(main).toContain('10.1.0.0/24 src 10.1.0.5 t254');
    expect(main).toContain('fd01::/64 src fd01::5 t254');
    expect(main.filter((x) => x.includes(' via '))).toEqual([]);
  });

  it('a failed step undoes the earlier ones: rules gone, main as before, tables empty', async () => {
    const before = await state();
    failOn = /^del route 0\.0\.0\.0\/0 via 10\.1\.0\.1 dev net1$/;
    const r = await call('ADD', base());
    expect(r.exitCode).not.toBe(0);
    expect(r.json.msg).toMatch(/injected/);
    const after = await state();
    expect(after.rules).toEqual([]);
    expect(after.routes.sort()).toEqual(before.routes.sort());
  });

  it('errors: prevResult missing or without addresses (code 7), bad gateways (code 7 naming them)', async () => {
    const { prevResult: _p, ...noPrev } = base();
    expect((await call('ADD', noPrev)).json).toMatchObject({
      code: 7,
      msg: expect.stringMatching(/^prevResult: missing/),
    });
    const noIps = await call('ADD', base({ prevResult: { ...prevResult, ips: [] } }));
    expect(noIps.json).toMatchObject({
      code: 7,
      msg: expect.stringMatching(/^prevResult: has no IP addresses for interface net1/),
    });
    const two = await call('ADD', base({ gateways: ['10.1.0.1', '10.1.0.2'] }));
    expect(two.json).toMatchObject({
      code: 7,
      msg: expect.stringMatching(/^gateways: .*two gateways of one family.*at most one IPv4 and one IPv6/),
    });
    const bad = await call('ADD', base({ gateways: ['10.1.0.300'] }));
    expect(bad.json).toMatchObject({
      code: 7,
      msg: expect.stringMatching(/gateways\[0\]: "10\.1\.0\.300" is not/),
    });
    const table = await call('ADD', base({ table: 0 }));
    expect(table.json).toMatchObject({ code: 7, msg: expect.stringMatching(/^table: 0/) });
    expect((await state()).rules).toEqual([]);
  });
});

describe('DEL', () => {
  it('removes the rules of the interface and empties the tables sbr picked; twice is fine', async () => {
    await nl.inNetns(NS, (ns) => ns.addRule({ family: 4, src: '10.9.9.9/32', table: 50 }));
    const before = await state();
    await call('ADD', base());
    expect((await call('DEL', base())).exitCode).toBe(0);
    const s = await state();
    expect(s.rules).toEqual(['10.9.9.9/32->50']);
    // Main gets its routes back; the tables are empty.
    expect(s.routes.sort()).toEqual(before.routes.sort());
    expect((await call('DEL', base())).exitCode).toBe(0);
  });

  it('the default route ADD added itself (main had none) does not land in main', async () => {
    await nl.inNetns(NS, (ns) => ns.deleteRoute({ dst: 'default', gw: '10.1.0.1', dev: 'net1' }));
    const before = await state();
    await call('ADD', base());
    expect((await state()).routes).toContain('0.0.0.0/0 via 10.1.0.1 t100');
    await call('DEL', base());
    expect((await state()).routes.sort()).toEqual(before.routes.sort());
  });

  it('with table: only that table’s rules go, and the table is left alone', async () => {
    await nl.inNetns(NS, (ns) => ns.addRoute({ dst: '10.7.0.0/16', gw: '10.1.0.1', table: 300 }));
    await call('ADD', base({ table: 300 }));
    await nl.inNetns(NS, (ns) => ns.addRule({ family: 4, src: '10.1.0.5/32', table: 400 }));
    await call('DEL', base({ table: 300 }));
    const s = await state();
    expect(s.rules).toEqual(['10.1.0.5/32->400']);
    expect(await nl.inNetns(NS, (ns) => ns.routes({ table: 300 }))).toHaveLength(1);
  });

  it('succeeds when the link or the netns is gone, without taking the lock of a missing netns', async () => {
    await call('ADD', base());
    await nl.inNetns(NS, (ns) => ns.deleteLink('net1'));
    expect((await call('DEL', base())).exitCode).toBe(0);
    await nl.removeNetns(NS);
    locked = [];
    expect((await call('DEL', base())).exitCode).toBe(0);
    expect((await call('DEL', base(), '')).exitCode).toBe(0);
    expect(locked).toEqual([]);
  });
});

describe('which addresses and routes', () => {
  it("addresses of other interfaces are skipped; an address without an index counts as the interface's", () => {
    const prev = {
      cniVersion: '1.1.0',
      interfaces: [{ name: 'eth0' }, { name: 'net1', sandbox: NS }],
      ips: [
        { address: '10.0.0.1/24', interface: 0 },
        { address: '10.0.1.1/24', interface: 1 },
        { address: '10.0.2.1/24' },
      ],
    };
    expect(addressesOf(prev, 'net1').map((c) => c.address)).toEqual(['10.0.1.1/24', '10.0.2.1/24']);
  });

  it('property: a route moves with an address when its source or gateway is in the subnet, or it has neither', () => {
    fc.assert(
      fc.property(fc.nat(255), fc.nat(255), fc.boolean(), fc.boolean(), (a, b, hasSrc, hasGw) => {
        const r: RouteEntry = {
          family: 4,
          dst: '10.50.0.0/16',
          table: 254,
          scope: 'global',
          type: 'unicast',
        };
        if (hasSrc) r.src = `10.1.${a}.1`;
        if (hasGw) r.gw = `10.1.${b}.1`;
        const expected = (!hasSrc && !hasGw) || (hasSrc && a === 0) || (hasGw && b === 0);
        expect(routeBelongs(r, '10.1.0.5/24')).toBe(expected);
      }),
    );
  });
});

describe('the netns lock (lockFile with create: false)', () => {
  it('locks a file it may only read, and creates nothing when the file is missing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbr-lock-'));
    try {
      const file = join(dir, 'netns');
      writeFileSync(file, '');
      chmodSync(file, 0o444);
      const held = await lockFile(file, { create: false });
      // A second holder waits, then times out (code 11): the first one really holds it.
      await expect(lockFile(file, { create: false, timeoutMs: 50 })).rejects.toMatchObject({ code: 11 });
      held.release();
      (await lockFile(file, { create: false })).release();
      const missing = join(dir, 'gone', 'netns');
      await expect(lockFile(missing, { create: false })).rejects.toMatchObject({ code: 'ENOENT' });
      expect(existsSync(join(dir, 'gone'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
