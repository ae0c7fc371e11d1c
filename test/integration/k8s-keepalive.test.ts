// Kubernetes access kept between calls (what the daemon relies on): requests of one connection
// share one keep-alive TLS connection instead of a handshake each, and cachedKubeConnect hands out
// the same connection for the same kubeconfig until the file changes; what it keeps is closed when
// replaced, when idle, when asked, and when the daemon stops.
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from 'cni-kit/daemon';
import { cachedKubeConnect, closeKeptKubeConnections, openKubeApi } from 'cni-kit/k8s';
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
    const base = api.openConnections();
    const kube = await openKubeApi(kubeconfig);
    for (let i = 0; i < 5; i++) await kube.client.getPod('default', 'p');
    expect(api.connections() - before).toBe(1);
    // Closed here: left open, the server's keep-alive timeout (5 s) would close it in the middle of
    // a later case and move the open-connection count that case compares with.
    kube.close?.();
    expect(await openConnectionsReach(base)).toBe(base);
  });

  it('cachedKubeConnect reuses the connection until the kubeconfig changes', async () => {
    const before = api.connections();
    const base = api.openConnections();
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
    open.close();
    expect(await openConnectionsReach(base)).toBe(base);
  });

  /** Waits until the server holds `n` open connections (a closed socket reaches it a moment later). */
  async function openConnectionsReach(n: number): Promise<number> {
    const end = Date.now() + 15_000;
    while (api.openConnections() !== n && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return api.openConnections();
  }

  it('close() ends the kept keep-alive connections, after the request in flight', async () => {
    const base = api.openConnections();
    const open = cachedKubeConnect(openKubeApi);
    const a = await open(kubeconfig, { timeoutMs: 5000 });
    await a.client.getPod('default', 'p');
    expect(await openConnectionsReach(base + 1)).toBe(base + 1);
    expect(open.size).toBe(1);
    // Closed while a request is on the wire: the request still gets its answer.
    const inFlight = a.client.getPod('default', 'p');
    open.close();
    await expect(inFlight).resolves.toMatchObject({ metadata: { name: 'p' } });
    expect(await openConnectionsReach(base)).toBe(base);
    expect(open.size).toBe(0);
    // The next call opens a new connection.
    expect(await open(kubeconfig, { timeoutMs: 5000 })).not.toBe(a);
    open.close();
    expect(await openConnectionsReach(base)).toBe(base);
  });

  it('a keep-alive socket unused for idleSocketMs is closed; the client still works after close()', async () => {
    const base = api.openConnections();
    // 1 s: long enough that a loaded machine still sees the socket open right after the request.
    const kube = await openKubeApi(kubeconfig, { idleSocketMs: 1000 });
    await kube.client.getPod('default', 'p');
    expect(await openConnectionsReach(base + 1)).toBe(base + 1);
    // Nobody closes it: the agent does once it sat unused.
    expect(await openConnectionsReach(base)).toBe(base);
    // After close(), a later request opens a socket again and keeps it alive for the next one.
    kube.close?.();
    const accepted = api.connections();
    await kube.client.getPod('default', 'p');
    await kube.client.getPod('default', 'p');
    expect(api.connections() - accepted).toBe(1);
    kube.close?.();
    expect(await openConnectionsReach(base)).toBe(base);
  });

  it('a connection replaced by a rewritten kubeconfig, or unused for idleMs, is closed', async () => {
    const base = api.openConnections();
    // 1 s: the uses below, 300 ms apart, keep it open even when a loaded machine delays one of them.
    const open = cachedKubeConnect(openKubeApi, { idleMs: 1000 });
    const a = await open(kubeconfig, { timeoutMs: 5000 });
    await a.client.getPod('default', 'p');
    const later = new Date(Date.now() + 60_000);
    utimesSync(kubeconfig, later, later);
    const b = await open(kubeconfig, { timeoutMs: 5000 });
    expect(b).not.toBe(a);
    await b.client.getPod('default', 'p');
    // a's socket is gone, b's stays while it is used.
    expect(await openConnectionsReach(base + 1)).toBe(base + 1);
    expect(open.size).toBe(1);
    // A caller holding b (as whereabouts' shared stores do) and running requests on it keeps it
    // open past idleMs without asking the cache again: the same socket serves them all.
    const accepted = api.connections();
    for (let i = 0; i < 8; i++) {
      await b.client.getPod('default', 'p');
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(api.connections()).toBe(accepted);
    expect(open.size).toBe(1);
    // Nobody uses b any more: dropped at the first sweep after idleMs, and its socket closed.
    const end = Date.now() + 15_000;
    while (open.size !== 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(open.size).toBe(0);
    expect(await openConnectionsReach(base)).toBe(base);
  });

  it('closeKeptKubeConnections closes what every cachedKubeConnect of the process keeps; the daemon calls it when it stops', async () => {
    const base = api.openConnections();
    const one = cachedKubeConnect(openKubeApi);
    const two = cachedKubeConnect(openKubeApi);
    await (await one(kubeconfig, { timeoutMs: 5000 })).client.getPod('default', 'p');
    await (await two(kubeconfig, { timeoutMs: 4000 })).client.getPod('default', 'p');
    expect(await openConnectionsReach(base + 2)).toBe(base + 2);
    expect(closeKeptKubeConnections()).toBe(2);
    expect(await openConnectionsReach(base)).toBe(base);
    expect(one.size + two.size).toBe(0);

    // As a plugin served by the daemon keeps them (multus' clients): gone once the daemon stopped.
    const kept = cachedKubeConnect(openKubeApi);
    await (await kept(kubeconfig, { timeoutMs: 5000 })).client.getPod('default', 'p');
    const daemon = await startDaemon({
      plugins: {},
      socket: join(dir, 'daemon.sock'),
      processHelper: false,
      logger: { level: 'error', enabled: () => false, log: () => {} },
    });
    expect(await openConnectionsReach(base + 1)).toBe(base + 1);
    await daemon.close();
    expect(await openConnectionsReach(base)).toBe(base);
    expect(kept.size).toBe(0);
  });
});
