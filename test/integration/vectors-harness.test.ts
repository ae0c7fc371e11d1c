// The vectors' harness itself (test/helpers/vectors*.ts): every vector names a pinned source and a
// licence; the sandbox shows plugins the files a vector places and none of the machine's; the fake
// API server is reachable from inside the node netns; and a run reports what a plugin leaves
// behind (but not what BY_DESIGN_LEFTOVERS allows), so a passing vector means something.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { FAKE_K8S_TOKEN, type FakeK8s, startFakeK8s } from '../helpers/fake-k8s.js';
import { loadVector, type Vector, vectorIds } from '../helpers/vectors.js';
import { runVector } from '../helpers/vectors-run.js';
import { Sandbox } from '../helpers/vectors-sandbox.js';

const tag = `h${process.pid % 100000}`;
let k8s: FakeK8s | undefined;

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network and mount namespaces');
  if (spawnSync('unshare', ['--version']).status !== 0) ctx.skip('unshare is not installed');
}

beforeAll(async () => {
  if (process.getuid?.() === 0) k8s = await startFakeK8s();
});
afterAll(async () => {
  await k8s?.close();
});

/** A vector made up here (not from docs) for the harness's own checks. */
function synthetic(over: Partial<Vector> = {}): Vector {
  const config = { cniVersion: '1.0.0', name: 'harness', type: 'harness' };
  return {
    id: 'harness',
    header: { source: 'none', licence: 'none', excerpt: 'none', kind: 'plugin', go: 'none' },
    kind: 'plugin',
    backend: 'kernel',
    go: false,
    text: JSON.stringify(config),
    config,
    files: [],
    nads: [],
    goPlugins: [],
    kubeconfigs: [],
    ...over,
  };
}

describe('vector files', () => {
  it('every vector parses and names a commit-pinned source, a licence and its excerpt', () => {
    const ids = vectorIds();
    expect(ids.length).toBeGreaterThanOrEqual(20);
    for (const id of ids) {
      const v = loadVector(id);
      expect(v.header.source, id).toMatch(
        /^https:\/\/github\.com\/[^/]+\/[^/]+\/blob\/[0-9a-f]{40}\/.+#L\d+-L\d+$/,
      );
      expect(v.header.licence, id).toBe('Apache-2.0');
      expect(v.header.excerpt, id).toBeTruthy();
      expect(['plugin', 'conflist', 'ipam'], id).toContain(v.kind);
    }
  });

  it('a base vector takes the base config with the one field from the docs set', () => {
    const v = loadVector('whereabouts-readme-range-end');
    const base = loadVector(v.header.base ?? '');
    expect(v.config).toEqual({
      ...base.config,
      ipam: { ...(base.config.ipam as object), range: '192.168.2.225-192.168.2.230/28' },
    });
    expect(v.files).toEqual(base.files);
  });
});

describe('vector sandbox', () => {
  it('shows plugins the files a vector places, in a private /etc/cni, /run and /tmp', async (ctx) => {
    need(ctx);
    const flat = '/etc/cni/net.d/whereabouts.d/whereabouts.conf';
    const hadFlat = existsSync(flat);
    const v = synthetic({
      files: [
        { path: flat, text: '{"datastore":"kubernetes"}', from: 'doc' },
        { path: '/run/flannel/subnet.env', text: 'FLANNEL_NETWORK=10.244.0.0/16', from: 'env' },
      ],
    });
    const s = Sandbox.open(v, tag);
    try {
      const out = await s.exec(
        'sh',
        ['-c', `cat ${flat} /run/flannel/subnet.env && touch /tmp/harness-tmp && ls /run/netns`],
        { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        '',
      );
      expect(out.exitCode, out.stderr).toBe(0);
      expect(out.stdout).toContain('{"datastore":"kubernetes"}');
      expect(out.stdout).toContain('FLANNEL_NETWORK=10.244.0.0/16');
      // The container netns stays reachable by its path (CNI_NETNS) inside the private /run.
      expect(out.stdout).toContain(s.pod);
      expect(existsSync(s.path('/tmp/harness-tmp'))).toBe(true);
    } finally {
      s.close();
    }
    expect(existsSync(flat)).toBe(hadFlat);
    expect(existsSync('/tmp/harness-tmp')).toBe(false);
  });

  it('reaches the fake API server at its 127.0.0.1 port from inside the node netns', async (ctx) => {
    need(ctx);
    if (!k8s) return ctx.skip('no fake API server');
    const s = Sandbox.open(synthetic(), tag);
    try {
      await s.connectK8s(k8s, ['/etc/cni/net.d/multus.d/multus.kubeconfig']);
      expect(existsSync(s.path('/etc/cni/net.d/multus.d/multus.kubeconfig'))).toBe(true);
      const port = new URL(k8s.url).port;
      const script = `require('node:https').get({host:'127.0.0.1',port:${port},path:'/api/v1/namespaces/default/pods/nope',rejectUnauthorized:false,headers:{authorization:'Bearer ${FAKE_K8S_TOKEN}'}},r=>{console.log(r.statusCode);r.resume()}).on('error',e=>{console.log(e.message);process.exit(1)})`;
      const url = new URL(k8s.url);
      const out = await s.exec(
        process.execPath,
        ['-e', url.protocol === 'https:' ? script : script.replace("'node:https'", "'node:http'")],
        { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        '',
      );
      expect(out.stdout.trim(), out.stderr).toBe('404');
      expect(k8s.requests.some((r) => r.path === '/api/v1/namespaces/default/pods/nope')).toBe(true);
    } finally {
      s.close();
    }
  });
});

describe('vector run', () => {
  // A plugin that leaves a link in the node, a file in its state dir, and a by-design leftover.
  const leaky = [
    'case "$CNI_COMMAND" in',
    'ADD) ip link add leak0 type bridge; mkdir -p /var/lib/cni/networks/harness /var/lib/cni/leaky;',
    '  touch /var/lib/cni/networks/harness/last_reserved_ip.0 /var/lib/cni/leaky/state;',
    '  echo \'{"cniVersion":"1.0.0","interfaces":[{"name":"leak0"}],"ips":[]}\';;',
    'esac',
  ].join('\n');

  it('reports what DEL leaves behind, and not what BY_DESIGN_LEFTOVERS allows', async (ctx) => {
    need(ctx);
    const r = await runVector(synthetic(), 'cni-kit', { tag, command: () => ['sh', ['-c', leaky]] });
    expect(r.problems.sort()).toEqual([
      'after DEL, node: link leak0 (bridge) left behind',
      'after DEL: file <sandbox>/var-lib-cni/leaky/state left behind',
    ]);
  });

  it('reports a result invalid for the version, a missing interface and a failing CHECK', async (ctx) => {
    need(ctx);
    const bad = [
      'case "$CNI_COMMAND" in',
      'ADD) echo \'{"cniVersion":"1.0.0","interfaces":[{"name":"ghost0","sandbox":"\'"$CNI_NETNS"\'"}],"ips":[{"address":"10.1.1.1/24","version":"4"}]}\';;',
      'CHECK) echo \'{"code":999,"msg":"nope"}\'; exit 1;;',
      'esac',
    ].join('\n');
    const r = await runVector(synthetic(), 'cni-kit', { tag, command: () => ['sh', ['-c', bad]] });
    expect(r.problems).toEqual([
      'result (1.0.0): ips[0].version: not part of a 1.0.0 result (removed in 1.0.0)',
      'interface ghost0 is not in the pod',
      'CHECK harness failed: exit 1: {"code":999,"msg":"nope"}',
    ]);
  });
});
