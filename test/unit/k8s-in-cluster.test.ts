// In-cluster Kubernetes access (client-go's rest.InClusterConfig): the service variables and the
// service-account folder become a kubeconfig that reaches the fake API server over TLS with the
// folder's CA and token; a token that kubelet rotates is picked up by the next request of a client
// that is already open; missing variables and files are refused naming them and the fix.
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKubeApi } from '../../src/k8s/connect.js';
import { inClusterKubeconfig, writeInClusterKubeconfig } from '../../src/k8s/in-cluster.js';
import { openKubeTransport } from '../../src/k8s/informer.js';
import { CniError, ErrorCode } from '../../src/spec/errors.js';
import { FAKE_K8S_TOKEN, type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

let work = '';
let api: FakeK8s;
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `ckincluster-${process.pid}-`));
  api = await startFakeK8s();
});
afterAll(async () => {
  await api.close();
  rmSync(work, { recursive: true, force: true });
});

/** A service-account folder as kubelet projects it: the files behind a `..data` symlink. */
function serviceAccount(name: string, files: { token?: string; ca?: string; namespace?: string }): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  if (files.token !== undefined) writeFileSync(join(dir, 'token'), files.token);
  if (files.ca !== undefined) writeFileSync(join(dir, 'ca.crt'), files.ca);
  if (files.namespace !== undefined) writeFileSync(join(dir, 'namespace'), files.namespace);
  return dir;
}

/** Replaces the token as kubelet's atomic writer does: a new file renamed over the old. */
function rotate(dir: string, token: string): void {
  writeFileSync(join(dir, '.token.new'), token);
  renameSync(join(dir, '.token.new'), join(dir, 'token'));
}

const env = () => {
  const port = new URL(api.url).port;
  return { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port };
};

describe('in-cluster config', () => {
  it('reaches the API server over TLS with the folder’s CA, token and namespace', async (ctx) => {
    if (!api.ca) ctx.skip('openssl is missing: the fake API server serves plain HTTP only');
    const dir = serviceAccount('sa1', {
      token: `${FAKE_K8S_TOKEN}\n`,
      ca: api.ca ?? '',
      namespace: 'team-x',
    });
    const kc = writeInClusterKubeconfig(join(work, 'in-cluster-1.kubeconfig'), { env: env(), dir });
    expect(statSync(kc).mode & 0o777).toBe(0o600);
    api.putNad('team-x', 'n1', { type: 'macvlan' });
    const k = await openKubeApi(kc);
    expect(k.server).toBe(api.url);
    expect(k.server.startsWith('https://')).toBe(true);
    expect(k.namespace).toBe('team-x');
    expect((await k.client.getNetworkAttachmentDefinition('team-x', 'n1')).metadata.name).toBe('n1');
    const t = await openKubeTransport(kc);
    try {
      const list = (await t.getJson('/apis/k8s.cni.cncf.io/v1/network-attachment-definitions', {})) as {
        items: unknown[];
      };
      expect(list.items.length).toBeGreaterThan(0);
    } finally {
      t.close();
    }
    // $POD_NAMESPACE wins over the folder's namespace, as in client-go's in-cluster loader.
    const other = JSON.parse(inClusterKubeconfig({ env: { ...env(), POD_NAMESPACE: 'ops' }, dir }));
    expect(other.contexts[0].context.namespace).toBe('ops');
    // The token is referenced, never copied into the kubeconfig.
    expect(JSON.stringify(other)).not.toContain(FAKE_K8S_TOKEN);
  });

  it('a rotated token is used by the next request of an open client (API and watch transport)', async () => {
    const dir = serviceAccount('sa2', { token: 'expired-token', ca: api.ca ?? 'unused' });
    const kc = writeInClusterKubeconfig(join(work, 'in-cluster-2.kubeconfig'), { env: env(), dir });
    api.putNad('rot', 'r1', { type: 'macvlan' });
    const k = await openKubeApi(kc);
    const t = await openKubeTransport(kc);
    const path = '/apis/k8s.cni.cncf.io/v1/namespaces/rot/network-attachment-definitions';
    try {
      await expect(k.client.getNetworkAttachmentDefinition('rot', 'r1')).rejects.toMatchObject({
        status: 401,
      });
      await expect(t.getJson(path, {})).rejects.toMatchObject({ status: 401 });
      rotate(dir, FAKE_K8S_TOKEN);
      expect((await k.client.getNetworkAttachmentDefinition('rot', 'r1')).metadata.name).toBe('r1');
      expect(((await t.getJson(path, {})) as { items: unknown[] }).items).toHaveLength(1);
      // And again: every change is followed, not only the first.
      rotate(dir, 'revoked-token');
      await expect(k.client.getNetworkAttachmentDefinition('rot', 'r1')).rejects.toMatchObject({
        status: 401,
      });
      await expect(t.getJson(path, {})).rejects.toMatchObject({ status: 401 });
      rotate(dir, FAKE_K8S_TOKEN);
      expect((await k.client.getNetworkAttachmentDefinition('rot', 'r1')).metadata.name).toBe('r1');
    } finally {
      t.close();
    }
  });

  it('refuses a missing variable or file, naming it and the fix', () => {
    const dir = serviceAccount('sa3', { token: FAKE_K8S_TOKEN, ca: 'ca' });
    const fail = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(CniError);
        expect((e as CniError).code).toBe(ErrorCode.InvalidNetworkConfig);
        return (e as CniError).message;
      }
      throw new Error('did not fail');
    };
    expect(fail(() => inClusterKubeconfig({ env: {}, dir }))).toMatch(
      /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set.*give a kubeconfig file/,
    );
    expect(fail(() => inClusterKubeconfig({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' }, dir }))).toMatch(
      /KUBERNETES_SERVICE_PORT is not set/,
    );
    const noToken = serviceAccount('sa4', { ca: 'ca' });
    expect(fail(() => inClusterKubeconfig({ env: env(), dir: noToken }))).toMatch(
      new RegExp(`service-account token ${join(noToken, 'token')}: .*ENOENT.*automountServiceAccountToken`),
    );
    const noCa = serviceAccount('sa5', { token: 't' });
    expect(fail(() => inClusterKubeconfig({ env: env(), dir: noCa }))).toMatch(
      new RegExp(`cluster CA ${join(noCa, 'ca.crt')}: .*ENOENT`),
    );
    const empty = serviceAccount('sa6', { token: '', ca: 'ca' });
    expect(fail(() => inClusterKubeconfig({ env: env(), dir: empty }))).toMatch(
      /token .*: the file is empty/,
    );
  });

  it('brackets an IPv6 service address and always speaks https, as client-go', () => {
    const dir = serviceAccount('sa7', { token: 't', ca: 'ca' });
    const kc = JSON.parse(
      inClusterKubeconfig({
        env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '80' },
        dir,
      }),
    );
    expect(kc.clusters[0].cluster.server).toBe('https://[fd00::1]:80');
    expect(kc.users[0].user).toEqual({ tokenFile: join(dir, 'token') });
    // $CNI_KIT_SERVICE_ACCOUNT_DIR points elsewhere (tests, unusual mounts).
    const viaEnv = JSON.parse(inClusterKubeconfig({ env: { ...env(), CNI_KIT_SERVICE_ACCOUNT_DIR: dir } }));
    expect(viaEnv.users[0].user.tokenFile).toBe(join(dir, 'token'));
  });
});
