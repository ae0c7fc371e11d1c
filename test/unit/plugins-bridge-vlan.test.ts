// bridge plugin VLANs (vlan, vlanTrunk, preserveDefaultVlan, the VLAN gateway link) on the in-memory
// netlink backend with in-process host-local IPAM; the memory kernel has VLAN filtering unless told not to.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type CniError, runPlugin } from 'cni-kit';
import type { Netlink } from 'cni-kit/netlink';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';
import { vlanConfig } from '../../examples/bridge/vlan.js';
import { bridgeHarness } from '../helpers/bridge-harness.js';

const h = bridgeHarness('plugins-bridge-vlan-unit');

describe('bridge VLANs (memory backend)', () => {
  const vlansOf = (link: string) => h.nl.inNetns(undefined, (ns) => ns.bridgeVlans(link));
  const hostLink = (name: string) => h.nl.inspect().links.find((l) => l.name === name);

  it('vlan: access port (PVID, untagged) on a filtering bridge; gateway on <bridge>.<vlan>; CHECK sees drift', async () => {
    const c = h.conf({ vlan: 100 });
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(hostLink('ubr0')).toMatchObject({ kind: 'bridge', vlanFiltering: true });
    const port = r.interfaces[1].name;
    // preserveDefaultVlan defaults to false (the reference since plugins 1.8): VLAN 1 is gone.
    expect(await vlansOf(port)).toEqual([{ vid: 100, pvid: true, untagged: true }]);
    // The gateway lives on a host veth named after the VLAN, listed last so ips[].interface stays 2.
    expect(r.interfaces.map((i: { name: string }) => i.name)).toEqual(['ubr0', port, 'eth0', 'ubr0.100']);
    expect(r.ips[0]).toMatchObject({ interface: 2, gateway: '10.55.0.1' });
    const gw = hostLink('ubr0.100');
    expect(gw).toMatchObject({ kind: 'veth', up: true, mac: r.interfaces[3].mac });
    expect(gw?.master).toBeUndefined();
    const gwPort = hostLink(h.nl.inspect().links.find((l) => l.index === gw?.parentIndex)?.name ?? '');
    expect(gwPort?.master).toBe('ubr0');
    expect((await vlansOf(gwPort?.name ?? '')).find((v) => v.pvid)).toEqual({
      vid: 100,
      pvid: true,
      untagged: true,
    });
    const addrs = await h.nl.inNetns(undefined, (ns) => ns.addresses());
    expect(addrs.filter((a) => a.cidr === '10.55.0.1/24').map((a) => a.link)).toEqual(['ubr0.100']);

    const chk = await h.call('CHECK', { ...c, prevResult: r });
    expect(chk.exitCode, chk.stdout).toBe(0);
    // A second container on the VLAN shares the gateway link.
    const second = await h.call('ADD', c, '/var/run/netns/c2', 'ctr2');
    expect(second.exitCode, second.stdout).toBe(0);
    expect(h.nl.inspect().links.filter((l) => l.name.startsWith('ubr0.'))).toHaveLength(1);
    expect(h.nl.inspect().links.filter((l) => l.master === 'ubr0')).toHaveLength(3);

    await h.nl.inNetns(undefined, (ns) => ns.addBridgeVlan(port, 1, { pvid: true, untagged: true }));
    const drift = await h.call('CHECK', { ...c, prevResult: r });
    expect(JSON.parse(drift.stdout)).toMatchObject({
      code: 999,
      msg: expect.stringContaining(`port ${port} has VLAN 100 untagged, config wants 100 PVID untagged`),
    });
    await h.nl.inNetns(undefined, (ns) => ns.deleteBridgeVlan(port, 100));
    expect(JSON.parse((await h.call('CHECK', { ...c, prevResult: r })).stdout).msg).toContain(
      `port ${port} is not in VLAN 100`,
    );

    expect((await h.call('DEL', c)).exitCode).toBe(0);
    expect(hostLink(port)).toBeUndefined();
    // The shared gateway link stays, like the bridge.
    expect(hostLink('ubr0.100')).toBeDefined();
  });

  it('preserveDefaultVlan: false leaves only the configured VLANs on the port and the gateway port', async () => {
    const c = h.conf({ vlan: 7, preserveDefaultVlan: false });
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(await vlansOf(r.interfaces[1].name)).toEqual([{ vid: 7, pvid: true, untagged: true }]);
    const gw = hostLink('ubr0.7');
    const gwPort = h.nl.inspect().links.find((l) => l.index === gw?.parentIndex)?.name ?? '';
    expect(await vlansOf(gwPort)).toEqual([{ vid: 7, pvid: true, untagged: true }]);
    expect((await h.call('CHECK', { ...c, prevResult: r })).exitCode).toBe(0);
    await h.nl.inNetns(undefined, (ns) => ns.addBridgeVlan(r.interfaces[1].name, 1));
    expect(JSON.parse((await h.call('CHECK', { ...c, prevResult: r })).stdout).msg).toContain(
      'is also in VLAN 1 tagged, which preserveDefaultVlan: false removes',
    );
  });

  it('preserveDefaultVlan: true keeps the default VLAN untagged, the PVID moves to the access VLAN', async () => {
    const c = h.conf({ vlan: 100, preserveDefaultVlan: true });
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(await vlansOf(r.interfaces[1].name)).toEqual([
      { vid: 1, pvid: false, untagged: true },
      { vid: 100, pvid: true, untagged: true },
    ]);
    expect((await h.call('CHECK', { ...c, prevResult: r })).exitCode).toBe(0);
  });

  it('vlanTrunk: tagged VLANs from ids and ranges, native VLAN 1, gateway stays on the bridge', async () => {
    const c = h.conf({ vlanTrunk: [{ id: 5 }, { minID: 10, maxID: 12 }, { id: 11 }] });
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(hostLink('ubr0')?.vlanFiltering).toBe(true);
    // Without "vlan" the trunk's native VLAN is 1, as in the reference.
    expect(await vlansOf(r.interfaces[1].name)).toEqual([
      { vid: 1, pvid: true, untagged: true },
      ...[5, 10, 11, 12].map((vid) => ({ vid, pvid: false, untagged: false })),
    ]);
    expect(r.interfaces).toHaveLength(3);
    const addrs = await h.nl.inNetns(undefined, (ns) => ns.addresses({ link: 'ubr0' }));
    expect(addrs.map((a) => a.cidr)).toEqual(['10.55.0.1/24']);
    expect((await h.call('CHECK', { ...c, prevResult: r })).exitCode).toBe(0);
    await h.nl.inNetns(undefined, (ns) => ns.deleteBridgeVlan(r.interfaces[1].name, 11));
    expect(JSON.parse((await h.call('CHECK', { ...c, prevResult: r })).stdout).msg).toContain(
      'not in VLAN 11',
    );
  });

  it("vlan with vlanTrunk (the docs' trunk example): native VLAN untagged, trunk tagged, access-only gateway port", async () => {
    const c = h.conf({ vlan: 100, vlanTrunk: [{ id: 101 }, { minID: 200, maxID: 299 }] });
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(hostLink('ubr0')?.vlanFiltering).toBe(true);
    const tagged = [101, ...Array.from({ length: 100 }, (_, i) => 200 + i)];
    expect(await vlansOf(r.interfaces[1].name)).toEqual([
      { vid: 100, pvid: true, untagged: true },
      ...tagged.map((vid) => ({ vid, pvid: false, untagged: false })),
    ]);
    // The gateway is on <bridge>.<vlan>, whose port is an access port of the native VLAN only.
    expect(r.interfaces.map((i: { name: string }) => i.name)).toEqual([
      'ubr0',
      r.interfaces[1].name,
      'eth0',
      'ubr0.100',
    ]);
    const gw = hostLink('ubr0.100');
    const gwPort = h.nl.inspect().links.find((l) => l.index === gw?.parentIndex)?.name ?? '';
    expect(await vlansOf(gwPort)).toEqual([{ vid: 100, pvid: true, untagged: true }]);
    expect((await h.call('CHECK', { ...c, prevResult: r })).exitCode).toBe(0);
    // A trunk VLAN that leaves untagged is drift.
    await h.nl.inNetns(undefined, (ns) => ns.addBridgeVlan(r.interfaces[1].name, 101, { untagged: true }));
    expect(JSON.parse((await h.call('CHECK', { ...c, prevResult: r })).stdout).msg).toContain(
      'has VLAN 101 untagged, config wants 101 tagged',
    );
    expect((await h.call('DEL', c)).exitCode).toBe(0);
    expect(hostLink(r.interfaces[1].name)).toBeUndefined();
  });

  it('vlan inside a vlanTrunk range stays the native VLAN; the L2 docs example (ipam {}) works', async () => {
    const c = {
      cniVersion: '1.0.0',
      name: 'mynet',
      type: 'bridge',
      bridge: 'mynet0',
      vlan: 150,
      vlanTrunk: [{ minID: 148, maxID: 152 }],
      ipam: {},
    };
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(await vlansOf(r.interfaces[1].name)).toEqual(
      [148, 149, 150, 151, 152].map((vid) =>
        vid === 150 ? { vid, pvid: true, untagged: true } : { vid, pvid: false, untagged: false },
      ),
    );
    // L2 only: no gateway link.
    expect(hostLink('mynet0.150')).toBeUndefined();
    expect((await h.call('CHECK', { ...c, prevResult: r })).exitCode).toBe(0);
    expect((await h.call('DEL', c)).exitCode).toBe(0);
  });

  it("property: the port's VLAN table for any vlan / vlanTrunk / preserveDefaultVlan", async () => {
    const vidArb = fc.integer({ min: 1, max: 30 });
    const trunkArb = fc.array(
      fc.oneof(
        vidArb.map((id) => ({ id })),
        fc.tuple(vidArb, fc.integer({ min: 0, max: 4 })).map(([lo, n]) => ({ minID: lo, maxID: lo + n })),
      ),
      { maxLength: 4 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.option(vidArb, { nil: undefined }),
        trunkArb,
        fc.option(fc.boolean(), { nil: undefined }),
        async (vlan, vlanTrunk, preserve) => {
          h.reset();
          const c = h.conf({
            ...(vlan !== undefined ? { vlan } : {}),
            ...(vlanTrunk.length ? { vlanTrunk } : {}),
            ...(preserve !== undefined ? { preserveDefaultVlan: preserve } : {}),
            isGateway: false,
            ipam: {},
          });
          const out = await h.call('ADD', c);
          expect(out.exitCode, out.stdout).toBe(0);
          const port = JSON.parse(out.stdout).interfaces[1].name;
          // The model: the native VLAN (vlan, else 1 on a trunk) is PVID and untagged, the other
          // trunk VLANs tagged; with preserveDefaultVlan the port's starting VLAN 1 stays untagged.
          const trunk = new Set<number>();
          for (const t of vlanTrunk)
            if ('id' in t) trunk.add(t.id);
            else for (let v = t.minID; v <= t.maxID; v++) trunk.add(v);
          const native = vlan ?? (trunk.size ? 1 : undefined);
          const want = new Map<number, { pvid: boolean; untagged: boolean }>();
          if (native === undefined || preserve) want.set(1, { pvid: native === undefined, untagged: true });
          for (const v of trunk) want.set(v, { pvid: false, untagged: false });
          if (native !== undefined) want.set(native, { pvid: true, untagged: true });
          const expected = [...want].sort(([a], [b]) => a - b).map(([vid, f]) => ({ vid, ...f }));
          const got = await vlansOf(port);
          // Without any VLAN config the bridge does no filtering and the port's table is not ours.
          if (native !== undefined) expect(got).toEqual(expected);
          expect(hostLink('ubr0')?.vlanFiltering ?? false).toBe(native !== undefined);
          expect((await h.call('DEL', c)).exitCode).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('rejects bad VLAN config with code 7 naming the field and the fix', async () => {
    for (const [extra, text] of [
      [
        { vlan: 4095 },
        'vlan: 4095 must be an integer from 0 to 4094; use a VLAN ID from 1 to 4094, or 0 for none',
      ],
      [{ vlan: -1 }, 'vlan: -1'],
      [{ vlan: '10' }, 'vlan: "10"'],
      [{ vlanTrunk: [{ id: 0 }] }, 'vlanTrunk[0].id: 0'],
      [{ vlanTrunk: [{ id: 3 }, { minID: 9, maxID: 4 }] }, 'vlanTrunk[1]: minID 9 is greater than maxID 4'],
      [{ vlanTrunk: [{ minID: 9 }] }, 'vlanTrunk[0]: minID is set without maxID'],
      [{ vlanTrunk: [{ maxID: 4095, minID: 1 }] }, 'vlanTrunk[0].maxID: 4095'],
      [{ vlanTrunk: [{}] }, 'vlanTrunk[0]: {} names no VLAN'],
      [{ vlanTrunk: { id: 3 } }, 'vlanTrunk: {"id":3} must be a list; write it as a list like'],
      [{ preserveDefaultVlan: 'no' }, 'preserveDefaultVlan'],
      [{ bridge: 'abcdefghijklm', vlan: 100 }, 'gateway interface named "abcdefghijklm.100"'],
    ] as const) {
      const out = await h.call('ADD', h.conf(extra));
      expect(out.exitCode).toBe(1);
      const e = JSON.parse(out.stdout);
      expect(e, JSON.stringify(extra)).toMatchObject({ code: 7, msg: expect.stringContaining(text) });
    }
    // Without a gateway the long name is fine: no gateway link is needed.
    expect(
      (await h.call('ADD', h.conf({ bridge: 'abcdefghijklm', vlan: 100, isGateway: false }))).exitCode,
    ).toBe(0);
  });

  it('refuses an existing bridge without vlan_filtering and leaves nothing behind', async () => {
    await h.nl.inNetns(undefined, (ns) => ns.createLink({ kind: 'bridge', name: 'ubr0' }));
    const c = h.conf({ vlan: 30 });
    const out = await h.call('ADD', c);
    expect(JSON.parse(out.stdout)).toMatchObject({
      code: 999,
      msg: expect.stringContaining('ubr0 exists without vlan_filtering'),
      details: expect.stringContaining('vlan_filtering 1'),
    });
    expect(h.nl.inspect('/var/run/netns/c1').links.map((l) => l.name)).toEqual(['lo']);
    expect(h.nl.inspect().links.filter((l) => l.kind === 'veth')).toEqual([]);
    // The bridge is checked before IPAM runs, so no address was ever reserved.
    expect(existsSync(join(c.ipam.dataDir, 'ubr'))).toBe(false);
  });

  it('a gateway link that fails half-way is removed, so the next ADD builds a whole one', async () => {
    // Fail the gateway port's VLAN step: the first addBridgeVlan is the container's port, the
    // second the gateway port's, which is turned into one on a link that is not there.
    let seen = 0;
    const flaky: Netlink = Object.create(h.nl, {
      open: {
        value: (path?: string) => {
          const ops = h.nl.open(path);
          return new Proxy(ops, {
            get(target, key) {
              if (key !== 'addBridgeVlan') return Reflect.get(target, key);
              return (link: string, vid: number, o?: object) =>
                target.addBridgeVlan(++seen === 2 ? 'nosuch0' : link, vid, o);
            },
          });
        },
      },
    });
    const c = h.conf({ vlan: 100 });
    const env = {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'ctr1',
      CNI_NETNS: '/var/run/netns/c1',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/x',
    };
    const out = await runPlugin(createBridgePlugin({ netlink: flaky }), { env, stdin: JSON.stringify(c) });
    expect(out.exitCode).toBe(1);
    expect(hostLink('ubr0.100')).toBeUndefined();
    expect(h.nl.inspect().links.filter((l) => l.kind === 'veth')).toEqual([]);
    expect(h.nl.inspect('/var/run/netns/c1').links.map((l) => l.name)).toEqual(['lo']);
    expect(readdirSync(join(c.ipam.dataDir, 'ubr')).filter((f) => /^\d/.test(f))).toEqual([]);
    const ok = await h.call('ADD', c);
    expect(ok.exitCode, ok.stdout).toBe(0);
    const gw = hostLink('ubr0.100');
    const gwPort = h.nl.inspect().links.find((l) => l.index === gw?.parentIndex)?.name ?? '';
    expect((await vlansOf(gwPort)).find((v) => v.pvid)?.vid).toBe(100);
  });

  it('says clearly when the kernel has no bridge VLAN filtering', async () => {
    h.reset({ bridgeVlans: false });
    const out = await h.call('ADD', h.conf({ vlanTrunk: [{ id: 3 }] }));
    expect(JSON.parse(out.stdout)).toMatchObject({
      msg: 'vlanTrunk needs bridge VLAN filtering, which this kernel does not have',
    });
    expect(h.nl.inspect('/var/run/netns/c1').links.map((l) => l.name)).toEqual(['lo']);
    expect(h.nl.inspect().links.filter((l) => l.kind === 'veth')).toEqual([]);
  });

  it('property: the trunk VLAN set is the union of ids and ranges; out-of-range IDs are code 7', () => {
    const vidArb = fc.integer({ min: 1, max: 4094 });
    const item = fc.oneof(
      vidArb.map((id) => ({ id })),
      fc
        .tuple(vidArb, fc.integer({ min: 0, max: 40 }))
        .map(([lo, n]) => ({ minID: lo, maxID: Math.min(lo + n, 4094) })),
    );
    fc.assert(
      fc.property(fc.array(item, { minLength: 1, maxLength: 6 }), (trunk) => {
        const want = new Set<number>();
        for (const t of trunk) {
          if ('id' in t) want.add(t.id);
          else for (let v = t.minID; v <= t.maxID; v++) want.add(v);
        }
        expect(vlanConfig.parse({ vlanTrunk: trunk }).vlanTrunk).toEqual([...want].sort((a, b) => a - b));
      }),
    );
    fc.assert(
      fc.property(fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 4095 })), (bad) => {
        for (const [c, field] of [
          [{ vlan: bad }, 'vlan'],
          [{ vlanTrunk: [{ id: bad }] }, 'vlanTrunk[0].id'],
          [{ vlanTrunk: [{ minID: 1, maxID: bad }] }, 'vlanTrunk[0].maxID'],
        ] as const) {
          const err = (() => {
            try {
              vlanConfig.parse(c);
            } catch (e) {
              return e as CniError;
            }
            throw new Error(`accepted ${JSON.stringify(c)}`);
          })();
          expect(err.code).toBe(7);
          expect(err.message).toContain(`${field}: ${bad}`);
        }
      }),
    );
  });
});
