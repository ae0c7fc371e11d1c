// One fake API server per test file: started before the file's first test, closed after its last,
// with a scratch folder for the kubeconfigs its tests write. Kept apart from fake-k8s.ts, which the
// benches and the demo import outside vitest.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type FakeK8s, startFakeK8s } from './fake-k8s.js';

export interface FakeK8sFile {
  /** The server (set once the file's beforeAll has run). */
  readonly api: FakeK8s;
  /** The file's scratch folder, removed after its last test. */
  readonly dir: string;
  /** A kubeconfig for the server whose context namespace is `ns` (the server's default without). */
  kubeconfig(ns?: string): string;
}

/**
 * Registers the hooks; call it at the top level of a test file. `tls: false` serves plain HTTP,
 * for files that make many requests (a TLS handshake per connection would dominate them).
 */
export function fakeK8sPerFile(prefix: string, opts: { tls?: boolean } = {}): FakeK8sFile {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-${process.pid}-`));
  let api: FakeK8s | undefined;
  beforeAll(async () => {
    api = await startFakeK8s(opts.tls === false ? { tls: false } : {});
  });
  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const started = (): FakeK8s => {
    if (!api) throw new Error('the fake API server is used before its beforeAll hook ran');
    return api;
  };
  return {
    get api() {
      return started();
    },
    dir,
    kubeconfig: (ns) => started().writeKubeconfig(join(dir, `kc-${ns ?? 'default'}.json`), 'json', ns),
  };
}
