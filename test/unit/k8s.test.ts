// src/k8s: network-status building, kubeconfig loading and the client-node based API access
// against the in-process server (HTTPS, 404/401/409, timeouts, merge patches, custom resources)
// and NAD config resolution; RBAC enforcement and events of the fake API server.
// Over the 400-line guideline on purpose: one API server is shared by every case of this layer.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError, ErrorCode } from 'cni-kit';
import {
  buildNetworkStatuses,
  configFromNad,
  connectKube,
  formatNetworkStatus,
  isKubeNotFound,
  KubeApiError,
  type KubeObject,
  openKubeApi,
  type Pod,
  parseNetworkStatus,
  podEvent,
  withCniArgs,
} from 'cni-kit/k8s';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromConfDir } from '../../examples/multus/delegates.js';
import {
  FAKE_K8S_TOKEN,
  type FakeK8s,
  rbacAllows,
  rbacPolicyFrom,
  SHIPPED_RBAC,
  startFakeK8s,
} from '../helpers/fake-k8s.js';

let work = '';
let api: FakeK8s;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `k8sunit${process.pid}-`));
  api = await startFakeK8s();
});
afterAll(async () => {
  await api.close();
  rmSync(work, { recursive: true, force: true });
});

describe('network-status', () => {
  it('one entry per sandbox interface, bare IPs, gateways of default routes, default on the gateway owner', () => {
    const st = buildNetworkStatuses(
      'kube-system/cluster',
      {
        cniVersion: '1.1.0',
        interfaces: [
          { name: 'cni0', mac: '00:00:00:00:00:01' },
          { name: 'veth1', mac: '00:00:00:00:00:02' },
          { name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: '/var/run/netns/x', mtu: 1450 },
        ],
        ips: [{ interface: 2, address: '10.244.1.5/24', gateway: '10.244.1.1' }, { address: 'fd00::5/64' }],
        routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '10.0.0.0/8' }],
        dns: { nameservers: ['10.96.0.10'] },
      },
      { isDefault: true },
    );
    expect(st).toEqual([
      {
        name: 'kube-system/cluster',
        interface: 'eth0',
        mac: '0a:58:0a:f4:01:05',
        mtu: 1450,
        ips: ['10.244.1.5', 'fd00::5'],
        gateway: ['10.244.1.1'],
        default: true,
        dns: { nameservers: ['10.96.0.10'] },
      },
    ]);
    expect(parseNetworkStatus(formatNetworkStatus(st))).toEqual(st);
    expect(parseNetworkStatus('not json')).toEqual([]);
  });

  it('writes the annotation byte for byte as multus: key order, "dns":{} always, default only when true, Go IP form', () => {
    const cluster = buildNetworkStatuses(
      'kube-system/cluster',
      {
        cniVersion: '1.0.0',
        interfaces: [
          { name: 'cni0', mac: '00:00:00:00:00:01' },
          { name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: '/var/run/netns/x' },
        ],
        ips: [{ interface: 1, address: '10.244.1.5/24', gateway: '10.244.1.1' }],
        routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
      },
      { isDefault: true },
    );
    const attachment = buildNetworkStatuses(
      'default/macvlan-conf',
      {
        cniVersion: '1.0.0',
        interfaces: [{ name: 'net1', mac: 'c2:b0:57:49:47:f1', sandbox: '/var/run/netns/x', mtu: 1500 }],
        ips: [{ interface: 0, address: '2001:DB8:0::7/64' }],
      },
      { isDefault: false },
    );
    expect(formatNetworkStatus([...cluster, ...attachment])).toBe(
      [
        '[{',
        '    "name": "kube-system/cluster",',
        '    "interface": "eth0",',
        '    "ips": [',
        '        "10.244.1.5"',
        '    ],',
        '    "mac": "0a:58:0a:f4:01:05",',
        '    "default": true,',
        '    "dns": {},',
        '    "gateway": [',
        '        "10.244.1.1"',
        '    ]',
        '},{',
        '    "name": "default/macvlan-conf",',
        '    "interface": "net1",',
        '    "ips": [',
        '        "2001:db8::7"',
        '    ],',
        '    "mac": "c2:b0:57:49:47:f1",',
        '    "mtu": 1500,',
        '    "dns": {}',
        '}]',
      ].join('\n'),
    );
  });

  it('follows multus on the edge cases: one interface outside the sandbox, no interfaces, IPs on host interfaces', () => {
    // Exactly one interface: one entry with every IP; interface/mac only when it is in the sandbox.
    expect(
      buildNetworkStatuses(
        'n',
        {
          cniVersion: '1.0.0',
          interfaces: [{ name: 'cni0', mac: 'aa:aa:aa:aa:aa:aa' }],
          ips: [{ address: '10.0.0.2/24' }],
        },
        { isDefault: true },
      ),
    ).toEqual([{ name: 'n', ips: ['10.0.0.2'], default: true, dns: {} }]);
    // No interface at all (an IPAM-only or empty result): multus writes no entry for it.
    expect(
      buildNetworkStatuses(
        'n',
        { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] },
        { isDefault: false },
      ),
    ).toEqual([]);
    expect(buildNetworkStatuses('n', undefined, { isDefault: false })).toEqual([]);
    // Two sandbox interfaces: an IP pointing at a host-side interface is dropped, one without an
    // index goes to the last entry, the gateways and DNS go on every entry.
    const two = buildNetworkStatuses(
      'n',
      {
        cniVersion: '1.0.0',
        interfaces: [{ name: 'host0' }, { name: 'a', sandbox: '/x' }, { name: 'b', sandbox: '/x' }],
        ips: [
          { address: '10.0.0.9/24', interface: 0 },
          { address: '10.0.0.3/24', interface: 1 },
          { address: '10.0.0.4/24' },
        ],
        routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }, { dst: '::/0' }],
        dns: { nameservers: ['10.96.0.10'], search: [] },
      },
      { isDefault: true },
    );
    expect(two).toEqual([
      {
        name: 'n',
        interface: 'a',
        ips: ['10.0.0.3'],
        default: true,
        dns: { nameservers: ['10.96.0.10'] },
        gateway: ['10.0.0.1'],
      },
      {
        name: 'n',
        interface: 'b',
        ips: ['10.0.0.4'],
        dns: { nameservers: ['10.96.0.10'] },
        gateway: ['10.0.0.1'],
      },
    ]);
  });

  it('every entry has dns, "default" is never false, at most one entry of an attachment is default', () => {
    const iface = fc.record(
      {
        name: fc.constantFrom('eth0', 'net1', 'cni0'),
        sandbox: fc.option(fc.constant('/x'), { nil: undefined }),
      },
      { requiredKeys: ['name'] },
    );
    const ip = fc.record(
      {
        address: fc.constantFrom('10.0.0.2/24', 'fd00::2/64'),
        gateway: fc.option(fc.constant('10.0.0.1'), { nil: undefined }),
        interface: fc.option(fc.nat(3), { nil: undefined }),
      },
      { requiredKeys: ['address'] },
    );
    fc.assert(
      fc.property(
        fc.array(iface, { maxLength: 4 }),
        fc.array(ip, { maxLength: 4 }),
        fc.boolean(),
        (interfaces, ips, isDefault) => {
          const st = buildNetworkStatuses('n', { cniVersion: '1.0.0', interfaces, ips } as never, {
            isDefault,
          });
          for (const e of st) {
            expect(e.dns).toEqual({});
            expect('default' in e ? e.default : true).toBe(true);
          }
          expect(st.filter((e) => e.default).length).toBeLessThanOrEqual(isDefault ? 1 : 0);
          expect(parseNetworkStatus(formatNetworkStatus(st))).toEqual(st);
        },
      ),
    );
  });
});

const kubeconfigJson = (path: string, cluster: object, user: object, namespace?: string) => {
  writeFileSync(
    path,
    JSON.stringify({
      clusters: [{ name: 'c', cluster }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u', ...(namespace ? { namespace } : {}) } }],
      'current-context': 'x',
    }),
  );
  return path;
};

describe('kubeconfig and client (client-node)', () => {
  it('JSON and YAML kubeconfigs reach the server over HTTPS with the CA they carry; context namespace', async () => {
    api.putNad('ns0', 'a', { type: 'macvlan' });
    for (const form of ['yaml', 'json'] as const) {
      const k = await openKubeApi(api.writeKubeconfig(join(work, `k.${form}`), form));
      expect(k.server).toBe(api.url);
      expect(k.namespace).toBeUndefined();
      expect((await k.client.getNetworkAttachmentDefinition('ns0', 'a')).spec?.config).toBe(
        '{"type":"macvlan"}',
      );
    }
    const dir = join(work, 'rel');
    mkdirSync(dir, { recursive: true });
    // Relative CA and token files resolve against the kubeconfig's directory, as in client-go.
    if (api.ca) writeFileSync(join(dir, 'ca.pem'), api.ca);
    writeFileSync(join(dir, 'tok'), `${FAKE_K8S_TOKEN}\n`);
    const k2 = await openKubeApi(
      kubeconfigJson(
        join(dir, 'kc.json'),
        { server: `${api.url}/`, ...(api.ca ? { 'certificate-authority': 'ca.pem' } : {}) },
        { tokenFile: 'tok' },
        'team-a',
      ),
    );
    expect(k2.namespace).toBe('team-a');
    expect(k2.server).toBe(api.url);
    expect((await k2.client.listNetworkAttachmentDefinitions('ns0')).map((n) => n.metadata.name)).toEqual([
      'a',
    ]);
  });

  it('a plain-HTTP server works as with client-go, and exec credential plugins supply the token', async () => {
    const plain = await startFakeK8s({ tls: false });
    try {
      plain.putNad('ns0', 'p', { type: 'ptp' });
      const script = join(work, 'cred.sh');
      writeFileSync(
        script,
        `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"${FAKE_K8S_TOKEN}"}}'\n`,
        { mode: 0o755 },
      );
      const kube = await connectKube(
        kubeconfigJson(
          join(work, 'exec.json'),
          { server: plain.url },
          { exec: { apiVersion: 'client.authentication.k8s.io/v1beta1', command: script } },
        ),
      );
      expect((await kube.getNetworkAttachmentDefinition('ns0', 'p')).metadata.name).toBe('p');
      // `server` (whereabouts k8s_api_root) replaces the kubeconfig's URL.
      const elsewhere = await openKubeApi(api.writeKubeconfig(join(work, 'elsewhere.json')), {
        server: `${plain.url}/`,
      });
      expect(elsewhere.server).toBe(plain.url);
      expect(
        (await elsewhere.client.listNetworkAttachmentDefinitions('ns0')).map((n) => n.metadata.name),
      ).toEqual(['p']);
      expect(plain.requests.at(-1)?.path).toBe(
        '/apis/k8s.cni.cncf.io/v1/namespaces/ns0/network-attachment-definitions',
      );
      await kube.getNetworkAttachmentDefinition('ns0', 'p');
      expect(plain.requests.at(-1)?.path).toBe(
        '/apis/k8s.cni.cncf.io/v1/namespaces/ns0/network-attachment-definitions/p',
      );
    } finally {
      await plain.close();
    }
  });

  it('refuses broken kubeconfigs with a coded error naming the file and the fix', async () => {
    const cases: Array<[string, string | object, number, RegExp]> = [
      [
        'absent',
        '',
        ErrorCode.IOFailure,
        /kubeconfig: cannot open "[^"]*absent": no such file or directory \(ENOENT\)/,
      ],
      ['yaml-bad', 'clusters: [\n  - {', ErrorCode.InvalidNetworkConfig, /yaml-bad: .*fix the file/],
      [
        'no-server',
        { clusters: [{ name: 'c', cluster: {} }], 'current-context': 'x' },
        ErrorCode.InvalidNetworkConfig,
        /no-server: clusters\[0\]\.cluster\.server is missing/,
      ],
      [
        'no-context',
        {
          clusters: [{ name: 'c', cluster: { server: 'https://h' } }],
          contexts: [],
          'current-context': 'gone',
        },
        ErrorCode.InvalidNetworkConfig,
        /no-context: current-context "gone" names no context/,
      ],
      [
        'bad-url',
        {
          clusters: [{ name: 'c', cluster: { server: 'h:6443' } }],
          contexts: [{ name: 'x', context: { cluster: 'c' } }],
          'current-context': 'x',
        },
        ErrorCode.InvalidNetworkConfig,
        /bad-url: server "h:6443" is not an http\(s\) URL/,
      ],
    ];
    for (const [name, content, code, re] of cases) {
      const path = join(work, name);
      if (content !== '')
        writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
      const err = await openKubeApi(path).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(CniError);
      expect((err as CniError).code, name).toBe(code);
      expect((err as CniError).message, name).toMatch(re);
    }
  });

  it('404 is not-found; 401, unreachable and silent servers are coded errors naming the request', async () => {
    const kube = await connectKube(api.writeKubeconfig(join(work, 'k3.json')), { timeoutMs: 2000 });
    const nf = await kube.getPod('ns1', 'none').catch((e: unknown) => e);
    expect(isKubeNotFound(nf)).toBe(true);
    expect((nf as Error).message).toBe('GET pod ns1/none: 404 pods "none" not found');
    expect((nf as CniError).code).toBe(ErrorCode.InvalidNetworkConfig);

    const badToken = join(work, 'bad-token.json');
    writeFileSync(badToken, readFileSync(join(work, 'k3.json'), 'utf8').replace(FAKE_K8S_TOKEN, 'wrong'));
    const unauth = await (await connectKube(badToken)).getPod('ns1', 'x').catch((e: unknown) => e);
    expect(unauth).toBeInstanceOf(KubeApiError);
    expect((unauth as KubeApiError).status).toBe(401);
    expect((unauth as Error).message).toMatch(/GET pod ns1\/x: 401 .*renew the token/);

    const down = await (
      await connectKube(
        kubeconfigJson(join(work, 'down.json'), { server: 'https://127.0.0.1:9' }, { token: 't' }),
      )
    )
      .listNetworkAttachmentDefinitions('a')
      .catch((e: unknown) => e);
    expect((down as KubeApiError).status).toBe(0);
    expect((down as KubeApiError).code).toBe(ErrorCode.TryAgainLater);
    expect((down as Error).message).toMatch(/LIST network-attachment-definitions.* ECONNREFUSED.*reachable/);

    // A server that accepts the connection and never answers: the request ends at timeoutMs.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as AddressInfo).port;
      const kc = kubeconfigJson(
        join(work, 'silent.json'),
        { server: `http://127.0.0.1:${port}` },
        { token: 't' },
      );
      const t0 = Date.now();
      const hung = await (await connectKube(kc, { timeoutMs: 300 }))
        .getPod('a', 'b')
        .catch((e: unknown) => e);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect((hung as KubeApiError).status).toBe(0);
      expect((hung as Error).message).toMatch(/GET pod a\/b: no answer within 300 ms/);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('annotation updates are one merge patch of the status subresource, retried on 409 up to the limit', async () => {
    const kc = api.writeKubeconfig(join(work, 'k4.json'));
    api.putPod({ metadata: { name: 'p', namespace: 'd', annotations: { keep: '1', drop: '2' } } });
    const before = api.requests.length;
    api.conflictNext(2);
    const pod = await (await connectKube(kc)).updatePodAnnotations('d', 'p', { added: 'x', drop: null });
    expect(pod.metadata.annotations).toEqual({ keep: '1', added: 'x' });
    expect(api.getPod('d', 'p')?.metadata.annotations).toEqual({ keep: '1', added: 'x' });
    const writes = api.requests.slice(before);
    expect(writes).toHaveLength(3);
    for (const w of writes) {
      expect(w).toMatchObject({
        method: 'PATCH',
        path: '/api/v1/namespaces/d/pods/p/status',
        contentType: 'application/merge-patch+json',
        body: { metadata: { annotations: { added: 'x', drop: null } } },
      });
    }
    api.conflictNext(5);
    const err = await (await connectKube(kc, { conflictRetries: 3 }))
      .updatePodAnnotations('d', 'p', { z: '1' })
      .catch((e: unknown) => e);
    expect((err as KubeApiError).status).toBe(409);
    expect((err as KubeApiError).reason).toBe('Conflict');
    expect(api.requests.slice(before + 3)).toHaveLength(3);
    api.conflictNext(0);
    expect(api.getPod('d', 'p')?.metadata.annotations).toEqual({ keep: '1', added: 'x' });
  });

  it('RBAC: the fake server enforces deploy/rbac.yaml; a request outside its rules is 403 with the real Status', async () => {
    const plain = await startFakeK8s({ tls: false });
    try {
      plain.putPod({ metadata: { name: 'p', namespace: 'd' } });
      const req = (method: string, path: string, body?: unknown, ct = 'application/json') =>
        fetch(`${plain.url}${path}`, {
          method,
          headers: { authorization: `Bearer ${FAKE_K8S_TOKEN}`, 'content-type': ct },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      // The pod itself may be read, not patched: only its status subresource is writable.
      const patch = await req(
        'PATCH',
        '/api/v1/namespaces/d/pods/p',
        { metadata: {} },
        'application/merge-patch+json',
      );
      expect(patch.status).toBe(403);
      expect(await patch.json()).toEqual({
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message:
          'pods "p" is forbidden: User "system:serviceaccount:kube-system:cni-kit" cannot patch resource "pods" in API group "" in the namespace "d"',
        reason: 'Forbidden',
        details: { name: 'p', kind: 'pods' },
        code: 403,
      });
      const list = await req('GET', '/apis/k8s.cni.cncf.io/v1/namespaces/d/network-attachment-definitions');
      expect(list.status).toBe(200);
      const del = await req(
        'DELETE',
        '/apis/k8s.cni.cncf.io/v1/namespaces/d/network-attachment-definitions/x',
      );
      expect(del.status).toBe(403);
      expect(((await del.json()) as { message: string }).message).toBe(
        'network-attachment-definitions.k8s.cni.cncf.io "x" is forbidden: User "system:serviceaccount:kube-system:cni-kit" cannot delete resource "network-attachment-definitions" in API group "k8s.cni.cncf.io" in the namespace "d"',
      );
      expect((await req('GET', '/api/v1/namespaces/d/secrets')).status).toBe(403);
      expect((await req('GET', '/api/v1/namespaces/d/pods/p')).status).toBe(200);
      expect(plain.requests.map((r) => r.code)).toEqual([403, 200, 403, 403, 200]);
    } finally {
      await plain.close();
    }
  });

  it('RBAC rules are read as the authoriser reads them: subresources, wildcards, resourceNames, RoleBinding namespaces', () => {
    const policy = rbacPolicyFrom(`
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa, namespace: ns1}
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: cr}
rules:
  - {apiGroups: [""], resources: ["pods"], verbs: ["get"]}
  - {apiGroups: [""], resources: ["pods/*"], verbs: ["patch"]}
  - {apiGroups: ["x.io"], resources: ["things"], verbs: ["*"], resourceNames: ["one"]}
---
kind: Role
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: r, namespace: ns2}
rules:
  - {apiGroups: ["*"], resources: ["events"], verbs: ["create"]}
---
kind: ClusterRoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: b1}
roleRef: {kind: ClusterRole, name: cr}
subjects: [{kind: ServiceAccount, name: sa, namespace: ns1}]
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: b2, namespace: ns2}
roleRef: {kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: sa, namespace: ns1}]
`);
    expect(policy.user).toBe('system:serviceaccount:ns1:sa');
    const a = (
      verb: string,
      group: string,
      resource: string,
      name = '',
      subresource = '',
      namespace = 'd',
    ) => ({
      verb,
      group,
      resource,
      name,
      subresource,
      namespace,
    });
    expect(rbacAllows(policy, a('get', '', 'pods', 'p'))).toBe(true);
    expect(rbacAllows(policy, a('get', '', 'pods', 'p', 'status'))).toBe(false); // "pods" is not "pods/status"
    expect(rbacAllows(policy, a('patch', '', 'pods', 'p', 'status'))).toBe(true); // pods/*
    expect(rbacAllows(policy, a('patch', '', 'pods', 'p'))).toBe(false);
    expect(rbacAllows(policy, a('delete', 'x.io', 'things', 'one'))).toBe(true);
    expect(rbacAllows(policy, a('delete', 'x.io', 'things', 'two'))).toBe(false);
    expect(rbacAllows(policy, a('list', 'x.io', 'things'))).toBe(false); // resourceNames never cover a list
    expect(rbacAllows(policy, a('create', 'events.k8s.io', 'events', '', '', 'ns2'))).toBe(true);
    expect(rbacAllows(policy, a('create', '', 'events', '', '', 'd'))).toBe(false); // the Role binds in ns2 only
  });

  it('RBAC: with the old manifest (pods/status get+update only) the network-status merge patch is refused', async () => {
    const shipped = readFileSync(SHIPPED_RBAC, 'utf8');
    const old = shipped.replace(
      /(resources: \["pods\/status"\]\s*\n\s*verbs: )\[[^\]]*\]/,
      '$1["get", "update"]',
    );
    expect(old).not.toBe(shipped);
    const strict = await startFakeK8s({ tls: false, rbac: old });
    try {
      strict.putPod({ metadata: { name: 'p', namespace: 'd' } });
      const kc = strict.writeKubeconfig(join(work, 'k-old-rbac.json'));
      const err = await (await connectKube(kc))
        .updatePodAnnotations('d', 'p', { a: '1' })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KubeApiError);
      expect((err as KubeApiError).status).toBe(403);
      expect((err as KubeApiError).message).toContain('cannot patch resource "pods/status"');
      expect((err as KubeApiError).code).toBe(ErrorCode.InvalidNetworkConfig);
    } finally {
      await strict.close();
    }
  });

  it('events: a core/v1 Event is created in the pod namespace and kept; a mismatched one is refused as the API server does', async () => {
    const kc = api.writeKubeconfig(join(work, 'k-ev.json'));
    api.putPod({ metadata: { name: 'evp', namespace: 'd' } });
    const pod = api.getPod('d', 'evp') as unknown as Pod;
    const ev = podEvent(pod, 'Normal', 'AddedInterface', 'Add eth0 [10.0.0.2/24] from n', 'multus');
    const client = await connectKube(kc);
    await client.createEvent('d', ev);
    const kept = api.objects('events').get(`d/${ev.metadata.name}`);
    expect(kept).toMatchObject({ ...ev, metadata: { ...ev.metadata, uid: expect.any(String) } });
    const wrong = {
      ...ev,
      metadata: { ...ev.metadata, name: `${ev.metadata.name}x` },
      involvedObject: { ...ev.involvedObject, namespace: 'other' },
    };
    const err = await client.createEvent('d', wrong).catch((e: unknown) => e);
    expect((err as KubeApiError).status).toBe(422);
  });

  it('custom resources: create, get, list, replace guarded by resourceVersion, delete', async () => {
    const k = await openKubeApi(api.writeKubeconfig(join(work, 'k5.json')));
    const pools = k.customResources<KubeObject>('whereabouts.cni.cncf.io', 'v1alpha1', 'ippools');
    const obj = {
      apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: 'u-pool' },
      spec: { range: '10.1.0.0/24', allocations: {} },
    };
    const created = await pools.create('cr', obj);
    expect(created.metadata.resourceVersion).toMatch(/^\d+$/);
    const dup = await pools.create('cr', obj).catch((e: unknown) => e);
    expect((dup as KubeApiError).status).toBe(409);
    expect((dup as KubeApiError).reason).toBe('AlreadyExists');
    const next = { ...created, spec: { range: '10.1.0.0/24', allocations: { '1': { id: 'c' } } } };
    const replaced = await pools.replace('cr', 'u-pool', next);
    expect(replaced.metadata.resourceVersion).not.toBe(created.metadata.resourceVersion);
    const stale = await pools.replace('cr', 'u-pool', next).catch((e: unknown) => e);
    expect((stale as KubeApiError).status).toBe(409);
    expect((stale as Error).message).toMatch(
      /^UPDATE ippools\.whereabouts\.cni\.cncf\.io cr\/u-pool: 409 .*modified/,
    );
    expect((await pools.get('cr', 'u-pool')).spec).toEqual(next.spec);
    expect((await pools.list('cr')).map((p) => p.metadata.name)).toEqual(['u-pool']);
    await pools.delete('cr', 'u-pool');
    expect(isKubeNotFound(await pools.get('cr', 'u-pool').catch((e: unknown) => e))).toBe(true);
    expect(api.objects('ippools').get('cr/u-pool')).toBeUndefined();
  });
});

describe('NAD resolution', () => {
  it('inline config gets the NAD name when it has none; empty spec reads confDir; cni-args merge into every plugin', async () => {
    const dir = join(work, 'conf');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, '10-disk.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'disk', plugins: [{ type: 'bridge' }] }),
    );
    // multus's loader: the network of that name in its confDir.
    const byName = (n: string) => configFromConfDir(dir, n);
    const inline = await configFromNad(
      { metadata: { name: 'mv', namespace: 'd' }, spec: { config: '{"type":"macvlan"}' } },
      byName,
    );
    expect(inline).toEqual({ type: 'macvlan', name: 'mv' });
    const disk = await configFromNad({ metadata: { name: 'disk', namespace: 'd' } }, byName);
    expect(disk.plugins).toEqual([{ type: 'bridge' }]);
    const missing = await configFromNad({ metadata: { name: 'gone', namespace: 'd' } }, byName).catch(
      (e) => e,
    );
    expect(missing).toBeInstanceOf(CniError);
    expect(missing.message).toMatch(/d\/gone has no spec.config and no net configuration with name "gone"/);
    await expect(
      configFromNad(
        { metadata: { name: 'x', namespace: 'd' }, spec: { config: '{"cniVersion":"1.0.0"}' } },
        byName,
      ),
    ).rejects.toThrow(/'type' \(one plugin\) or 'plugins'/);
    await expect(
      configFromNad({ metadata: { name: 'x', namespace: 'd' }, spec: { config: '{oops' } }, byName),
    ).rejects.toThrow(/not valid JSON/);
    const merged = withCniArgs(
      { name: 'l', plugins: [{ type: 'a', args: { cni: { k: 'old', j: 1 } } }, { type: 'b' }] },
      { k: 'new' },
    );
    expect(merged.plugins).toEqual([
      { type: 'a', args: { cni: { k: 'new', j: 1 } } },
      { type: 'b', args: { cni: { k: 'new' } } },
    ]);
  });
});
