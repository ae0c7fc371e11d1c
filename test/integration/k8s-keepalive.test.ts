// Kubernetes access kept between calls (what the daemon relies on): requests of one connection
// share one keep-alive TLS connection instead of a handshake each, and cachedKubeConnect hands out
// the same connection for the same kubeconfig until the file changes.
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedKubeConnect, openKubeApi } from 'cni-kit/k8s';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';

let api: FakeK8s;
let dir: string;
let kubeconfig: string;
beforeAll(async () => {
  api = await startFakeK8s();
  dir = mkdtempSync(join(tmpdir(), 'k8s-keepalive-'));
  kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
  api.putPod({ metadata: { name: 'p', namespace: 'default' } });
});
afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Kubernetes connections', () => {
  it('one connection serves many requests over TLS', async () => {
    const before = api.connections();
    const kube = await openKubeApi(kubeconfig);
    for (let i = 0; i < 5; i++) await kube.client.getPod('default', 'p');
    expect(api.connections() - before).toBe(1);
  });

  it('cachedKubeConnect reuses the connection until the kubeconfig changes', async () => {
    const before = api.connections();
    const open = cachedKubeConnect(openKubeApi);
    const a = await open(kubeconfig, { timeoutMs: 5000 });
    const b = await open(kubeconfig, { timeoutMs: 5000 });
    expect(b).toBe(a);
    await a.client.getPod('default', 'p');
    await b.client.getPod('default', 'p');
    expect(api.connections() - before).toBe(1);
    // Other options are another client; a rewritten kubeconfig (new mtime) is read again.
    expect(await open(kubeconfig, { timeoutMs: 6000 })).not.toBe(a);
    const later = new Date(Date.now() + 5000);
    utimesSync(kubeconfig, later, later);
    expect(await open(kubeconfig, { timeoutMs: 5000 })).not.toBe(a);
  });
});
