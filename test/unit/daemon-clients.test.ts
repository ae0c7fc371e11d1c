// Heavy clients kept between calls of a long-lived process (the daemon): cachedKubeConnect keeps a
// Kubernetes connection per kubeconfig and options, SharedStores an etcd connection per
// endpoint set and credentials with a store per prefix on it. Same key: one open; a kubeconfig edited on disk or an entry past its TTL: a new open; a
// failed open is not kept; a call closing its shared store does not close it for the others.
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { DatastoreConfig } from '../../src/ipam/whereabouts/config.js';
import { type SharedConnection, SharedStores } from '../../src/ipam/whereabouts/index.js';
import { cachedKubeConnect } from '../../src/k8s/connect.js';

const dir = mkdtempSync(join(tmpdir(), 'daemon-clients-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.useRealTimers();
});

const kubeconfig = join(dir, 'kubeconfig');
writeFileSync(kubeconfig, 'apiVersion: v1\n');

describe('cachedKubeConnect', () => {
  it('opens once per kubeconfig and options, also for concurrent calls', async () => {
    let opened = 0;
    const connect = cachedKubeConnect(async (path: string, opts) => ({ n: ++opened, path, opts }));
    const [a, b] = await Promise.all([connect(kubeconfig, {}), connect(kubeconfig, {})]);
    expect(a).toBe(b);
    expect(await connect(kubeconfig, {})).toBe(a);
    expect(opened).toBe(1);
    const other = await connect(kubeconfig, { server: 'https://10.0.0.1:6443' });
    expect(other).not.toBe(a);
    expect(opened).toBe(2);
  });

  it('reopens when the kubeconfig changes on disk (mtime)', async () => {
    let opened = 0;
    const connect = cachedKubeConnect(async () => ({ n: ++opened }));
    const first = await connect(kubeconfig, {});
    const later = new Date(Date.now() + 60_000);
    utimesSync(kubeconfig, later, later);
    const second = await connect(kubeconfig, {});
    expect(second).not.toBe(first);
    expect(opened).toBe(2);
    expect(await connect(kubeconfig, {})).toBe(second);
    expect(opened).toBe(2);
  });

  it('reopens after the TTL', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    let opened = 0;
    const connect = cachedKubeConnect(async () => ({ n: ++opened }), 1000);
    const first = await connect(kubeconfig, {});
    vi.advanceTimersByTime(999);
    expect(await connect(kubeconfig, {})).toBe(first);
    vi.advanceTimersByTime(2);
    const second = await connect(kubeconfig, {});
    expect(second).not.toBe(first);
    expect(opened).toBe(2);
  });

  it('does not keep a failed open: the next call tries again', async () => {
    let opened = 0;
    const connect = cachedKubeConnect(async () => {
      opened++;
      if (opened === 1) throw new Error('connection refused');
      return { n: opened };
    });
    await expect(connect(kubeconfig, {})).rejects.toThrow('connection refused');
    await new Promise((r) => setImmediate(r));
    expect(await connect(kubeconfig, {})).toEqual({ n: 2 });
    expect(opened).toBe(2);
  });

  it('passes a missing kubeconfig to open, which reports it (and nothing is kept)', async () => {
    let opened = 0;
    const connect = cachedKubeConnect(async (p: string) => {
      opened++;
      throw new Error(`${p}: no such file`);
    });
    await expect(connect(join(dir, 'missing'), {})).rejects.toThrow('missing: no such file');
    await new Promise((r) => setImmediate(r));
    await expect(connect(join(dir, 'missing'), {})).rejects.toThrow();
    expect(opened).toBe(2);
  });
});

describe('SharedStores', () => {
  const ds: DatastoreConfig = { kind: 'etcd', etcd_host: 'https://127.0.0.1:2379' };
  const fakeConn = (log: string[], name: string): SharedConnection => ({
    store: (d) => ({
      kind: 'etcd',
      session: async (_ref, fn) => fn({} as never),
      close: async () => {
        log.push(`close store ${name} ${d.kind === 'etcd' ? d.etcd_prefix : ''}`);
      },
    }),
    close: async () => {
      log.push(`close ${name}`);
    },
  });

  it('opens once per datastore config; a call closing its store leaves it open for the others', async () => {
    const log: string[] = [];
    const shared = new SharedStores();
    let opened = 0;
    const open = async () => fakeConn(log, `s${++opened}`);
    const [a, b] = await Promise.all([shared.get(ds, open), shared.get(ds, open)]);
    expect(a).toBe(b);
    await a.close();
    expect(await shared.get(ds, open)).toBe(a);
    expect(opened).toBe(1);
    expect(log).toEqual([]);
    const other = await shared.get({ kind: 'etcd', etcd_host: 'https://10.0.0.9:2379' }, open);
    expect(other).not.toBe(a);
    expect(opened).toBe(2);
    await shared.close();
  });

  it('shares one connection between prefixes, not between endpoints, credentials or TLS files', async () => {
    const log: string[] = [];
    const shared = new SharedStores();
    let opened = 0;
    const open = async () => fakeConn(log, `s${++opened}`);
    const stores = await Promise.all(
      Array.from({ length: 30 }, (_, i) => shared.get({ ...ds, etcd_prefix: `/net${i}` }, open)),
    );
    expect(new Set(stores).size).toBe(30);
    expect(opened).toBe(1);
    expect(shared.connections).toBe(1);
    expect(shared.stores).toBe(30);
    await shared.get({ ...ds, etcd_prefix: '/net0', etcd_username: 'u', etcd_password: 'p' }, open);
    await shared.get({ ...ds, etcd_prefix: '/net0', etcd_ca_cert_file: '/ca.pem' }, open);
    await shared.get({ ...ds, etcd_host: 'https://127.0.0.1:2379,https://127.0.0.2:2379' }, open);
    expect(opened).toBe(4);
    await shared.close();
    expect(log.sort()).toEqual(['close s1', 'close s2', 'close s3', 'close s4']);
  });

  it('reopens after the TTL and closes the replaced connection for real a minute later', async () => {
    vi.useFakeTimers();
    const log: string[] = [];
    const shared = new SharedStores(1000);
    let opened = 0;
    const open = async () => fakeConn(log, `s${++opened}`);
    const first = await shared.get(ds, open);
    vi.setSystemTime(Date.now() + 1001);
    const second = await shared.get(ds, open);
    expect(second).not.toBe(first);
    expect(opened).toBe(2);
    await vi.advanceTimersByTimeAsync(58_000);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(log).toEqual(['close s1']);
    await shared.close();
  });

  it('drops a store nobody asked for during the TTL, and closes a connection left without stores', async () => {
    vi.useFakeTimers();
    const log: string[] = [];
    const shared = new SharedStores(1000, 100);
    let opened = 0;
    const open = async () => fakeConn(log, `s${++opened}`);
    const busy = { ...ds, etcd_prefix: '/busy' };
    await shared.get(busy, open);
    await shared.get({ ...ds, etcd_prefix: '/idle' }, open);
    expect(shared.stores).toBe(2);
    // /busy is asked for every 300 ms, /idle never again.
    for (let t = 0; t < 3; t++) {
      await vi.advanceTimersByTimeAsync(300);
      await shared.get(busy, open);
    }
    await vi.advanceTimersByTimeAsync(200);
    expect(shared.stores).toBe(1);
    expect(shared.connections).toBe(1);
    expect(log).toEqual([]);
    // Nobody asks any more: the store goes, then its connection, closed after the grace.
    await vi.advanceTimersByTimeAsync(1_600);
    expect(shared.connections).toBe(0);
    expect(log).toEqual(['close s1']);
    expect(vi.getTimerCount()).toBe(0);
    expect(opened).toBe(1);
  });

  it('does not keep a failed open', async () => {
    const log: string[] = [];
    const shared = new SharedStores();
    let opened = 0;
    const open = async () => {
      opened++;
      if (opened === 1) throw new Error('etcd unreachable');
      return fakeConn(log, `s${opened}`);
    };
    await expect(shared.get(ds, open)).rejects.toThrow('etcd unreachable');
    await new Promise((r) => setImmediate(r));
    const s = await shared.get(ds, open);
    expect(opened).toBe(2);
    expect(await shared.get(ds, open)).toBe(s);
    await shared.close();
  });
});
