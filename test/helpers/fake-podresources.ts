// A fake kubelet PodResources API: a real gRPC server (@grpc/grpc-js) on a Unix socket, answering
// List and Get with messages encoded by protobufjs from the v1 api.proto as the kubelet API
// documentation gives it. So the tests check cni-kit's hand-written codec against an independent
// protobuf implementation, not against itself.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/** kubelet's podresources v1 api.proto (services and messages), as documented. */
export const PODRESOURCES_V1_PROTO = `
syntax = "proto3";
package v1;

service PodResourcesLister {
  rpc List(ListPodResourcesRequest) returns (ListPodResourcesResponse) {}
  rpc GetAllocatableResources(AllocatableResourcesRequest) returns (AllocatableResourcesResponse) {}
  rpc Get(GetPodResourcesRequest) returns (GetPodResourcesResponse) {}
}

message AllocatableResourcesRequest {}
message AllocatableResourcesResponse {
  repeated ContainerDevices devices = 1;
  repeated int64 cpu_ids = 2;
  repeated ContainerMemory memory = 3;
}
message ListPodResourcesRequest {}
message ListPodResourcesResponse {
  repeated PodResources pod_resources = 1;
}
message PodResources {
  string name = 1;
  string namespace = 2;
  repeated ContainerResources containers = 3;
}
message ContainerResources {
  string name = 1;
  repeated ContainerDevices devices = 2;
  repeated int64 cpu_ids = 3;
  repeated ContainerMemory memory = 4;
  repeated DynamicResource dynamic_resources = 5;
}
message ContainerMemory {
  string memory_type = 1;
  uint64 size = 2;
  TopologyInfo topology = 3;
}
message ContainerDevices {
  string resource_name = 1;
  repeated string device_ids = 2;
  TopologyInfo topology = 3;
}
message TopologyInfo {
  repeated NUMANode nodes = 1;
}
message NUMANode {
  int64 ID = 1;
}
message DynamicResource {
  string class_name = 1;
  string claim_name = 2;
  string claim_namespace = 3;
  repeated ClaimResource claim_resources = 4;
}
message ClaimResource {
  repeated CDIDevice cdi_devices = 1;
}
message CDIDevice {
  string name = 1;
}
message GetPodResourcesRequest {
  string pod_name = 1;
  string pod_namespace = 2;
}
message GetPodResourcesResponse {
  PodResources pod_resources = 1;
}
`;

const root = protobuf.parse(PODRESOURCES_V1_PROTO, { keepCase: true }).root;
const type = (name: string) => root.lookupType(`v1.${name}`);

/** Encodes a message given in the .proto's field names (snake_case), as kubelet would send it. */
export function encodeMessage(name: string, value: Record<string, unknown>): Buffer {
  const t = type(name);
  const err = t.verify(value);
  if (err) throw new Error(`${name}: ${err}`);
  return Buffer.from(t.encode(t.fromObject(value)).finish());
}

/** Decodes a message into the .proto's field names. */
export function decodeMessage(name: string, buf: Uint8Array): Record<string, unknown> {
  const t = type(name);
  return t.toObject(t.decode(buf), { longs: Number, defaults: true, arrays: true }) as Record<
    string,
    unknown
  >;
}

/** A pod as kubelet reports it, in the .proto's field names. */
export interface FakePod {
  name: string;
  namespace: string;
  containers: Array<{
    name: string;
    devices?: Array<{
      resource_name: string;
      device_ids: string[];
      topology?: { nodes: Array<{ ID: number }> };
    }>;
    cpu_ids?: number[];
    memory?: Array<{ memory_type: string; size: number }>;
    dynamic_resources?: Array<{
      class_name?: string;
      claim_name: string;
      claim_namespace: string;
      claim_resources: Array<{ cdi_devices: Array<{ name: string }> }>;
    }>;
  }>;
}

/** How Get behaves: served; absent (an old kubelet: UNIMPLEMENTED); or off (the feature gate). */
export type GetMode = 'served' | 'unimplemented' | 'disabled';

export interface FakePodResources {
  socket: string;
  pods: FakePod[];
  /** Each call as `List` or `Get <ns>/<name>`. */
  calls: string[];
  close(): Promise<void>;
}

/** Starts the fake kubelet on a socket in a fresh temporary directory (or at `socket`). */
export async function startFakePodResources(
  opts: { pods?: FakePod[]; get?: GetMode; socket?: string } = {},
): Promise<FakePodResources> {
  const dir = opts.socket ? undefined : mkdtempSync(join(tmpdir(), 'cnikit-podres-'));
  const socket = opts.socket ?? join(dir as string, 'kubelet.sock');
  const pods = opts.pods ?? [];
  const calls: string[] = [];
  const server = new grpc.Server();
  const method = (name: string, req: string, res: string) => ({
    path: `/v1.PodResourcesLister/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: Record<string, unknown>) => encodeMessage(req, v),
    requestDeserialize: (b: Buffer) => decodeMessage(req, b),
    responseSerialize: (v: Record<string, unknown>) => encodeMessage(res, v),
    responseDeserialize: (b: Buffer) => decodeMessage(res, b),
  });
  const service: Record<string, grpc.MethodDefinition<Record<string, unknown>, Record<string, unknown>>> = {
    List: method('List', 'ListPodResourcesRequest', 'ListPodResourcesResponse'),
  };
  type Unary = grpc.handleUnaryCall<Record<string, unknown>, Record<string, unknown>>;
  const impl: Record<string, Unary> = {
    List: (_call, cb) => {
      calls.push('List');
      cb(null, { pod_resources: pods });
    },
  };
  const get = opts.get ?? 'served';
  if (get !== 'unimplemented') {
    service.Get = method('Get', 'GetPodResourcesRequest', 'GetPodResourcesResponse');
    impl.Get = (call, cb) => {
      const ns = String(call.request.pod_namespace);
      const name = String(call.request.pod_name);
      calls.push(`Get ${ns}/${name}`);
      if (get === 'disabled') {
        cb({ code: grpc.status.UNKNOWN, details: 'PodResources API Get method disabled' });
        return;
      }
      const pod = pods.find((p) => p.namespace === ns && p.name === name);
      if (!pod) {
        cb({ code: grpc.status.UNKNOWN, details: `pod ${name} not found in ${ns}` });
        return;
      }
      cb(null, { pod_resources: pod });
    };
  }
  server.addService(service as grpc.ServiceDefinition, impl as grpc.UntypedServiceImplementation);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return {
    socket,
    pods,
    calls,
    close: async () => {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      if (dir) rmSync(dir, { recursive: true, force: true });
      else rmSync(socket, { force: true });
    },
  };
}
