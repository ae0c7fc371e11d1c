// bridge plugin logic on the in-memory netlink backend with in-process host-local IPAM (VLANs: plugins-bridge-vlan.test.ts).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bridgeHarness } from '../helpers/bridge-harness.js';

const h = bridgeHarness('plugins-bridge-unit');

describe('bridge (memory backend)', () => {
  it('ADD builds bridge + veth, returns the reference layout, CHECK passes, DEL is idempotent', async () => {
    const c = h.conf({ isDefaultGateway: true });
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(r.interfaces.map((i: { name: string }) => i.name)).toEqual([
      'ubr0',
      expect.stringMatching(/^veth[0-9a-f]{8}$/),
      'eth0',
    ]);
    expect(r.interfaces[2].sandbox).toBe('/var/run/netns/c1');
    expect(r.ips).toEqual([{ address: '10.55.0.2/24', gateway: '10.55.0.1', interface: 2 }]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.55.0.1' }]);
    const host = h.nl.inspect();
    const br = host.links.find((l) => l.name === 'ubr0');
    expect(br?.kind).toBe('bridge');
    expect(r.interfaces[0].mac).toBe(br?.mac);
    expect(host.links.find((l) => l.name === r.interfaces[1].name)?.master).toBe('ubr0');
    const gwAddrs = await h.nl.inNetns(undefined, (ns) => ns.addresses({ link: 'ubr0' }));
    expect(gwAddrs.map((a) => a.cidr)).toEqual(['10.55.0.1/24']);
    const ct = h.nl.inspect('/var/run/netns/c1');
    expect(ct.links.find((l) => l.name === 'eth0')?.mac).toBe(r.interfaces[2].mac);
    expect(ct.routes.some((rt) => rt.dst === '0.0.0.0/0' && rt.gw === '10.55.0.1')).toBe(true);

    const chk = await h.call('CHECK', { ...c, prevResult: r });
    expect(chk.exitCode, chk.stdout).toBe(0);
    // CHECK notices a removed address.
    await h.nl.inNetns('/var/run/netns/c1', (ns) => ns.deleteAddress('eth0', '10.55.0.2/24'));
    const bad = await h.call('CHECK', { ...c, prevResult: r });
    expect(bad.exitCode).toBe(1);
    expect(JSON.parse(bad.stdout).msg).toContain('10.55.0.2/24');

    expect((await h.call('DEL', c)).exitCode).toBe(0);
    expect(h.nl.inspect('/var/run/netns/c1').links.map((l) => l.name)).toEqual(['lo']);
    expect(h.nl.inspect().links.some((l) => l.name === r.interfaces[1].name)).toBe(false);
    // The address is free again: the IPAM dir holds no reservation file.
    expect(readdirSync(join(c.ipam.dataDir, 'ubr')).filter((f) => /^\d/.test(f))).toEqual([]);
    expect((await h.call('DEL', c)).exitCode).toBe(0);
    // DEL with the netns gone and no CNI_NETNS succeeds too.
    expect((await h.call('DEL', c, '')).exitCode).toBe(0);
  });

  it.each(['0.3.1', '0.4.0', '1.0.0', '1.1.0'])('speaks cniVersion %s', async (v) => {
    const out = await h.call('ADD', h.conf({}, v));
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(r.cniVersion).toBe(v);
    expect(r.ips[0].interface).toBe(2);
    if (v.startsWith('0.')) expect(r.ips[0].version).toBe('4');
  });

  it('rolls back the veth and the address when ADD fails late', async () => {
    // A different address on the bridge without forceAddress makes the gateway step fail after IPAM.
    await h.nl.inNetns(undefined, (ns) => {
      ns.createLink({ kind: 'bridge', name: 'ubr0' });
      ns.addAddress('ubr0', '192.168.77.1/24');
    });
    const c = h.conf();
    const out = await h.call('ADD', c);
    expect(out.exitCode).toBe(1);
    expect(JSON.parse(out.stdout).msg).toMatch(/192\.168\.77\.1\/24.*10\.55\.0\.1\/24/);
    expect(h.nl.inspect('/var/run/netns/c1').links.map((l) => l.name)).toEqual(['lo']);
    expect(h.nl.inspect().links.filter((l) => l.kind === 'veth')).toEqual([]);
    expect(readdirSync(join(c.ipam.dataDir, 'ubr')).filter((f) => /^\d/.test(f))).toEqual([]);
    // forceAddress replaces the stray address.
    const ok = await h.call('ADD', { ...c, forceAddress: true });
    expect(ok.exitCode, ok.stdout).toBe(0);
    const addrs = await h.nl.inNetns(undefined, (ns) => ns.addresses({ link: 'ubr0' }));
    expect(addrs.map((a) => a.cidr)).toEqual(['10.55.0.1/24']);
  });

  it('refuses a non-bridge link of the bridge name and leaves no veth behind', async () => {
    await h.nl.inNetns(undefined, (ns) => ns.createLink({ kind: 'veth', name: 'ubr0', peerName: 'ubr0p' }));
    const out = await h.call('ADD', h.conf());
    expect(JSON.parse(out.stdout)).toMatchObject({
      code: 7,
      msg: expect.stringContaining('"ubr0" exists but is a veth'),
    });
    expect(h.nl.inspect('/var/run/netns/c1').links.map((l) => l.name)).toEqual(['lo']);
    expect(h.nl.inspect().links.filter((l) => l.name.startsWith('veth'))).toEqual([]);
  });

  it('ipMasq writes one chain per container and DEL removes it by name', async () => {
    const c = h.conf({ ipMasq: true });
    expect((await h.call('ADD', c)).exitCode).toBe(0);
    const restore = h.calls.find((x) => x.cmd === 'iptables-restore');
    expect(restore?.stdin).toMatch(/-A POSTROUTING -s 10\.55\.0\.2\/32 .* -j CNI-[0-9a-f]{24}/);
    expect(restore?.stdin).toMatch(/! -d 224\.0\.0\.0\/4 .* -j MASQUERADE/);
    h.calls = [];
    expect((await h.call('DEL', c)).exitCode).toBe(0);
    // Both backends' rules go, as the reference: the ADD may have used the other one.
    expect(h.calls.map((x) => x.cmd)).toEqual(['iptables-save', 'ip6tables-save', 'nft']);
  });

  it('macspoofchk pins the container MAC on its host veth and DEL removes the chain', async () => {
    const c = h.conf({ macspoofchk: true });
    const out = await h.call('ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const r = JSON.parse(out.stdout);
    const script = h.calls.find((x) => x.cmd === 'nft' && x.stdin)?.stdin ?? '';
    expect(script).toContain(`ether saddr ${r.interfaces[2].mac} return`);
    expect(script).toMatch(new RegExp(`iifname "${r.interfaces[1].name}" jump c-[0-9a-f]{24}`));
    h.calls = [];
    expect((await h.call('DEL', c)).exitCode).toBe(0);
    expect(h.calls.map((x) => x.cmd)).toEqual(['nft']);
  });

  it('rejects bad config with code 7 naming the field', async () => {
    for (const [extra, field] of [
      [{ mtu: 'big' }, 'mtu'],
      [{ bridge: 'a-very-long-bridge-name' }, 'bridge'],
      [{ isGateway: 'yes' }, 'isGateway'],
      [{ args: { cni: { mac: 'zz' } } }, 'args.cni.mac'],
    ] as const) {
      const out = await h.call('ADD', h.conf(extra));
      expect(out.exitCode).toBe(1);
      const e = JSON.parse(out.stdout);
      expect(e.code).toBe(7);
      expect(e.msg).toContain(field);
    }
  });

  it('uses the MAC from runtimeConfig and CNI_ARGS precedence', async () => {
    const out = await h.call('ADD', h.conf({ runtimeConfig: { mac: '0A:58:0A:37:00:09' } }));
    expect(out.exitCode, out.stdout).toBe(0);
    expect(JSON.parse(out.stdout).interfaces[2].mac).toBe('0a:58:0a:37:00:09');
  });
});
