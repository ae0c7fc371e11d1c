// A client of kubelet's PodResources API (v1: `List` and `Get` of the PodResourcesLister service)
// over its Unix socket: which devices a device plugin (SR-IOV and others) allocated to which pod.
// The transport is @grpc/grpc-js, an optional peer loaded on first use. The protobuf messages are
// encoded and decoded here, from the field numbers the kubelet API documentation gives; the API is
// stable and only grows, so a decoder that skips unknown fields keeps working with newer kubelets,
// and no protobuf runtime (or generated code) ships with plugins. The tests check this codec
// against protobufjs reading the documented .proto.
import { stat } from 'node:fs/promises';
import type * as Grpc from '@grpc/grpc-js';
import { CniError, describeSystemError, ErrorCode, importOptionalPeer } from '../spec/errors.js';

/** Where kubelet serves the PodResources API. */
export const KUBELET_POD_RESOURCES_SOCKET = '/var/lib/kubelet/pod-resources/kubelet.sock';

/** NUMA affinity of a device or memory block (`TopologyInfo`). */
export interface TopologyInfo {
  nodes: Array<{ id: number }>;
}

/** Devices of one resource allocated to a container (`ContainerDevices`). */
export interface ContainerDevices {
  resourceName: string;
  deviceIds: string[];
  topology?: TopologyInfo;
}

/** Memory or hugepages allocated to a container (`ContainerMemory`). */
export interface ContainerMemory {
  memoryType: string;
  size: number;
  topology?: TopologyInfo;
}

/** Devices a container got through Dynamic Resource Allocation (`DynamicResource`). */
export interface DynamicResource {
  className: string;
  claimName: string;
  claimNamespace: string;
  claimResources: Array<{ cdiDevices: string[] }>;
}

/** What kubelet allocated to one container (`ContainerResources`). */
export interface ContainerResources {
  name: string;
  devices: ContainerDevices[];
  cpuIds: number[];
  memory: ContainerMemory[];
  dynamicResources: DynamicResource[];
}

/** What kubelet allocated to one pod (`PodResources`). */
export interface PodResources {
  name: string;
  namespace: string;
  containers: ContainerResources[];
}

/** The PodResourcesLister calls cni-kit makes. */
export interface PodResourcesClient {
  /** `List`: every pod on the node. */
  list(): Promise<PodResources[]>;
  /** `Get`: one pod (kubelet >= 1.27 with KubeletPodResourcesGet, on by default from 1.34). */
  get(namespace: string, name: string): Promise<PodResources>;
  close(): void;
}

/** How to reach kubelet. */
export interface PodResourcesOptions {
  /** Default {@link KUBELET_POD_RESOURCES_SOCKET}. */
  socket?: string;
  /** Deadline of each call; default 10 s. */
  timeoutMs?: number;
}

// ---- protobuf wire format (proto3: varints, length-delimited fields) ----

/** Reads protobuf fields from one message's bytes. */
class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly what: string,
  ) {}

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  fail(why: string): never {
    throw new Error(`${this.what}: ${why} at byte ${this.pos}`);
  }

  varint(): bigint {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.buf.length) this.fail('truncated varint');
      const b = this.buf[this.pos++] as number;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, v);
    }
    return this.fail('varint longer than 10 bytes');
  }

  int(): number {
    return Number(BigInt.asIntN(64, this.varint()));
  }

  bytes(): Uint8Array {
    const n = Number(this.varint());
    if (this.pos + n > this.buf.length) this.fail(`field of ${n} bytes runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(): string {
    return Buffer.from(this.bytes()).toString('utf8');
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.bytes();
    else if (wireType === 5) this.pos += 4;
    else this.fail(`unsupported wire type ${wireType}`);
    if (this.pos > this.buf.length) this.fail('truncated field');
  }

  /** Calls `on(field, wireType)` per field; `on` returns false for fields it does not read. */
  fields(on: (field: number, wireType: number) => boolean): void {
    while (!this.done()) {
      const tag = Number(this.varint());
      const field = tag >>> 3;
      const wt = tag & 7;
      if (field === 0) this.fail('field number 0');
      if (!on(field, wt)) this.skip(wt);
    }
  }

  /** A nested message of wire type 2. */
  sub(wt: number, what: string): Reader {
    if (wt !== 2) this.fail(`${what} is not length-delimited`);
    return new Reader(this.bytes(), `${this.what}.${what}`);
  }
}

function numaNode(r: Reader): { id: number } {
  let id = 0;
  r.fields((f, wt) => {
    if (f === 1 && wt === 0) {
      id = r.int();
      return true;
    }
    return false;
  });
  return { id };
}

function topologyInfo(r: Reader): TopologyInfo {
  const nodes: Array<{ id: number }> = [];
  r.fields((f, wt) => {
    if (f === 1 && wt === 2) {
      nodes.push(numaNode(r.sub(wt, 'nodes')));
      return true;
    }
    return false;
  });
  return { nodes };
}

function containerDevices(r: Reader): ContainerDevices {
  const d: ContainerDevices = { resourceName: '', deviceIds: [] };
  r.fields((f, wt) => {
    if (wt !== 2) return false;
    if (f === 1) d.resourceName = r.string();
    else if (f === 2) d.deviceIds.push(r.string());
    else if (f === 3) d.topology = topologyInfo(r.sub(wt, 'topology'));
    else return false;
    return true;
  });
  return d;
}

function containerMemory(r: Reader): ContainerMemory {
  const m: ContainerMemory = { memoryType: '', size: 0 };
  r.fields((f, wt) => {
    if (f === 1 && wt === 2) m.memoryType = r.string();
    else if (f === 2 && wt === 0) m.size = Number(r.varint());
    else if (f === 3 && wt === 2) m.topology = topologyInfo(r.sub(wt, 'topology'));
    else return false;
    return true;
  });
  return m;
}

function dynamicResource(r: Reader): DynamicResource {
  const d: DynamicResource = { className: '', claimName: '', claimNamespace: '', claimResources: [] };
  r.fields((f, wt) => {
    if (wt !== 2) return false;
    if (f === 1) d.className = r.string();
    else if (f === 2) d.claimName = r.string();
    else if (f === 3) d.claimNamespace = r.string();
    else if (f === 4) {
      const cdiDevices: string[] = [];
      const claim = r.sub(wt, 'claim_resources');
      claim.fields((g, w) => {
        if (g !== 1 || w !== 2) return false;
        const dev = claim.sub(w, 'cdi_devices');
        dev.fields((h, x) => {
          if (h !== 1 || x !== 2) return false;
          cdiDevices.push(dev.string());
          return true;
        });
        return true;
      });
      d.claimResources.push({ cdiDevices });
    } else return false;
    return true;
  });
  return d;
}

function containerResources(r: Reader): ContainerResources {
  const c: ContainerResources = { name: '', devices: [], cpuIds: [], memory: [], dynamicResources: [] };
  r.fields((f, wt) => {
    if (f === 1 && wt === 2) c.name = r.string();
    else if (f === 2 && wt === 2) c.devices.push(containerDevices(r.sub(wt, 'devices')));
    else if (f === 3 && wt === 0) c.cpuIds.push(r.int());
    else if (f === 3 && wt === 2) {
      // proto3 packs repeated scalars.
      const packed = r.sub(wt, 'cpu_ids');
      while (!packed.done()) c.cpuIds.push(packed.int());
    } else if (f === 4 && wt === 2) c.memory.push(containerMemory(r.sub(wt, 'memory')));
    else if (f === 5 && wt === 2) c.dynamicResources.push(dynamicResource(r.sub(wt, 'dynamic_resources')));
    else return false;
    return true;
  });
  return c;
}

function podResources(r: Reader): PodResources {
  const p: PodResources = { name: '', namespace: '', containers: [] };
  r.fields((f, wt) => {
    if (wt !== 2) return false;
    if (f === 1) p.name = r.string();
    else if (f === 2) p.namespace = r.string();
    else if (f === 3) p.containers.push(containerResources(r.sub(wt, 'containers')));
    else return false;
    return true;
  });
  return p;
}

/** Decodes a `ListPodResourcesResponse`. */
export function decodeListResponse(buf: Uint8Array): PodResources[] {
  const r = new Reader(buf, 'ListPodResourcesResponse');
  const pods: PodResources[] = [];
  r.fields((f, wt) => {
    if (f !== 1 || wt !== 2) return false;
    pods.push(podResources(r.sub(wt, 'pod_resources')));
    return true;
  });
  return pods;
}

/** Decodes a `GetPodResourcesResponse`. */
export function decodeGetResponse(buf: Uint8Array): PodResources {
  const r = new Reader(buf, 'GetPodResourcesResponse');
  let pod: PodResources = { name: '', namespace: '', containers: [] };
  r.fields((f, wt) => {
    if (f !== 1 || wt !== 2) return false;
    pod = podResources(r.sub(wt, 'pod_resources'));
    return true;
  });
  return pod;
}

function varintBytes(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function stringField(field: number, s: string): number[] {
  if (s === '') return []; // proto3 leaves default values out
  const b = Buffer.from(s, 'utf8');
  return [(field << 3) | 2, ...varintBytes(b.length), ...b];
}

/** Encodes a `GetPodResourcesRequest` (pod_name = 1, pod_namespace = 2). */
export function encodeGetRequest(namespace: string, name: string): Buffer {
  return Buffer.from([...stringField(1, name), ...stringField(2, namespace)]);
}

// ---- the gRPC client ----

const SERVICE = '/v1.PodResourcesLister';
/** kubelet answers up to 16 MiB (a List on a busy node); gRPC's default limit is 4 MiB. */
const MAX_MESSAGE = 16 * 1024 * 1024;

/** A failed call as a CniError: code 11 when kubelet is restarting or slow, else the call's error. */
function callError(grpc: typeof Grpc, err: Grpc.ServiceError, call: string, socket: string): CniError {
  const transient = err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED;
  return new CniError(
    transient ? ErrorCode.TryAgainLater : ErrorCode.Internal,
    `kubelet PodResources ${call} on ${socket}: ${err.details || err.message}`,
    transient ? 'kubelet may be restarting; the runtime retries the call' : undefined,
    { cause: err },
  );
}

/**
 * Connects to kubelet's PodResources socket. A missing socket fails at once (code 5), naming the
 * path and how multus reaches it from a container.
 */
export async function connectPodResources(opts: PodResourcesOptions = {}): Promise<PodResourcesClient> {
  const socket = opts.socket ?? KUBELET_POD_RESOURCES_SOCKET;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  try {
    const st = await stat(socket);
    if (!st.isSocket()) throw Object.assign(new Error('not a socket'), { notSocket: true });
  } catch (err) {
    const why = (err as { notSocket?: boolean }).notSocket
      ? `${socket} is not a socket`
      : (describeSystemError(err) ?? `${socket}: ${(err as Error).message}`);
    throw new CniError(
      ErrorCode.IOFailure,
      `kubelet PodResources API: ${why}`,
      `a NetworkAttachmentDefinition with k8s.v1.cni.cncf.io/resourceName needs kubelet's PodResources socket: run on a node whose kubelet serves ${KUBELET_POD_RESOURCES_SOCKET}, mount the directory ${KUBELET_POD_RESOURCES_SOCKET.replace(/\/[^/]+$/, '')} (not the socket) into a containerised multus, or point kubeletSocket at it`,
      { cause: err },
    );
  }
  const grpc = await importOptionalPeer(
    '@grpc/grpc-js',
    'reading device IDs from kubelet (resourceName)',
    () => import('@grpc/grpc-js'),
  );
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': MAX_MESSAGE,
  });
  const unary = <T>(method: string, body: Buffer, decode: (b: Buffer) => T): Promise<T> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        `${SERVICE}/${method}`,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, value) => {
          if (err) return reject(callError(grpc, err, method, socket));
          try {
            resolve(decode(value ?? Buffer.alloc(0)));
          } catch (e) {
            reject(
              new CniError(
                ErrorCode.DecodingFailure,
                `kubelet PodResources ${method} on ${socket}: cannot decode the answer: ${(e as Error).message}`,
              ),
            );
          }
        },
      );
    });
  return {
    list: () => unary('List', Buffer.alloc(0), decodeListResponse),
    get: (namespace, name) => unary('Get', encodeGetRequest(namespace, name), decodeGetResponse),
    close: () => client.close(),
  };
}

/**
 * The device IDs kubelet allocated to a pod, by resource name, in container order then in the
 * order kubelet lists them. Uses Get when kubelet has it, else List filtered to the pod.
 */
export async function podDeviceIds(
  client: PodResourcesClient,
  namespace: string,
  name: string,
): Promise<Map<string, string[]>> {
  let pod: PodResources | undefined;
  try {
    pod = await client.get(namespace, name);
  } catch (err) {
    if (err instanceof CniError && err.code === ErrorCode.TryAgainLater) throw err;
    // Get is missing or off on this kubelet, or it does not know the pod under that name yet.
    pod = (await client.list()).find((p) => p.namespace === namespace && p.name === name);
  }
  const out = new Map<string, string[]>();
  for (const c of pod?.containers ?? []) {
    for (const d of c.devices) {
      const ids = out.get(d.resourceName) ?? [];
      ids.push(...d.deviceIds);
      out.set(d.resourceName, ids);
    }
  }
  return out;
}
