// The PodResources codec against protobufjs reading kubelet's documented api.proto: every message
// shape kubelet can send decodes to the same values, unknown fields are skipped, and broken bytes
// fail with a message instead of a wrong answer.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeGetResponse,
  decodeListResponse,
  encodeGetRequest,
  type PodResources,
} from '../../src/k8s/podresources.js';
import { decodeMessage, encodeMessage, type FakePod } from '../helpers/fake-podresources.js';

const text = fc.string({ maxLength: 12 });
const topology = fc.record({
  nodes: fc.array(fc.record({ ID: fc.integer({ min: 0, max: 64 }) }), { maxLength: 3 }),
});
const fakePod: fc.Arbitrary<FakePod> = fc.record({
  name: text,
  namespace: text,
  containers: fc.array(
    fc.record({
      name: text,
      devices: fc.array(
        fc.record(
          {
            resource_name: text,
            device_ids: fc.array(text, { maxLength: 4 }),
            topology,
          },
          { requiredKeys: ['resource_name', 'device_ids'] },
        ),
        { maxLength: 3 },
      ),
      cpu_ids: fc.array(fc.integer({ min: 0, max: 100_000 }), { maxLength: 5 }),
      memory: fc.array(fc.record({ memory_type: text, size: fc.integer({ min: 0, max: 2 ** 50 }) }), {
        maxLength: 2,
      }),
      dynamic_resources: fc.array(
        fc.record({
          class_name: text,
          claim_name: text,
          claim_namespace: text,
          claim_resources: fc.array(
            fc.record({ cdi_devices: fc.array(fc.record({ name: text }), { maxLength: 2 }) }),
            {
              maxLength: 2,
            },
          ),
        }),
        { maxLength: 2 },
      ),
    }),
    { maxLength: 3 },
  ),
});

/** What our decoder must give for a pod protobufjs encoded. */
function expected(p: FakePod): PodResources {
  return {
    name: p.name,
    namespace: p.namespace,
    containers: p.containers.map((c) => ({
      name: c.name,
      devices: (c.devices ?? []).map((d) => ({
        resourceName: d.resource_name,
        deviceIds: d.device_ids,
        // proto3 writes an empty message when the field is set, so topology {} stays present.
        ...(d.topology ? { topology: { nodes: d.topology.nodes.map((n) => ({ id: n.ID })) } } : {}),
      })),
      cpuIds: c.cpu_ids ?? [],
      memory: (c.memory ?? []).map((m) => ({ memoryType: m.memory_type, size: m.size })),
      dynamicResources: (c.dynamic_resources ?? []).map((d) => ({
        className: d.class_name ?? '',
        claimName: d.claim_name,
        claimNamespace: d.claim_namespace,
        claimResources: d.claim_resources.map((r) => ({ cdiDevices: r.cdi_devices.map((x) => x.name) })),
      })),
    })),
  };
}

describe('PodResources v1 codec', () => {
  it('decodes every ListPodResourcesResponse protobufjs encodes from the documented .proto', () => {
    fc.assert(
      fc.property(fc.array(fakePod, { maxLength: 4 }), (pods) => {
        const buf = encodeMessage('ListPodResourcesResponse', { pod_resources: pods });
        expect(decodeListResponse(buf)).toEqual(pods.map(expected));
      }),
      { numRuns: 300 },
    );
  });

  it('decodes GetPodResourcesResponse, and an empty answer as an empty pod', () => {
    fc.assert(
      fc.property(fakePod, (pod) => {
        const buf = encodeMessage('GetPodResourcesResponse', { pod_resources: pod });
        expect(decodeGetResponse(buf)).toEqual(expected(pod));
      }),
      { numRuns: 200 },
    );
    expect(decodeGetResponse(Buffer.alloc(0))).toEqual({ name: '', namespace: '', containers: [] });
    expect(decodeListResponse(Buffer.alloc(0))).toEqual([]);
  });

  it('encodes GetPodResourcesRequest as protobufjs reads it', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 300 }), (ns, name) => {
        const v = decodeMessage('GetPodResourcesRequest', encodeGetRequest(ns, name));
        expect(v).toEqual({ pod_name: name, pod_namespace: ns });
      }),
    );
  });

  it('skips fields a newer kubelet adds, of every wire type', () => {
    const pod: FakePod = {
      name: 'p',
      namespace: 'ns',
      containers: [
        { name: 'c', devices: [{ resource_name: 'intel.com/sriov', device_ids: ['0000:03:02.1'] }] },
      ],
    };
    const base = encodeMessage('ListPodResourcesResponse', { pod_resources: [pod] });
    // field 9 varint 300, field 10 fixed64, field 11 bytes "xy", field 12 fixed32
    const extra = Buffer.from([
      0x48, 0xac, 0x02, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 2, 0x78, 0x79, 0x65, 1, 2, 3, 4,
    ]);
    expect(decodeListResponse(Buffer.concat([base, extra]))).toEqual([expected(pod)]);
  });

  it('refuses truncated and malformed bytes with a message naming the message', () => {
    const buf = encodeMessage('ListPodResourcesResponse', {
      pod_resources: [{ name: 'pod', namespace: 'ns', containers: [{ name: 'c' }] }],
    });
    for (let cut = 1; cut < buf.length; cut++) {
      let err: unknown;
      try {
        decodeListResponse(buf.subarray(0, cut));
      } catch (e) {
        err = e;
      }
      expect((err as Error | undefined)?.message ?? 'no error', `cut at ${cut}`).toMatch(
        /ListPodResourcesResponse/,
      );
    }
    expect(() => decodeListResponse(Buffer.from([0x0b]))).toThrow(/wire type 3/);
    expect(() => decodeListResponse(Buffer.from([0x00]))).toThrow(/field number 0/);
  });
});
