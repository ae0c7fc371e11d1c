// src/k8s: network-status building, kubeconfig loading, the API client against the in-process
// server (404, 401, 409 handling) and NAD config resolution.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildNetworkStatuses,
  CniError,
  configFromNad,
  formatNetworkStatus,
  httpKubeClient,
  isKubeNotFound,
  KubeApiError,
  loadKubeconfig,
  parseNetworkStatus,
  withCniArgs,
} from 'cni-kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

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

  it('a result without sandbox interfaces still gives one minimal entry', () => {
    expect(buildNetworkStatuses('n', undefined, { isDefault: false })).toEqual([
      { name: 'n', default: false },
    ]);
  });
});

describe('kubeconfig and client', () => {
  it('reads JSON and YAML kubeconfigs, inline and file credentials', async () => {
    const y = await loadKubeconfig(api.writeKubeconfig(join(work, 'k.yaml'), 'yaml'));
    const j = await loadKubeconfig(api.writeKubeconfig(join(work, 'k.json'), 'json'));
    expect(y).toEqual(j);
    expect(y.server).toBe(api.url);
    writeFileSync(join(work, 'ca.pem'), 'PEM');
    writeFileSync(join(work, 'tok'), 'secret\n');
    writeFileSync(
      join(work, 'k2.json'),
      JSON.stringify({
        clusters: [{ name: 'c', cluster: { server: 'https://h:6443/', 'certificate-authority': 'ca.pem' } }],
        users: [
          {
            name: 'u',
            user: { tokenFile: join(work, 'tok'), 'client-key-data': Buffer.from('KEY').toString('base64') },
          },
        ],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    expect(await loadKubeconfig(join(work, 'k2.json'))).toEqual({
      server: 'https://h:6443',
      ca: 'PEM',
      token: 'secret',
      key: 'KEY',
    });
  });

  it('refuses what it cannot use, naming the file', async () => {
    writeFileSync(
      join(work, 'exec.json'),
      JSON.stringify({
        clusters: [{ name: 'c', cluster: { server: 'https://h' } }],
        users: [{ name: 'u', user: { exec: { command: 'aws' } } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    await expect(loadKubeconfig(join(work, 'exec.json'))).rejects.toThrow(
      /exec\.json: exec and auth-provider/,
    );
    await expect(loadKubeconfig(join(work, 'absent'))).rejects.toThrow(/absent: cannot read/);
  });

  it('GET/LIST NADs, 404 as not-found, 401 and unreachable servers as coded errors', async () => {
    const kube = httpKubeClient(await loadKubeconfig(api.writeKubeconfig(join(work, 'k3.json'))), {
      timeoutMs: 2000,
    });
    api.putNad('ns1', 'a', { type: 'macvlan' });
    api.putNad('ns1', 'b');
    api.putNad('ns2', 'c', { type: 'x' });
    expect((await kube.listNetworkAttachmentDefinitions('ns1')).map((n) => n.metadata.name).sort()).toEqual([
      'a',
      'b',
    ]);
    expect((await kube.getNetworkAttachmentDefinition('ns1', 'a')).spec?.config).toBe('{"type":"macvlan"}');
    const nf = await kube.getPod('ns1', 'none').catch((e) => e);
    expect(isKubeNotFound(nf)).toBe(true);
    expect(nf.message).toContain('pods "none" not found');

    const anon = httpKubeClient({ server: api.url }, { timeoutMs: 2000 });
    const unauth = await anon.getPod('ns1', 'x').catch((e) => e);
    expect(unauth).toBeInstanceOf(KubeApiError);
    expect(unauth.status).toBe(401);
    const down = await httpKubeClient({ server: 'http://127.0.0.1:9' }, { timeoutMs: 2000 })
      .getPod('a', 'b')
      .catch((e) => e);
    expect(down.status).toBe(0);
    expect(down.code).toBe(11);
  });

  it('annotation updates retry on 409 and give up after the configured attempts', async () => {
    const conn = await loadKubeconfig(api.writeKubeconfig(join(work, 'k4.json')));
    api.putPod({ metadata: { name: 'p', namespace: 'd', annotations: { keep: '1', drop: '2' } } });
    api.conflictNext(2);
    const pod = await httpKubeClient(conn).updatePodAnnotations('d', 'p', { added: 'x', drop: null });
    expect(pod.metadata.annotations).toEqual({ keep: '1', added: 'x' });
    api.conflictNext(5);
    const err = await httpKubeClient(conn, { conflictRetries: 3 })
      .updatePodAnnotations('d', 'p', { z: '1' })
      .catch((e) => e);
    expect(err.status).toBe(409);
    api.conflictNext(0);
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
    const inline = await configFromNad(
      { metadata: { name: 'mv', namespace: 'd' }, spec: { config: '{"type":"macvlan"}' } },
      dir,
    );
    expect(inline).toEqual({ type: 'macvlan', name: 'mv' });
    const disk = await configFromNad({ metadata: { name: 'disk', namespace: 'd' } }, dir);
    expect(disk.plugins).toEqual([{ type: 'bridge' }]);
    const missing = await configFromNad({ metadata: { name: 'gone', namespace: 'd' } }, dir).catch((e) => e);
    expect(missing).toBeInstanceOf(CniError);
    expect(missing.message).toMatch(/d\/gone has no spec.config and no net configuration with name "gone"/);
    await expect(
      configFromNad(
        { metadata: { name: 'x', namespace: 'd' }, spec: { config: '{"cniVersion":"1.0.0"}' } },
        dir,
      ),
    ).rejects.toThrow(/'type' \(one plugin\) or 'plugins'/);
    await expect(
      configFromNad({ metadata: { name: 'x', namespace: 'd' }, spec: { config: '{oops' } }, dir),
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
