// Bridge VLAN filtering on a real kernel (the kernel lane): the bridge plugin's `vlan`, `vlanTrunk`
// and `preserveDefaultVlan`, read back with `bridge -j vlan show` and compared with what our netlink
// layer's `bridgeVlans()` parses from the same kernel; the Go bridge 1.1.1 (which has `vlan` and
// keeps the default VLAN, i.e. preserveDefaultVlan true) side by side for `vlan`.
import { linuxNetlink } from 'cni-kit/netlink';
import { afterEach, describe, expect, it } from 'vitest';
import { firstIp, needKernel, Scene, sh } from './lane.js';

let scene: Scene | undefined;
afterEach(() => {
  scene?.dispose();
  scene = undefined;
});

interface Vlan {
  vid: number;
  pvid: boolean;
  untagged: boolean;
}

/** `bridge -j vlan show dev <port>` in the node namespace, one entry per VLAN id. */
function shownVlans(s: Scene, port: string): Vlan[] {
  const out = JSON.parse(
    sh('ip', 'netns', 'exec', s.node, 'bridge', '-j', 'vlan', 'show', 'dev', port),
  ) as Array<{
    ifname: string;
    vlans: Array<{ vlan: number; vlanEnd?: number; flags?: string[] }>;
  }>;
  const vlans: Vlan[] = [];
  for (const v of out.find((e) => e.ifname === port)?.vlans ?? []) {
    for (let vid = v.vlan; vid <= (v.vlanEnd ?? v.vlan); vid++) {
      vlans.push({
        vid,
        pvid: v.flags?.includes('PVID') ?? false,
        untagged: v.flags?.includes('Egress Untagged') ?? false,
      });
    }
  }
  return vlans.sort((a, b) => a.vid - b.vid);
}

/** ADDs one pod and returns the host veth (the bridge port) with its VLANs, shown and parsed. */
async function addPod(s: Scene, impl: 'ours' | 'go', conf: Record<string, unknown>, pod: string) {
  const add = s.call(impl, 'bridge', 'ADD', pod, conf);
  expect(add.status, add.stdout + add.stderr).toBe(0);
  const ifs = (add.json?.interfaces ?? []) as Array<{ name: string }>;
  const port = ifs[1]?.name ?? '';
  const details = JSON.parse(s.nodeIp('-j', '-d', 'link', 'show', String(conf.bridge))) as Array<{
    linkinfo?: { info_data?: { vlan_filtering?: number } };
  }>;
  expect(details[0]?.linkinfo?.info_data?.vlan_filtering).toBe(1);
  const shown = shownVlans(s, port);
  const nl = linuxNetlink({ hostNetns: `/var/run/netns/${s.node}` });
  const parsed = (await nl.open().bridgeVlans(port)).map((v) => ({
    vid: v.vid,
    pvid: v.pvid,
    untagged: v.untagged,
  }));
  expect(parsed.sort((a, b) => a.vid - b.vid)).toEqual(shown);
  return { add, port, shown };
}

const base = (s: Scene, extra: Record<string, unknown>) => ({
  cniVersion: '1.0.0',
  name: `${s.tag}-br`,
  type: 'bridge',
  bridge: 'kbr0',
  ipam: { type: 'host-local', subnet: '10.63.0.0/24', dataDir: `${s.work}/ipam` },
  ...extra,
});

describe('bridge VLAN filtering on the real kernel', () => {
  it('vlan: an access port; preserveDefaultVlan false leaves only the VLAN, true keeps VLAN 1 untagged; the pod reaches its VLAN gateway', async (ctx) => {
    await needKernel(ctx, ['bridge'], { bridgeVlans: true });
    const s = new Scene('kbv');
    scene = s;
    const only = base(s, { vlan: 42, preserveDefaultVlan: false, isGateway: true });
    const a = s.netns('a');
    const r = await addPod(s, 'ours', only, a);
    expect(r.shown).toEqual([{ vid: 42, pvid: true, untagged: true }]);
    expect(s.ping(a, '10.63.0.1')).toBe(0);
    const check = s.call('ours', 'bridge', 'CHECK', a, { ...only, prevResult: r.add.json });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(s.call('ours', 'bridge', 'DEL', a, only).status).toBe(0);
    const keep = base(s, { vlan: 42, preserveDefaultVlan: true });
    const b = s.netns('b');
    const k = await addPod(s, 'ours', keep, b);
    expect(k.shown).toEqual([
      { vid: 1, pvid: false, untagged: true },
      { vid: 42, pvid: true, untagged: true },
    ]);
    expect(s.call('ours', 'bridge', 'DEL', b, keep).status).toBe(0);
    expect(s.nodeIp('-o', 'link', 'show')).not.toContain(k.port);
  });

  it('vlanTrunk: ids and ranges leave tagged, `vlan` stays the native VLAN; CHECK; DEL removes the port', async (ctx) => {
    await needKernel(ctx, ['bridge'], { bridgeVlans: true });
    const s = new Scene('kbt');
    scene = s;
    const conf = base(s, {
      vlan: 42,
      vlanTrunk: [{ id: 101 }, { minID: 200, maxID: 202 }],
      preserveDefaultVlan: false,
    });
    const a = s.netns('a');
    const r = await addPod(s, 'ours', conf, a);
    expect(r.shown).toEqual([
      { vid: 42, pvid: true, untagged: true },
      { vid: 101, pvid: false, untagged: false },
      { vid: 200, pvid: false, untagged: false },
      { vid: 201, pvid: false, untagged: false },
      { vid: 202, pvid: false, untagged: false },
    ]);
    expect(firstIp(r.add.json)).toMatch(/^10\.63\.0\./);
    const check = s.call('ours', 'bridge', 'CHECK', a, { ...conf, prevResult: r.add.json });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    // The kernel is the judge of CHECK: a VLAN removed behind the plugin's back is reported.
    sh('ip', 'netns', 'exec', s.node, 'bridge', 'vlan', 'del', 'dev', r.port, 'vid', '201');
    const drifted = s.call('ours', 'bridge', 'CHECK', a, { ...conf, prevResult: r.add.json });
    expect(drifted.status).not.toBe(0);
    expect(s.call('ours', 'bridge', 'DEL', a, conf).status).toBe(0);
    expect(s.nodeIp('-o', 'link', 'show')).not.toContain(r.port);
  });

  it('vlan: the Go bridge 1.1.1 and ours (preserveDefaultVlan true) leave the same port VLANs', async (ctx) => {
    await needKernel(ctx, ['bridge'], { bridgeVlans: true, go: 'bridge' });
    const s = new Scene('kbg');
    scene = s;
    const seen: Record<string, Vlan[]> = {};
    for (const impl of ['go', 'ours'] as const) {
      const conf = base(s, { vlan: 42, ...(impl === 'ours' ? { preserveDefaultVlan: true } : {}) });
      const pod = s.netns(impl);
      const r = await addPod(s, impl, conf, pod);
      seen[impl] = r.shown;
      expect(s.call(impl, 'bridge', 'DEL', pod, conf).status).toBe(0);
    }
    expect(seen.go).toEqual([
      { vid: 1, pvid: false, untagged: true },
      { vid: 42, pvid: true, untagged: true },
    ]);
    expect(seen.ours).toEqual(seen.go);
  });
});
