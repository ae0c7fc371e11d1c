// `cni-kit daemon` in a pod: with `in-cluster` as the kubeconfig of --whereabouts-reconciler and
// --whereabouts-node-slices, the daemon reaches the API server (the fake one, over TLS) with the
// service-account token and CA of the folder kubelet mounts, takes both Leases under its NODE_NAME,
// writes the kubeconfig it derived beside its socket (0600), and releases the Leases on SIGTERM.
// Outside a pod it refuses to start, naming the missing variables and the fix.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Lease } from '../../src/k8s/lease.js';
import { BUNDLES, CLI, startDaemon } from '../helpers/daemon.js';
import { FAKE_K8S_TOKEN } from '../helpers/fake-k8s.js';
import { fakeK8sPerFile } from '../helpers/fake-k8s-file.js';

const k8s = fakeK8sPerFile('ckdincl');

const holder = (ns: string, name: string) =>
  (k8s.api.objects('leases').get(`${ns}/${name}`) as unknown as Lease | undefined)?.spec?.holderIdentity;

describe('the daemon with in-cluster access', () => {
  it('takes the reconciler’s and node-slice controller’s Leases with the pod’s service account', async (ctx) => {
    if (!k8s.api.ca) ctx.skip('openssl is missing: the fake API server serves plain HTTP only');
    const sa = join(k8s.dir, 'sa');
    mkdirSync(sa);
    writeFileSync(join(sa, 'token'), FAKE_K8S_TOKEN);
    writeFileSync(join(sa, 'ca.crt'), k8s.api.ca ?? '');
    writeFileSync(join(sa, 'namespace'), 'incl');
    const run = join(k8s.dir, 'run');
    const daemon = await startDaemon({
      socket: join(run, 'daemon.sock'),
      extraArgs: ['--whereabouts-reconciler', 'in-cluster', '--whereabouts-node-slices', 'in-cluster'],
      env: {
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: new URL(k8s.api.url).port,
        CNI_KIT_SERVICE_ACCOUNT_DIR: sa,
        NODE_NAME: 'node-incl',
      },
    });
    try {
      const end = Date.now() + 15_000;
      while (
        (holder('incl', 'whereabouts-node-slice-controller') !== 'node-incl' ||
          holder('incl', 'whereabouts-reconciler') !== 'node-incl') &&
        Date.now() < end
      )
        await new Promise((r) => setTimeout(r, 50));
      expect(holder('incl', 'whereabouts-node-slice-controller'), daemon.log()).toBe('node-incl');
      expect(holder('incl', 'whereabouts-reconciler')).toBe('node-incl');
      const kc = join(run, 'in-cluster.kubeconfig');
      expect(statSync(kc).mode & 0o777).toBe(0o600);
      const text = readFileSync(kc, 'utf8');
      expect(text).toContain(`"server": "${k8s.api.url}"`);
      expect(text).not.toContain(FAKE_K8S_TOKEN);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(holder('incl', 'whereabouts-node-slice-controller')).toBe('');
    expect(holder('incl', 'whereabouts-reconciler')).toBe('');
  }, 30_000);

  it('outside a pod refuses to start, naming the variables and the fix', () => {
    const env: Record<string, string | undefined> = { ...process.env };
    delete env.KUBERNETES_SERVICE_HOST;
    delete env.KUBERNETES_SERVICE_PORT;
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'daemon',
        '--plugins',
        BUNDLES,
        '--socket',
        join(k8s.dir, 'run2', 'daemon.sock'),
        '--whereabouts-node-slices',
        'in-cluster',
      ],
      { env, encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(
      /--whereabouts-node-slices: in-cluster Kubernetes config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set.*give a kubeconfig file/,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
