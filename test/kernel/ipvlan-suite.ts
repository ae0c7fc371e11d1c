// ipvlan on a real kernel (the kernel lane): the GKE multus guide's setup, two pods on one ipvlan
// network over the node's NIC, in each mode (l2, l3, l3s), with host-local and with whereabouts (its
// file store), for our plugin and Go's ipvlan 1.1.1 with the same assertions: both pods get an ipvlan
// eth0 in the requested mode on the shared master with their address, reach each other, CHECK
// passes, DEL removes the links and frees the addresses, and a second DEL succeeds.
//
// The three modes of one implementation share one node (its namespace and NIC): under the lane's
// emulation every `ip` call and namespace costs, and a node of its own per case meant a namespace
// and five `ip` calls more in each of them. Each case has its own pods, network name and address store; the master carries
// no ipvlan between cases (the last DEL removes its port, and a case's pods go in its afterEach).
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { firstIp, heldAddresses, needKernel, Scene } from './lane.js';

const modes = ['l2', 'l3', 'l3s'] as const;

/** The cases for one allocator (two files, so that vitest's two workers share the lane's longest part). */
export function ipvlanSuite(ipamType: 'host-local' | 'whereabouts'): void {
  describe.each(['ours', 'go'] as const)(`ipvlan with ${ipamType} on the real kernel (%s)`, (impl) => {
    let scene: Scene | undefined;
    let pods: string[] = [];
    /** The implementation's node, made by its first case: its NIC is one end of a veth pair, both ends up. */
    const node = (): Scene => {
      if (scene) return scene;
      const s = new Scene('kiv');
      scene = s;
      s.nodeIp('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'wire0');
      s.nodeIp('link', 'set', 'eth0', 'up');
      s.nodeIp('link', 'set', 'wire0', 'up');
      return s;
    };
    afterEach(() => {
      for (const p of pods) scene?.dropNetns(p);
      pods = [];
    });
    afterAll(() => {
      scene?.dispose();
      scene = undefined;
    });
    for (const mode of modes) {
      it(`${mode}: two pods over one master reach each other; CHECK; DEL removes the links`, async (ctx) => {
        await needKernel(ctx, ['ipvlan'], impl === 'go' ? { go: 'ipvlan' } : {});
        const s = node();
        const store = join(s.work, `ipam-${mode}`);
        const ipam =
          ipamType === 'host-local'
            ? { type: 'host-local', subnet: '10.61.0.0/24', dataDir: store }
            : { type: 'whereabouts', range: '10.61.0.0/24', datastore: 'file', data_dir: store };
        const conf = {
          cniVersion: '1.0.0',
          name: `${s.tag}-${mode}`,
          type: 'ipvlan',
          master: 'eth0',
          mode,
          ipam,
        };
        pods = [s.netns(`${mode}a`), s.netns(`${mode}b`)];
        const results = pods.map((p) => {
          const add = s.call(impl, 'ipvlan', 'ADD', p, conf);
          expect(add.status, add.stdout + add.stderr).toBe(0);
          return add.json;
        });
        const addrs = results.map(firstIp);
        expect(new Set(addrs).size).toBe(2);
        for (const [i, p] of pods.entries()) {
          const l = s.link(p);
          expect(l?.linkinfo?.info_kind).toBe('ipvlan');
          expect(l?.linkinfo?.info_data?.mode).toBe(mode);
          expect(
            l?.addr_info?.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
          ).toEqual([`${addrs[i]}/24`]);
          const ifs = (results[i]?.interfaces ?? []) as Array<{ name: string; sandbox?: string }>;
          expect(ifs.find((x) => x.name === 'eth0')?.sandbox).toBe(`/var/run/netns/${p}`);
        }
        expect(heldAddresses(store)).toEqual([...addrs].sort());
        expect(s.ping(pods[0]!, addrs[1]!)).toBe(0);
        expect(s.ping(pods[1]!, addrs[0]!)).toBe(0);
        const check = s.call(impl, 'ipvlan', 'CHECK', pods[0]!, { ...conf, prevResult: results[0] });
        expect(check.status, check.stdout + check.stderr).toBe(0);
        for (const p of pods) {
          const del = s.call(impl, 'ipvlan', 'DEL', p, conf);
          expect(del.status, del.stdout + del.stderr).toBe(0);
          expect(s.link(p)).toBeUndefined();
        }
        expect(heldAddresses(store)).toEqual([]);
        // The master is untouched and a repeated DEL succeeds (one mode is enough for that).
        expect(s.nodeIp('-j', 'link', 'show', 'eth0')).toContain('"UP"');
        if (mode === 'l2') expect(s.call(impl, 'ipvlan', 'DEL', pods[0]!, conf).status).toBe(0);
      });
    }
  });
}
