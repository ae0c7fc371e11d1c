// multus's device assignment on its own: for any networks and any allocation, each network that
// names a resource gets the next device of that resource in order, no device twice, and the
// assignment fails (naming pod, resource and count) exactly when the pod has too few.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Delegate } from '../../examples/multus/delegates.js';
import { assignDevices, withDeviceId } from '../../examples/multus/devices.js';
import type { PodResources, PodResourcesClient } from '../../src/k8s/podresources.js';
import { CniError } from '../../src/spec/errors.js';

const RESOURCES = ['intel.com/sriov_a', 'intel.com/sriov_b', 'mellanox.com/cx6'];

function kubelet(pod: PodResources, log: string[]): PodResourcesClient {
  return {
    list: async () => [pod],
    get: async (ns, name) => {
      log.push(`Get ${ns}/${name}`);
      return pod;
    },
    close: () => log.push('close'),
  };
}

const delegate = (i: number, resourceName?: string): Delegate => ({
  conf:
    i % 2
      ? { cniVersion: '1.0.0', name: `n${i}`, type: 'host-device' }
      : { cniVersion: '1.0.0', name: `n${i}`, plugins: [{ type: 'a' }, { type: 'b' }] },
  name: `default/n${i}`,
  ifname: `net${i + 1}`,
  master: false,
  ...(resourceName ? { resourceName } : {}),
});

describe('multus device assignment', () => {
  it('hands out the pod devices in order, one per network, or fails naming what is short', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.option(fc.constantFrom(...RESOURCES), { nil: undefined }), { maxLength: 6 }),
        fc.array(
          fc.array(fc.record({ r: fc.constantFrom(...RESOURCES), n: fc.integer({ min: 0, max: 3 }) }), {
            maxLength: 3,
          }),
          {
            maxLength: 3,
          },
        ),
        async (wanted, containers) => {
          let seq = 0;
          const pod: PodResources = {
            name: 'p',
            namespace: 'default',
            containers: containers.map((devs, c) => ({
              name: `c${c}`,
              devices: devs.map(({ r, n }) => ({
                resourceName: r,
                deviceIds: Array.from({ length: n }, () => `${r}#${seq++}`),
              })),
              cpuIds: [],
              memory: [],
              dynamicResources: [],
            })),
          };
          // What kubelet allocated per resource, in container order.
          const pool = new Map<string, string[]>();
          for (const c of pod.containers)
            for (const d of c.devices)
              pool.set(d.resourceName, [...(pool.get(d.resourceName) ?? []), ...d.deviceIds]);
          const delegates = wanted.map((r, i) => delegate(i, r));
          const log: string[] = [];
          const run = assignDevices(
            delegates,
            { namespace: 'default', name: 'p' },
            {
              socket: '/s',
              connect: async () => kubelet(pod, log),
              containerId: 'ctr',
              deviceInfoDir: '/d',
            },
          );
          const need = new Map<string, number>();
          for (const r of wanted) if (r) need.set(r, (need.get(r) ?? 0) + 1);
          // The first network (in order) that finds its resource used up is the one named.
          const taken = new Map<string, number>();
          const short = wanted.find((r) => {
            if (!r) return false;
            taken.set(r, (taken.get(r) ?? 0) + 1);
            return (taken.get(r) ?? 0) > (pool.get(r)?.length ?? 0);
          });
          if (short) {
            const e = await run.then(
              () => undefined,
              (x: unknown) => x,
            );
            expect(e).toBeInstanceOf(CniError);
            expect((e as CniError).code).toBe(7);
            expect((e as CniError).message).toContain(`"${short}"`);
            expect((e as CniError).message).toContain('default/p');
            return;
          }
          await run;
          expect(log).toEqual(need.size ? ['Get default/p', 'close'] : []);
          const next = new Map<string, number>();
          for (const d of delegates) {
            if (!d.resourceName) {
              expect(d.deviceID).toBeUndefined();
              expect(d.capabilityArgs).toBeUndefined();
              continue;
            }
            const i = next.get(d.resourceName) ?? 0;
            next.set(d.resourceName, i + 1);
            const id = pool.get(d.resourceName)?.[i];
            expect(d.deviceID).toBe(id);
            expect(d.capabilityArgs).toEqual({
              deviceID: id,
              CNIDeviceInfoFile: `/d/cni/default-${d.name.slice(8)}-ctr_${d.ifname}`,
            });
            const plugins = (d.conf.plugins as Array<Record<string, unknown>> | undefined) ?? [d.conf];
            for (const p of plugins) expect(p).toMatchObject({ deviceID: id, pciBusID: id });
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a deviceID the pod requested in its selection stays the runtimeConfig's", async () => {
    const d = { ...delegate(1, 'intel.com/sriov_a'), capabilityArgs: { deviceID: 'asked' } };
    const pod: PodResources = {
      name: 'p',
      namespace: 'default',
      containers: [
        {
          name: 'c',
          devices: [{ resourceName: 'intel.com/sriov_a', deviceIds: ['0000:03:02.1'] }],
          cpuIds: [],
          memory: [],
          dynamicResources: [],
        },
      ],
    };
    await assignDevices(
      [d],
      { namespace: 'default', name: 'p' },
      { socket: '/s', connect: async () => kubelet(pod, []), containerId: 'c', deviceInfoDir: '/d' },
    );
    expect(d.capabilityArgs.deviceID).toBe('asked');
    expect(d.conf).toMatchObject({ deviceID: '0000:03:02.1', pciBusID: '0000:03:02.1' });
  });

  it('withDeviceId sets every plugin of a list and leaves the input alone', () => {
    const list = { cniVersion: '1.0.0', name: 'l', plugins: [{ type: 'a' }, { type: 'b', deviceID: 'old' }] };
    const copy = structuredClone(list);
    expect(withDeviceId(list, 'X')).toEqual({
      ...list,
      plugins: [
        { type: 'a', deviceID: 'X', pciBusID: 'X' },
        { type: 'b', deviceID: 'X', pciBusID: 'X' },
      ],
    });
    expect(list).toEqual(copy);
  });
});
