// Issue 11 item 2 through dist/bin/whereabouts as a runtime execs it: the most common NAD,
// {"type": "whereabouts", "range": ...}, takes its store from whereabouts' flat file at
// /etc/cni/net.d/whereabouts.d/whereabouts.conf (the installer's content, its kubeconfig pointing at
// the in-process API server) and allocates cluster-wide in IPPools; without a flat file it fails
// naming the file and the fields, and allocates nothing anywhere. The flat file is supplied in a
// private mount namespace (test/helpers/whereabouts-flat.ts), never written to the machine's /etc.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeK8sPerFile } from '../helpers/fake-k8s-file.js';
import { BIN_DIR } from '../helpers/plugin.js';
import { flatDir, flatMountPoint, runWithFlatFile } from '../helpers/whereabouts-flat.js';

const bin = join(BIN_DIR, 'whereabouts');
const mount = flatMountPoint();
const k8s = fakeK8sPerFile('wbflatbin', { tls: false });

/** The most common NetworkAttachmentDefinition config, verbatim from whereabouts' README. */
const NAD = {
  cniVersion: '0.3.1',
  name: 'whereabouts-conf',
  type: 'macvlan',
  master: 'eth0',
  mode: 'bridge',
  ipam: { type: 'whereabouts', range: '192.168.2.0/24' },
};

const env = (cmd: string, id: string): Record<string, string> => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: id,
  CNI_NETNS: '/proc/self/ns/net',
  CNI_IFNAME: 'net1',
  CNI_PATH: BIN_DIR,
  CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-${id}`,
});

let n = 0;
async function call(cmd: string, id: string, flat: unknown, conf: object = NAD) {
  if ('skip' in mount) throw new Error(mount.skip);
  const root = join(k8s.dir, `m${n++}`);
  const r = await runWithFlatFile(bin, env(cmd, id), JSON.stringify(conf), {
    source: flatDir(root, flat, mount),
    target: mount.target,
  });
  let out: Record<string, unknown> = {};
  if (r.stdout.trim()) out = JSON.parse(r.stdout) as Record<string, unknown>;
  return { ...r, out };
}

describe('dist/bin/whereabouts and the flat file', () => {
  it('no flat file and no kubeconfig: ADD fails with code 7 naming the file and the fields, nothing is allocated; DEL exits 0', async (ctx) => {
    if ('skip' in mount) ctx.skip(mount.skip);
    if (!existsSync(bin)) ctx.skip('dist/bin/whereabouts is not built');
    const hadDefault = existsSync('/var/lib/cni/whereabouts');
    const add = await call('ADD', 'c-none', undefined);
    expect(add.status).not.toBe(0);
    expect(add.out.code).toBe(7);
    const msg = String(add.out.msg);
    expect(msg).toContain('/etc/cni/net.d/whereabouts.d/whereabouts.conf');
    expect(msg).toContain('kubernetes.kubeconfig');
    expect(msg).toContain('"datastore": "file"');
    expect(add.stdout).not.toMatch(/\n\s+at /);
    // No silent node-local pool.
    expect(existsSync('/var/lib/cni/whereabouts')).toBe(hadDefault);
    const del = await call('DEL', 'c-none', undefined);
    expect(del.status, del.stdout).toBe(0);
  });

  it("the installer's flat file: pods on two nodes get distinct addresses from one IPPool; DEL frees them", async (ctx) => {
    if ('skip' in mount) ctx.skip(mount.skip);
    if (!existsSync(bin)) ctx.skip('dist/bin/whereabouts is not built');
    // Installed as whereabouts' installer writes it; the kubeconfig path lives inside the mount.
    const ns = 'wbflat';
    const kubeconfig = k8s.api.writeKubeconfig(join(k8s.dir, 'whereabouts.kubeconfig'), 'json', ns);
    const flat = {
      datastore: 'kubernetes',
      configuration_path: '/etc/cni/net.d/whereabouts.d',
      kubernetes: { kubeconfig },
      reconciler_cron_expression: '30 4 * * *',
      log_file: join(k8s.dir, 'whereabouts.log'),
      log_level: 'debug',
    };
    // Two ADDs stand for two nodes: each is a separate process with no shared local state.
    const a = await call('ADD', 'node1-pod', flat);
    expect(a.status, a.stdout + a.stderr).toBe(0);
    const b = await call('ADD', 'node2-pod', flat);
    expect(b.status, b.stdout + b.stderr).toBe(0);
    const ipA = (a.out.ips as Array<{ address: string }>)[0]!.address;
    const ipB = (b.out.ips as Array<{ address: string }>)[0]!.address;
    expect(ipA).toMatch(/^192\.168\.2\.\d+\/24$/);
    expect(ipB).not.toBe(ipA);
    const pool = k8s.api.objects('ippools').get(`${ns}/192.168.2.0-24`) as {
      spec: { allocations: Record<string, { id: string; podref: string }> };
    };
    expect(
      Object.values(pool.spec.allocations)
        .map((e) => e.id)
        .sort(),
    ).toEqual(['node1-pod', 'node2-pod']);
    const log = readFileSync(flat.log_file, 'utf8');
    expect(log).toMatch(/\[debug\] ADD: beginning IPAM for ContainerID "node1-pod"/);
    expect(log).toMatch(/\[verbose\] ipam\.reconciler_cron_expression: "30 4 \* \* \*" accepted/);
    for (const id of ['node1-pod', 'node2-pod']) expect((await call('DEL', id, flat)).status).toBe(0);
    const after = k8s.api.objects('ippools').get(`${ns}/192.168.2.0-24`) as typeof pool;
    expect(after.spec.allocations).toEqual({});
  });

  it('a flat file that asks for the file store by name gets it; configuration_path inline wins over the standard place', async (ctx) => {
    if ('skip' in mount) ctx.skip(mount.skip);
    if (!existsSync(bin)) ctx.skip('dist/bin/whereabouts is not built');
    const data = join(k8s.dir, 'filestore');
    const flat = { datastore: 'file', data_dir: data };
    const add = await call('ADD', 'c-file', flat);
    expect(add.status, add.stdout).toBe(0);
    expect(existsSync(join(data, 'spaces'))).toBe(true);
    expect((await call('DEL', 'c-file', flat)).status).toBe(0);
    // An inline configuration_path is read first: its node_slice_size is refused by name (the
    // file store has no node slices).
    const own = join(k8s.dir, 'own.conf');
    writeFileSync(own, JSON.stringify({ datastore: 'file', node_slice_size: '/26' }));
    const refused = await call('ADD', 'c-own', flat, {
      ...NAD,
      ipam: { ...NAD.ipam, configuration_path: own },
    });
    expect(refused.out.code).toBe(7);
    expect(String(refused.out.msg)).toContain('ipam.node_slice_size');
    expect(String(refused.out.msg)).toContain('needs the Kubernetes store');
  });
});
