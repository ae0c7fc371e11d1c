// vlan on a real kernel (the kernel lane), for our plugin and Go's vlan 1.1.1 with the same
// assertions: VLAN 100 and 200 on one master, a pod on each; each pod's eth0 is an 802.1Q link with
// its id and reaches the gateway of its own VLAN (an eth0.<id> on the other end of the wire) and not
// the other's. Then the common Docker macvlan-on-VLAN setup as pods: macvlan over the node's
// eth0.100 / eth0.200 sub-interfaces, tagged on the wire the same way.
import { afterEach, describe, expect, it } from 'vitest';
import { firstIp, needKernel, Scene, sh } from './lane.js';

let scene: Scene | undefined;
afterEach(() => {
  scene?.dispose();
  scene = undefined;
});

/** A node whose eth0 is wired to a "switch" namespace that has a gateway on each VLAN. */
function wiredNode(): { s: Scene; gw: Record<number, string> } {
  const s = new Scene('kvl');
  scene = s;
  const sw = s.netns('switch');
  s.nodeIp('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'uplink', 'netns', sw);
  s.nodeIp('link', 'set', 'eth0', 'up');
  s.swIp(sw, 'link', 'set', 'uplink', 'up');
  const gw: Record<number, string> = {};
  for (const id of [100, 200]) {
    const sub = `10.62.${id - 99}`;
    s.swIp(sw, 'link', 'add', 'link', 'uplink', 'name', `uplink.${id}`, 'type', 'vlan', 'id', String(id));
    s.swIp(sw, 'addr', 'add', `${sub}.1/24`, 'dev', `uplink.${id}`);
    s.swIp(sw, 'link', 'set', `uplink.${id}`, 'up');
    gw[id] = `${sub}.1`;
  }
  // Answer ARP only on the VLAN that holds the address, so a pod cannot reach the other VLAN's gateway.
  sh('ip', 'netns', 'exec', sw, 'sysctl', '-qw', 'net.ipv4.conf.all.arp_ignore=1');
  return { s, gw };
}

const ipamFor = (s: Scene, id: number) => ({
  type: 'host-local',
  subnet: `10.62.${id - 99}.0/24`,
  rangeStart: `10.62.${id - 99}.10`,
  dataDir: `${s.work}/ipam-${id}`,
});

describe.each(['ours', 'go'] as const)('vlan and macvlan-on-VLAN on the real kernel (%s)', (impl) => {
  it('VLAN 100 and 200 on one master: a pod on each reaches its own VLAN only; CHECK; DEL', async (ctx) => {
    await needKernel(ctx, ['vlan'], impl === 'go' ? { go: 'vlan' } : {});
    const { s, gw } = wiredNode();
    const pods: Record<number, string> = { 100: s.netns('p100'), 200: s.netns('p200') };
    const confs: Record<number, object> = {};
    const results: Record<number, Record<string, unknown> | undefined> = {};
    for (const id of [100, 200]) {
      confs[id] = {
        cniVersion: '1.0.0',
        name: `${s.tag}-v${id}`,
        type: 'vlan',
        master: 'eth0',
        vlanId: id,
        ipam: ipamFor(s, id),
      };
      const add = s.call(impl, 'vlan', 'ADD', pods[id]!, confs[id]!);
      expect(add.status, add.stdout + add.stderr).toBe(0);
      results[id] = add.json;
      const l = s.link(pods[id]!);
      expect(l?.linkinfo?.info_kind).toBe('vlan');
      expect(l?.linkinfo?.info_data).toMatchObject({ protocol: '802.1Q', id });
      expect(firstIp(add.json)).toMatch(new RegExp(`^10\\.62\\.${id - 99}\\.`));
    }
    expect(s.ping(pods[100]!, gw[100]!)).toBe(0);
    expect(s.ping(pods[200]!, gw[200]!)).toBe(0);
    // The other VLAN's gateway is not on this pod's segment (no route even when one is forced).
    s.podIp(pods[100]!, 'route', 'add', `${gw[200]}/32`, 'dev', 'eth0');
    expect(s.ping(pods[100]!, gw[200]!)).not.toBe(0);
    const check = s.call(impl, 'vlan', 'CHECK', pods[100]!, { ...confs[100]!, prevResult: results[100] });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    for (const id of [100, 200]) {
      const del = s.call(impl, 'vlan', 'DEL', pods[id]!, confs[id]!);
      expect(del.status, del.stdout + del.stderr).toBe(0);
      expect(s.link(pods[id]!)).toBeUndefined();
    }
    expect(s.call(impl, 'vlan', 'DEL', pods[100]!, confs[100]!).status).toBe(0);
    expect(s.nodeIp('-j', 'link', 'show', 'eth0')).toContain('"UP"');
  });

  it('macvlan over eth0.100 and eth0.200 (the Docker macvlan-on-VLAN setup): each pod tagged on its VLAN', async (ctx) => {
    await needKernel(ctx, ['vlan', 'macvlan'], impl === 'go' ? { go: 'macvlan' } : {});
    const { s, gw } = wiredNode();
    for (const id of [100, 200]) {
      s.nodeIp('link', 'add', 'link', 'eth0', 'name', `eth0.${id}`, 'type', 'vlan', 'id', String(id));
      s.nodeIp('link', 'set', `eth0.${id}`, 'up');
    }
    for (const id of [100, 200]) {
      const pod = s.netns(`m${id}`);
      const conf = {
        cniVersion: '1.0.0',
        name: `${s.tag}-m${id}`,
        type: 'macvlan',
        master: `eth0.${id}`,
        mode: 'bridge',
        ipam: ipamFor(s, id),
      };
      const add = s.call(impl, 'macvlan', 'ADD', pod, conf);
      expect(add.status, add.stdout + add.stderr).toBe(0);
      expect(s.link(pod)?.linkinfo?.info_kind).toBe('macvlan');
      expect(s.ping(pod, gw[id]!)).toBe(0);
      const del = s.call(impl, 'macvlan', 'DEL', pod, conf);
      expect(del.status, del.stdout + del.stderr).toBe(0);
      expect(s.link(pod)).toBeUndefined();
    }
    // The sub-interfaces are the node's and stay.
    expect(s.nodeIp('-o', 'link', 'show', 'eth0.100')).toContain('eth0.100@eth0');
  });
});
