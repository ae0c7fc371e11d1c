// Heavy clients kept between calls of a long-lived process (the daemon): cachedKubeConnect keeps a
// Kubernetes connection per kubeconfig and options, SharedStores an etcd store per datastore
// config. Same key: one open; a kubeconfig edited on disk or an entry past its TTL: a new open; a
// failed open is not kept; a call closing its shared store does not close it for the others.
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { DatastoreConfig } from '../../src/ipam/whereabouts/config.js';
import { SharedStores } from '../../src/ipam/whereabouts/index.js';
import type { Store } from '../../src/ipam/whereabouts/store.js';
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
  const fakeStore = (log: string[], name: string): Store => ({
    kind: 'etcd',
    session: async (_ref, fn) => fn({} as never),
    close: async () => {
      log.push(`close ${name}`);
    },
  });

  it('opens once per datastore config; a call closing its store leaves it open for the others', async () => {
    const log: string[] = [];
    const shared = new SharedStores();
    let opened = 0;
    const open = async () => fakeStore(log, `s${++opened}`);
    const [a, b] = await Promise.all([shared.get(ds, open), shared.get(ds, open)]);
    expect(a).toBe(b);
    await a.close();
    expect(await shared.get(ds, open)).toBe(a);
    expect(opened).toBe(1);
    expect(log).toEqual([]);
    const other = await shared.get({ kind: 'etcd', etcd_host: 'https://10.0.0.9:2379' }, open);
    expect(other).not.toBe(a);
    expect(opened).toBe(2);
  });

  it('reopens after the TTL and closes the replaced store for real a minute later', async () => {
    vi.useFakeTimers();
    const log: string[] = [];
    const shared = new SharedStores(1000);
    let opened = 0;
    const open = async () => fakeStore(log, `s${++opened}`);
    const first = await shared.get(ds, open);
    vi.advanceTimersByTime(1001);
    const second = await shared.get(ds, open);
    expect(second).not.toBe(first);
    expect(opened).toBe(2);
    await vi.advanceTimersByTimeAsync(59_000);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(log).toEqual(['close s1']);
  });

  it('does not keep a failed open', async () => {
    const log: string[] = [];
    const shared = new SharedStores();
    let opened = 0;
    const open = async () => {
      opened++;
      if (opened === 1) throw new Error('etcd unreachable');
      return fakeStore(log, `s${opened}`);
    };
    await expect(shared.get(ds, open)).rejects.toThrow('etcd unreachable');
    await new Promise((r) => setImmediate(r));
    const s = await shared.get(ds, open);
    expect(opened).toBe(2);
    expect(await shared.get(ds, open)).toBe(s);
  });
});
