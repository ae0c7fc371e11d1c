// cni-kit's PodResources client against a fake kubelet speaking real gRPC on a Unix socket: List,
// Get, the fallback to List when Get is missing or switched off, and errors that name the socket.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectPodResources, podDeviceIds } from '../../src/k8s/podresources.js';
import { cniRejectionOf } from '../helpers/errors.js';
import { type FakePod, type FakePodResources, startFakePodResources } from '../helpers/fake-podresources.js';

const SRIOV = 'intel.com/sriov_netdevice';
const pods: FakePod[] = [
  {
    name: 'web',
    namespace: 'default',
    containers: [
      {
        name: 'app',
        devices: [
          { resource_name: SRIOV, device_ids: ['0000:03:02.1'], topology: { nodes: [{ ID: 0 }] } },
          { resource_name: 'nvidia.com/gpu', device_ids: ['GPU-1'] },
        ],
        cpu_ids: [2, 3],
      },
      { name: 'sidecar', devices: [{ resource_name: SRIOV, device_ids: ['0000:03:02.4', '0000:03:02.2'] }] },
    ],
  },
  {
    name: 'web',
    namespace: 'other',
    containers: [{ name: 'x', devices: [{ resource_name: SRIOV, device_ids: ['0000:04:00.1'] }] }],
  },
];

let work: string;
const servers: FakePodResources[] = [];
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'cnikit-podres-it-'));
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function fake(opts: Parameters<typeof startFakePodResources>[0]) {
  const s = await startFakePodResources(opts);
  servers.push(s);
  return s;
}

describe('kubelet PodResources client', () => {
  it('List returns every pod with its containers, devices, topology and CPUs', async () => {
    const s = await fake({ pods });
    const c = await connectPodResources({ socket: s.socket });
    try {
      const all = await c.list();
      expect(all.map((p) => `${p.namespace}/${p.name}`)).toEqual(['default/web', 'other/web']);
      expect(all[0]?.containers[0]).toMatchObject({
        name: 'app',
        cpuIds: [2, 3],
        devices: [
          { resourceName: SRIOV, deviceIds: ['0000:03:02.1'], topology: { nodes: [{ id: 0 }] } },
          { resourceName: 'nvidia.com/gpu', deviceIds: ['GPU-1'] },
        ],
      });
    } finally {
      c.close();
    }
  });

  it('device IDs come from Get when kubelet serves it, across containers in order', async () => {
    const s = await fake({ pods });
    const c = await connectPodResources({ socket: s.socket });
    try {
      const ids = await podDeviceIds(c, 'default', 'web');
      expect(ids.get(SRIOV)).toEqual(['0000:03:02.1', '0000:03:02.4', '0000:03:02.2']);
      expect(ids.get('nvidia.com/gpu')).toEqual(['GPU-1']);
      expect(s.calls).toEqual(['Get default/web']);
    } finally {
      c.close();
    }
  });

  for (const mode of ['unimplemented', 'disabled'] as const) {
    it(`falls back to List when Get is ${mode}, keeping only the pod asked for`, async () => {
      const s = await fake({ pods, get: mode });
      const c = await connectPodResources({ socket: s.socket });
      try {
        const ids = await podDeviceIds(c, 'other', 'web');
        expect([...ids]).toEqual([[SRIOV, ['0000:04:00.1']]]);
        expect(s.calls).toEqual(mode === 'disabled' ? ['Get other/web', 'List'] : ['List']);
      } finally {
        c.close();
      }
    });
  }

  it('a pod kubelet does not know has no devices', async () => {
    const s = await fake({ pods });
    const c = await connectPodResources({ socket: s.socket });
    try {
      expect((await podDeviceIds(c, 'default', 'nope')).size).toBe(0);
    } finally {
      c.close();
    }
  });

  it('a missing socket fails at once with code 5, naming the path and the fix', async () => {
    const path = join(work, 'absent', 'kubelet.sock');
    const e = await cniRejectionOf(connectPodResources({ socket: path }));
    expect(e.code).toBe(5);
    expect(e.message).toContain(path);
    expect(e.details).toMatch(/mount the directory \/var\/lib\/kubelet\/pod-resources/);
    const file = join(work, 'plain');
    writeFileSync(file, '');
    const f = await cniRejectionOf(connectPodResources({ socket: file }));
    expect(f.message).toContain(`${file} is not a socket`);
  });

  it('a socket nobody answers on is code 11 (kubelet restarting), within the deadline', async () => {
    const path = join(work, 'dead.sock');
    const srv = createServer((sock) => sock.destroy());
    await new Promise<void>((r) => srv.listen(path, r));
    try {
      const c = await connectPodResources({ socket: path, timeoutMs: 1500 });
      const t0 = Date.now();
      const e = await cniRejectionOf(c.list());
      c.close();
      expect(e.code).toBe(11);
      expect(e.message).toContain(`kubelet PodResources List on ${path}`);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });
});
